//! v1.1 message operations (issue 12, items 1-3): edits, reactions and replies, live, in pages
//! and through `sync`, with their errors.

use crate::common::*;
use serde_json::{json, Value};
use std::time::Duration;

fn edit(id: &str, conv: &str, seq: u64, text: &str) -> Value {
    json!({"type": "edit", "id": id, "conversation_id": conv, "seq": seq, "text": text})
}

fn react(id: &str, conv: &str, seq: u64, emoji: &str, remove: bool) -> Value {
    json!({"type": "react", "id": id, "conversation_id": conv, "seq": seq, "emoji": emoji, "remove": remove})
}

/// Frames of a whole sync (every type but `synced`), until `more` is false.
async fn sync_frames(w: &mut Client, limit: u32) -> Vec<Value> {
    let mut out = Vec::new();
    for round in 0..100 {
        let id = format!("s{round}");
        w.send(json!({"type": "sync", "id": id, "limit": limit}))
            .await;
        loop {
            let v = w.next().await;
            if v["type"] == "synced" && v["id"] == id {
                if v["more"] == false {
                    return out;
                }
                break;
            }
            // Presence is live state of contacts, not what sync replays: it may come at any time.
            if v["type"] != "presence" {
                out.push(v);
            }
        }
    }
    panic!("sync did not end");
}

/// The answer to `id` and the first frame of type `t`, in whichever order they come (the
/// device that caused an event gets both).
async fn answer_and(w: &mut Client, id: &str, t: &str) -> (Value, Value) {
    let (mut answer, mut frame) = (None, None);
    while answer.is_none() || frame.is_none() {
        let v = w.next().await;
        if v["id"] == id {
            answer = Some(v);
        } else if v["type"] == t && frame.is_none() {
            frame = Some(v);
        }
    }
    (answer.unwrap(), frame.unwrap())
}

async fn page(s: &TestServer, dev: &Dev, conv: &str) -> Vec<Value> {
    s.all_messages(dev, conv).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_reaches_every_device_and_pages_show_the_latest_version() {
    let s = TestServer::start();
    let a = s.user("alice").await;
    let b = s.user("bob").await;
    let a2 = s.login("alice").await;
    let conv = s.direct(&a, &b).await;
    let mut wa = s.ws(&a).await;
    let mut wa2 = s.ws(&a2).await;
    let mut wb = s.ws(&b).await;
    wa.send(json!({"type": "send", "id": "m1", "conversation_id": conv, "text": "helo", "meta": {"k": 1}}))
        .await;
    assert_eq!(wa.next_where(|v| v["id"] == "m1").await["seq"], 1);
    wb.next_type("message").await;
    wa2.next_type("message").await;

    wa.send(edit("e1", &conv, 1, "hello")).await;
    let (ack, own) = answer_and(&mut wa, "e1", "edited").await;
    assert_eq!(
        (ack["type"].as_str(), ack["seq"].as_u64()),
        (Some("ack"), Some(1))
    );
    for w in [&mut wb, &mut wa2] {
        let e = w.next_type("edited").await;
        assert_eq!(e, own);
        assert_eq!(
            (e["seq"].as_u64(), e["text"].as_str(), e["by"].as_str()),
            (Some(1), Some("hello"), Some(a.user_id.as_str()))
        );
        assert_eq!(e["meta"], json!({"k": 1}), "an absent meta stays as it was");
        assert!(e["edited_at"].as_i64().unwrap() >= ack["ts"].as_i64().unwrap() - 1);
    }
    // The retry is a duplicate; the same id for another edit is a conflict.
    wa.send(edit("e1", &conv, 1, "hello")).await;
    let dup = wa.next_where(|v| v["id"] == "e1").await;
    assert_eq!(
        (dup["duplicate"].as_bool(), dup["ts"].clone()),
        (Some(true), ack["ts"].clone())
    );
    wa.send(edit("e1", &conv, 1, "other")).await;
    wa.expect_error("e1", "conflict").await;
    // A send id reused for an edit is a conflict too.
    wa.send(edit("m1", &conv, 1, "x")).await;
    wa.expect_error("m1", "conflict").await;
    // Only the sender edits; a message that does not exist is not_found; an edit needs content.
    wb.send(edit("e2", &conv, 1, "mine now")).await;
    wb.expect_error("e2", "forbidden").await;
    wa.send(edit("e3", &conv, 9, "x")).await;
    wa.expect_error("e3", "not_found").await;
    wa.send(json!({"type": "edit", "id": "e4", "conversation_id": conv, "seq": 1}))
        .await;
    wa.expect_error("e4", "bad_request").await;
    wa.send(json!({"type": "edit", "id": "e5", "conversation_id": conv, "seq": 1, "text": "hi", "meta": []}))
        .await;
    wa.expect_error("e5", "bad_request").await;

    wa.send(
        json!({"type": "edit", "id": "e6", "conversation_id": conv, "seq": 1, "meta": {"k": 2}}),
    )
    .await;
    assert_eq!(wa.next_where(|v| v["id"] == "e6").await["type"], "ack");
    let m = &page(&s, &b, &conv).await[0];
    assert_eq!(
        (m["text"].as_str(), m["meta"].clone()),
        (Some("hello"), json!({"k": 2}))
    );
    assert!(m["edited_at"].as_i64().is_some());
    // History over the socket says the same.
    wb.send(json!({"type": "history", "id": "h", "conversation_id": conv}))
        .await;
    let h = wb.next_where(|v| v["id"] == "h").await;
    assert_eq!(h["messages"][0]["text"], "hello");
    // Earlier versions, oldest first, for members only.
    let path = format!("/v1/conversations/{conv}/messages/1/versions");
    let (st, v) = s.get(&path, &b.token).await;
    assert_eq!(st, 200, "{v}");
    let texts: Vec<&str> = v["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, vec!["helo", "hello"]);
    assert_eq!(v["versions"][0]["meta"], json!({"k": 1}));
    let c = s.user("carol").await;
    assert_err(&s.get(&path, &c.token).await, 403, "forbidden");
    let missing = format!("/v1/conversations/{conv}/messages/7/versions");
    assert_err(&s.get(&missing, &b.token).await, 404, "not_found");

    // A retraction purges the versions and ends editing.
    wa.send(json!({"type": "delete", "id": "d1", "conversation_id": conv, "seq": 1, "scope": "everyone"}))
        .await;
    assert_eq!(wa.next_where(|v| v["id"] == "d1").await["type"], "ack");
    let (_, v) = s.get(&path, &b.token).await;
    assert_eq!(v["versions"], json!([]));
    wa.send(edit("e7", &conv, 1, "back")).await;
    wa.expect_error("e7", "not_found").await;
    let rows = stored_texts(&s.dir.join("parley.db"));
    assert!(
        !rows.iter().any(|t| t.contains("helo")),
        "an earlier version survived: {rows:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_end_with_the_edit_window() {
    let s = TestServer::builder()
        .config("[limits]\nedit_window_secs = 0")
        .start();
    let a = s.user("alice").await;
    let b = s.user("bob").await;
    let conv = s.direct(&a, &b).await;
    let mut wa = s.ws(&a).await;
    wa.send_msg(&conv, "m1", "old").await;
    let sent = now_ms();
    while now_ms() <= sent + 5 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    wa.send(edit("e1", &conv, 1, "new")).await;
    let e = wa.expect_error("e1", "forbidden").await;
    assert!(e["message"].as_str().unwrap().contains("window"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reactions_are_live_counted_once_and_summarised_in_pages() {
    let s = TestServer::builder()
        .config("[limits]\nmax_reactions_per_message = 2")
        .start();
    let a = s.user("alice").await;
    let b = s.user("bob").await;
    let c = s.user("carol").await;
    let g = s.group(&a, &[&b, &c]).await;
    let mut wa = s.ws(&a).await;
    let mut wb = s.ws(&b).await;
    let mut wc = s.ws(&c).await;
    wa.send_msg(&g, "m1", "vote").await;
    wb.next_type("message").await;
    wc.next_type("message").await;

    wb.send(react("r1", &g, 1, "👍", false)).await;
    let (ack, own) = answer_and(&mut wb, "r1", "reaction").await;
    assert_eq!(
        (ack["type"].as_str(), ack["seq"].as_u64()),
        (Some("ack"), Some(1))
    );
    for w in [&mut wa, &mut wc] {
        let r = w.next_type("reaction").await;
        assert_eq!(r, own);
        assert_eq!(
            r,
            json!({"type": "reaction", "conversation_id": g, "seq": 1, "user_id": b.user_id, "emoji": "👍", "added": true})
        );
    }
    // The same reaction again changes nothing: a duplicate, and no frame.
    wb.send(react("r2", &g, 1, "👍", false)).await;
    assert_eq!(wb.next_where(|v| v["id"] == "r2").await["duplicate"], true);
    wc.send(react("r3", &g, 1, "👍", false)).await;
    wc.next_where(|v| v["id"] == "r3").await;
    wc.send(react("r4", &g, 1, "🎉", false)).await;
    wc.next_where(|v| v["id"] == "r4").await;
    // A third distinct emoji is past this server's limit; bad emojis are refused.
    wa.send(react("r5", &g, 1, "🔥", false)).await;
    wa.expect_error("r5", "too_large").await;
    wa.send(react("r6", &g, 1, "", false)).await;
    wa.expect_error("r6", "bad_request").await;
    wa.send(react("r7", &g, 1, &"x".repeat(65), false)).await;
    wa.expect_error("r7", "bad_request").await;
    wa.send(react("r8", &g, 1, "a b", false)).await;
    wa.expect_error("r8", "bad_request").await;
    wa.send(react("r9", &g, 5, "👍", false)).await;
    wa.expect_error("r9", "not_found").await;
    let outsider = s.user("dave").await;
    let mut wd = s.ws(&outsider).await;
    wd.send(react("r10", &g, 1, "👍", false)).await;
    wd.expect_error("r10", "forbidden").await;

    let m = &page(&s, &c, &g).await[0];
    assert_eq!(
        m["reactions"],
        json!([{"emoji": "👍", "count": 2, "me": true}, {"emoji": "🎉", "count": 1, "me": true}])
    );
    let m = &page(&s, &a, &g).await[0];
    assert_eq!(
        m["reactions"][0],
        json!({"emoji": "👍", "count": 2, "me": false})
    );

    // Taken back: live, and gone from the summary.
    wc.send(react("r11", &g, 1, "🎉", true)).await;
    assert_eq!(
        wc.next_where(|v| v["id"] == "r11").await["duplicate"],
        Value::Null
    );
    let r = wa
        .next_where(|v| v["type"] == "reaction" && v["added"] == false)
        .await;
    assert_eq!(r["emoji"], "🎉");
    let m = &page(&s, &a, &g).await[0];
    assert_eq!(
        m["reactions"],
        json!([{"emoji": "👍", "count": 2, "me": false}])
    );
    // A retraction removes them.
    wa.send(
        json!({"type": "delete", "id": "d", "conversation_id": g, "seq": 1, "scope": "everyone"}),
    )
    .await;
    wa.next_where(|v| v["id"] == "d").await;
    let m = &page(&s, &a, &g).await[0];
    assert!(m["reactions"].is_null() && m["deleted"] == true, "{m}");
    wb.send(react("r12", &g, 1, "👍", false)).await;
    wb.expect_error("r12", "not_found").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_brings_the_edits_and_reactions_of_messages_a_device_holds() {
    let s = TestServer::start();
    let a = s.user("alice").await;
    let b = s.user("bob").await;
    let conv = s.direct(&a, &b).await;
    let mut wa = s.ws(&a).await;
    wa.send_msg(&conv, "m1", "one").await;
    wa.send_msg(&conv, "m2", "two").await;
    {
        let mut wb = s.ws(&b).await;
        let got = wb.sync_all(50).await;
        assert_eq!(seqs(&got), vec![1, 2]);
        wb.send(json!({"type": "received", "conversation_id": conv, "seq": 2}))
            .await;
        s.wait_delivered(&b, &conv, 2).await;
    }
    // While Bob's device is away: two edits of seq 1, a reaction to seq 2, and a new message.
    wa.send(edit("e1", &conv, 1, "one!")).await;
    wa.next_where(|v| v["id"] == "e1").await;
    wa.send(edit("e2", &conv, 1, "one!!")).await;
    wa.next_where(|v| v["id"] == "e2").await;
    wa.send(react("r1", &conv, 2, "❤️", false)).await;
    wa.next_where(|v| v["id"] == "r1").await;
    wa.send_msg(&conv, "m3", "three").await;

    let mut wb = s.ws(&b).await;
    let frames = sync_frames(&mut wb, 50).await;
    let edited: Vec<&Value> = frames.iter().filter(|f| f["type"] == "edited").collect();
    assert_eq!(edited.len(), 1, "one frame per edited message: {frames:?}");
    assert_eq!(
        (edited[0]["seq"].as_u64(), edited[0]["text"].as_str()),
        (Some(1), Some("one!!"))
    );
    let reactions: Vec<&Value> = frames.iter().filter(|f| f["type"] == "reaction").collect();
    assert_eq!(reactions.len(), 1, "{frames:?}");
    assert_eq!(
        (reactions[0]["seq"].as_u64(), reactions[0]["emoji"].as_str()),
        (Some(2), Some("❤️"))
    );
    let msgs: Vec<&Value> = frames.iter().filter(|f| f["type"] == "message").collect();
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0]["seq"], 3);
    // The next sync has nothing again: the event cursor moved.
    let again = sync_frames(&mut wb, 50).await;
    assert!(
        again
            .iter()
            .all(|f| f["type"] != "edited" && f["type"] != "reaction"),
        "events replayed twice: {again:?}"
    );

    // A device that never held them (a new one starts at the end, and reads history) gets
    // the messages in their latest state instead.
    let b2 = s.login("bob").await;
    let mut wb2 = s.ws(&b2).await;
    wb2.send(json!({"type": "history", "id": "h", "conversation_id": conv}))
        .await;
    let h = wb2.next_where(|v| v["id"] == "h").await;
    let msgs = h["messages"].as_array().unwrap();
    assert_eq!(seqs(msgs), vec![1, 2, 3]);
    assert_eq!(msgs[0]["text"], "one!!");
    assert!(msgs[0]["edited_at"].as_i64().is_some());
    assert_eq!(
        msgs[1]["reactions"],
        json!([{"emoji": "❤️", "count": 1, "me": false}])
    );
    // And so does a device that was away while they happened to messages it had not got.
    let frames = sync_frames(&mut wb, 50).await;
    assert!(frames.is_empty(), "{frames:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_quotes_the_message_as_it_is_when_read() {
    let s = TestServer::start();
    let a = s.user("alice").await;
    let b = s.user("bob").await;
    let conv = s.direct(&a, &b).await;
    let mut wa = s.ws(&a).await;
    let mut wb = s.ws(&b).await;
    let long = "é".repeat(300);
    wa.send_msg(&conv, "m1", &long).await;
    wb.next_type("message").await;
    wb.send(json!({"type": "send", "id": "r1", "conversation_id": conv, "text": "agreed", "reply_to": 1}))
        .await;
    assert_eq!(wb.next_where(|v| v["id"] == "r1").await["seq"], 2);
    let live = wa.next_type("message").await;
    assert_eq!(live["reply_to"], 1);
    let q = &live["quote"];
    assert_eq!(
        (q["seq"].as_u64(), q["sender_id"].as_str()),
        (Some(1), Some(a.user_id.as_str()))
    );
    assert_eq!(
        q["text"].as_str().unwrap().chars().count(),
        200,
        "quotes are cut to 200 characters"
    );
    assert_eq!(q["attachments"], 0);

    // No such message to reply to; a seq of 0 is malformed.
    wb.send(
        json!({"type": "send", "id": "r2", "conversation_id": conv, "text": "?", "reply_to": 9}),
    )
    .await;
    wb.expect_error("r2", "not_found").await;
    wb.send(
        json!({"type": "send", "id": "r3", "conversation_id": conv, "text": "?", "reply_to": 0}),
    )
    .await;
    wb.expect_error("r3", "bad_request").await;

    // The quote follows an edit, then the retraction of the quoted message.
    wa.send(edit("e1", &conv, 1, "short")).await;
    wa.next_where(|v| v["id"] == "e1").await;
    let m = &page(&s, &a, &conv).await[1];
    assert_eq!(
        (m["reply_to"].as_u64(), m["quote"]["text"].as_str()),
        (Some(1), Some("short"))
    );
    wa.send(json!({"type": "delete", "id": "d1", "conversation_id": conv, "seq": 1, "scope": "everyone"}))
        .await;
    wa.next_where(|v| v["id"] == "d1").await;
    let m = &page(&s, &b, &conv).await[1];
    assert_eq!(m["quote"]["deleted"], true);
    assert!(
        m["quote"]["text"].is_null(),
        "a retracted message is not quoted: {m}"
    );
    // So do history and the catch-up of a device that had not got the reply yet.
    wb.send(json!({"type": "history", "id": "h", "conversation_id": conv}))
        .await;
    let h = wb.next_where(|v| v["id"] == "h").await;
    assert_eq!(h["messages"][1]["quote"]["deleted"], true);
    let c = s.user("carol").await;
    let g = s.group(&a, &[&c]).await;
    wa.send_msg(&g, "g1", "first").await;
    wa.send(json!({"type": "send", "id": "g2", "conversation_id": g, "text": "re", "reply_to": 1}))
        .await;
    wa.next_where(|v| v["id"] == "g2").await;
    let mut wc = s.ws(&c).await;
    let got = wc.sync_all(50).await;
    let reply = got.iter().find(|f| f["seq"] == 2).expect("the reply");
    assert_eq!(reply["quote"]["text"], "first");
}
