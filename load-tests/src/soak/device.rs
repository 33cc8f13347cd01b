//! One simulated device: its socket, the operations the scheduler hands it, and what it holds
//! of each of its conversations (`track`). One task owns all of a device's state, so its
//! checks need no locks; only what other tasks read (acks, counters, errors) goes to `World`.
//!
//! The device behaves like the contract's client: it keeps the highest seq it holds per
//! conversation, resends unacknowledged sends with the same ids after a reconnect, pages
//! `sync` until `more` is false on every connection, and follows its membership from
//! `ready` and `conversation` frames.

use super::http;
use super::track::{Tally, Track};
use super::world::{Op, Rng, World};
use crate::client::{self, Ws};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use parley_protocol::{
    Ack, ConversationCursor, ConversationEvent, DeleteScope, ErrorCode, Message, ServerFrame,
};
use serde_json::json;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// Sends and deletes in flight per device.
const WINDOW: usize = 8;
/// Own acked messages remembered for retraction.
const OWN_RECENT: usize = 32;

pub enum Cmd {
    Op(Op),
    /// The run is over: come online, finish what is in flight, catch up.
    Drain,
    /// Whether the device is settled, and what it is owed of the given last seqs (if any).
    Status(Arc<Vec<u64>>, oneshot::Sender<Status>),
    /// The final report against each conversation's last acked seq; the task ends.
    Finish(Arc<Vec<u64>>, oneshot::Sender<Report>),
}

pub struct Status {
    /// Online, nothing in flight, no sync or HTTP call under way.
    pub settled: bool,
    pub owed: u64,
}

pub struct Report {
    pub tally: Tally,
    pub undelivered: u64,
    /// Frames of a conversation left, above its last seq right after the leave.
    pub leaks: u64,
    /// Sends and deletes never acknowledged.
    pub unacked: u64,
    /// Leaves that completed without the `member_removed` frame reaching an online device.
    pub unannounced_leaves: u64,
    /// Joins the device learned of from a message instead of the `member_added` frame.
    pub unannounced_joins: u64,
    pub ack_latency: Histogram<u64>,
}

enum Kind {
    Send,
    Retract(u64),
    Hide,
}

impl Kind {
    fn name(&self) -> &'static str {
        match self {
            Kind::Send => "send",
            Kind::Retract(_) => "retract",
            Kind::Hide => "hide",
        }
    }
}

struct Pending {
    conv: usize,
    /// The message text (unique per send), to recognise it in storage if it is never acked.
    text: String,
    frame: String,
    sent: Instant,
    retry_at: Option<Instant>,
    kind: Kind,
}

impl Pending {
    /// The frame to write again; the ack latency counts from this write.
    fn again(&mut self) -> String {
        self.retry_at = None;
        self.sent = Instant::now();
        self.frame.clone()
    }
}

/// The result of a device's HTTP call.
enum Http {
    Uploaded(Result<String, String>),
    Downloaded(Result<(), String>),
    Joined(Result<(), String>),
    Left(usize, Result<u64, String>),
}

pub struct Device {
    me: usize,
    world: Arc<World>,
    rx: mpsc::Receiver<Cmd>,
    ws: Option<Ws>,
    /// When an offline device connects again.
    back_at: Option<Instant>,
    tracks: HashMap<usize, Track>,
    /// Conversations left, with their last seq right after the leave once it is known.
    left: HashMap<usize, Option<u64>>,
    pending: HashMap<String, Pending>,
    own: VecDeque<(usize, u64)>,
    /// The latest attachment seen: (file id, size).
    file: Option<(String, u64)>,
    http: Option<JoinHandle<Http>>,
    joining: Option<usize>,
    rng: Rng,
    next_id: u64,
    syncing: bool,
    draining: bool,
    tally: Tally,
    leaks: u64,
    unannounced_joins: u64,
    ack_latency: Histogram<u64>,
}

async fn next_frame(ws: &mut Option<Ws>) -> Option<Result<WsMessage, String>> {
    match ws.as_mut() {
        Some(ws) => ws.next().await.map(|r| r.map_err(|e| e.to_string())),
        None => std::future::pending().await,
    }
}

async fn http_done(h: &mut Option<JoinHandle<Http>>) -> Option<Http> {
    let r = match h.as_mut() {
        Some(j) => j.await.ok(),
        None => std::future::pending().await,
    };
    *h = None;
    r
}

impl Device {
    pub fn new(
        me: usize,
        world: Arc<World>,
        rx: mpsc::Receiver<Cmd>,
        first_connect: Instant,
    ) -> Device {
        Device {
            me,
            world,
            rx,
            ws: None,
            back_at: Some(first_connect),
            tracks: HashMap::new(),
            left: HashMap::new(),
            pending: HashMap::new(),
            own: VecDeque::new(),
            file: None,
            http: None,
            joining: None,
            rng: Rng::new(0x50a4_0000 + me as u64),
            next_id: 0,
            syncing: false,
            draining: false,
            tally: Tally::default(),
            leaks: 0,
            unannounced_joins: 0,
            ack_latency: client::hist(),
        }
    }

    pub async fn run(mut self) {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                c = self.rx.recv() => match c {
                    Some(Cmd::Op(op)) => self.op(op).await,
                    Some(Cmd::Drain) => self.draining = true,
                    Some(Cmd::Status(last, reply)) => { let _ = reply.send(self.status(&last)); }
                    Some(Cmd::Finish(last, reply)) => { let _ = reply.send(self.finish(&last).await); return; }
                    None => return,
                },
                f = next_frame(&mut self.ws) => self.on_socket(f).await,
                h = http_done(&mut self.http) => match h {
                    Some(h) => self.on_http(h).await,
                    None => self.world.error("http", "task_failed", false),
                },
                _ = tick.tick() => self.on_tick().await,
            }
        }
    }

    fn status(&self, last: &[u64]) -> Status {
        Status {
            settled: self.ws.is_some()
                && self.pending.is_empty()
                && self.http.is_none()
                && !self.syncing,
            owed: self.owed(last),
        }
    }

    /// What this device is owed in the conversations it is a member of (none if `last` is empty).
    fn owed(&self, last: &[u64]) -> u64 {
        self.tracks
            .iter()
            .filter(|(_, t)| !t.leaving)
            .map(|(i, t)| last.get(*i).map_or(0, |l| t.owed(*l)))
            .sum()
    }

    async fn finish(&mut self, last: &[u64]) -> Report {
        if let Some(ws) = self.ws.as_mut() {
            let _ = ws.close(None).await;
        }
        self.offline();
        let unannounced = self
            .tracks
            .iter()
            .filter(|(i, t)| t.leaving && matches!(self.left.get(*i), Some(Some(_))))
            .count() as u64;
        Report {
            tally: self.tally,
            undelivered: self.owed(last),
            leaks: self.leaks,
            unacked: self.pending.len() as u64,
            unannounced_leaves: unannounced,
            unannounced_joins: self.unannounced_joins,
            ack_latency: self.ack_latency.clone(),
        }
    }

    fn offline(&mut self) {
        self.ws = None;
        self.syncing = false;
        self.world.set_online(self.me, false);
    }

    fn user_id(&self) -> &str {
        &self.world.users[self.me].user_id
    }

    /// Unique over the run: what identifies a message in storage when its ack was lost.
    fn text(&self, id: &str) -> String {
        format!("soak {} {id}", self.me)
    }

    fn new_id(&mut self, prefix: char) -> String {
        self.next_id += 1;
        format!("{prefix}{}", self.next_id)
    }

    async fn write(&mut self, frame: String) {
        let Some(ws) = self.ws.as_mut() else { return };
        if ws.send(WsMessage::Text(frame.into())).await.is_err() {
            self.dropped();
        }
    }

    /// The server closed the socket or it failed: reconnect soon, as a client would.
    fn dropped(&mut self) {
        self.offline();
        self.back_at = Some(Instant::now() + Duration::from_millis(500));
        self.world
            .forced_disconnects
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    async fn on_tick(&mut self) {
        let now = Instant::now();
        if self.ws.is_none() {
            if self.draining || self.back_at.is_some_and(|t| t <= now) {
                self.connect().await;
            }
            return;
        }
        let due: Vec<String> = self
            .pending
            .values_mut()
            .filter(|p| p.retry_at.is_some_and(|t| t <= now))
            .map(Pending::again)
            .collect();
        for f in due {
            self.write(f).await;
        }
    }

    async fn connect(&mut self) {
        let (url, token) = (
            self.world.url_of(self.me).to_string(),
            self.world.users[self.me].token.clone(),
        );
        let attempt =
            tokio::time::timeout(Duration::from_secs(15), client::connect_once(&url, &token)).await;
        let Ok(Ok((ws, ready))) = attempt else {
            self.world.error("connect", "failed", false);
            self.back_at = Some(Instant::now() + Duration::from_secs(1));
            return;
        };
        self.ws = Some(ws);
        self.back_at = None;
        self.world.set_online(self.me, true);
        match serde_json::from_str::<ServerFrame>(&ready) {
            Ok(ServerFrame::Ready { conversations, .. }) => self.on_ready(conversations),
            _ => self.world.error("connect", "bad_ready", false),
        }
        // Unacknowledged sends go again with the same ids: the server acks each once.
        let frames: Vec<String> = self.pending.values_mut().map(Pending::again).collect();
        for f in frames {
            self.write(f).await;
        }
        self.sync().await;
    }

    /// `ready` lists the device's conversations with its stored cursors.
    fn on_ready(&mut self, cursors: Vec<ConversationCursor>) {
        let mut listed = HashSet::new();
        for c in cursors {
            let Some(i) = self.world.conv_index(&c.conversation_id) else {
                continue;
            };
            listed.insert(i);
            match self.tracks.get_mut(&i) {
                Some(t) => t.connected(c.delivered_seq, &mut self.tally),
                None => self.joined(i, c.delivered_seq),
            }
        }
        let gone: Vec<usize> = self
            .tracks
            .keys()
            .filter(|i| !listed.contains(i))
            .copied()
            .collect();
        for i in gone {
            self.removed(i);
        }
    }

    /// The device learned it is a member (from `ready` or a membership frame) from `start` on.
    fn joined(&mut self, i: usize, start: u64) {
        if matches!(self.left.get(&i), Some(Some(_))) && self.joining != Some(i) {
            self.world.error("membership", "listed_after_leave", false);
        }
        if self.joining == Some(i) {
            self.joining = None;
        }
        self.left.remove(&i);
        self.tracks
            .insert(i, Track::new(start, self.world.convs[i].group));
    }

    fn removed(&mut self, i: usize) {
        if let Some(t) = self.tracks.remove(&i) {
            if !t.leaving {
                self.world.error("membership", "removed_unasked", false);
            }
            self.left.entry(i).or_insert(None);
        }
    }

    async fn sync(&mut self) {
        let id = self.new_id('y');
        self.syncing = true;
        self.write(json!({"type": "sync", "id": id, "limit": 200}).to_string())
            .await;
    }

    async fn on_socket(&mut self, f: Option<Result<WsMessage, String>>) {
        let t = match f {
            Some(Ok(WsMessage::Text(t))) => t,
            Some(Ok(WsMessage::Close(_))) | Some(Err(_)) | None => return self.dropped(),
            Some(Ok(_)) => return,
        };
        let Ok(frame) = serde_json::from_str::<ServerFrame>(&t) else {
            return self.world.error("frame", "unparsed", false);
        };
        match frame {
            ServerFrame::Message(m) => self.on_message(m),
            ServerFrame::Deleted {
                conversation_id,
                seq,
                scope,
                ..
            } => self.on_deleted(&conversation_id, seq, scope),
            ServerFrame::Ack(a) => self.on_ack(a),
            ServerFrame::Error { id, code, .. } => self.on_error(id, code),
            ServerFrame::Conversation {
                event,
                conversation,
            } => self.on_conversation(
                event,
                &conversation.conversation_id,
                &conversation.members,
                conversation.last_seq,
            ),
            ServerFrame::Synced { more: true, .. } => self.sync().await,
            ServerFrame::Synced { more: false, .. } => self.syncing = false,
            _ => {}
        }
    }

    /// A frame of a conversation this device does not track: one it left must send nothing
    /// committed after the leave.
    fn stray(&mut self, i: usize, seq: u64) {
        if matches!(self.left.get(&i), Some(Some(bound)) if seq > *bound) {
            self.leaks += 1;
        }
    }

    fn on_message(&mut self, m: Message) {
        let Some(i) = self.world.conv_index(&m.conversation_id) else {
            return;
        };
        if !self.tracks.contains_key(&i) {
            if self.joining != Some(i) {
                return self.stray(i, m.seq);
            }
            // A session that registered while the join was announced misses the announcement
            // and learns of the conversation from its first message: the device starts there.
            self.unannounced_joins += 1;
            self.joined(i, m.seq - 1);
        }
        if let Some(t) = self.tracks.get_mut(&i) {
            t.message(m.seq, &mut self.tally);
            if let Some(a) = m.attachments.first() {
                self.file = Some((a.file_id.clone(), a.size));
            }
        }
    }

    fn on_deleted(&mut self, conv: &str, seq: u64, scope: DeleteScope) {
        let Some(i) = self.world.conv_index(conv) else {
            return;
        };
        if scope == DeleteScope::Me {
            return; // a hide is replayed to the device that made it: nothing to hold
        }
        match self.tracks.get_mut(&i) {
            Some(t) => t.deleted(seq, &mut self.tally),
            None => self.stray(i, seq),
        }
    }

    fn on_ack(&mut self, a: Ack) {
        let Some(p) = self.pending.remove(&a.id) else {
            return self.world.error("ack", "unknown_id", false);
        };
        if self.world.conv_index(&a.conversation_id) != Some(p.conv) {
            return self.world.error("ack", "wrong_conversation", false);
        }
        match p.kind {
            Kind::Send => {
                self.world
                    .record_ack(p.conv, a.seq, &a.message_id, a.duplicate);
                let _ = self
                    .ack_latency
                    .record((p.sent.elapsed().as_micros() as u64).max(1));
                if let Some(t) = self.tracks.get_mut(&p.conv) {
                    t.acked(a.seq);
                }
                if self.own.len() == OWN_RECENT {
                    self.own.pop_front();
                }
                self.own.push_back((p.conv, a.seq));
            }
            Kind::Retract(seq) if seq == a.seq => self.world.retracted(p.conv, seq),
            Kind::Retract(_) => self.world.error("retract", "wrong_seq", false),
            Kind::Hide => {}
        }
    }

    fn member_of(&self, i: usize) -> bool {
        self.tracks.get(&i).is_some_and(|t| !t.leaving)
    }

    fn on_error(&mut self, id: Option<String>, code: ErrorCode) {
        let Some(id) = id else {
            // Receipts carry no id; they fail only for a conversation left meanwhile.
            return self
                .world
                .error("receipt", code.as_str(), code == ErrorCode::Forbidden);
        };
        let Some(p) = self.pending.get_mut(&id) else {
            return self.world.error("frame", code.as_str(), false);
        };
        if code == ErrorCode::Unavailable {
            // Sends and deletes are idempotent: retry with the same id.
            p.retry_at = Some(Instant::now() + Duration::from_millis(250));
            return self.world.error(p.kind.name(), code.as_str(), true);
        }
        let p = self.pending.remove(&id).unwrap();
        let gone =
            matches!(code, ErrorCode::Forbidden | ErrorCode::NotFound) && !self.member_of(p.conv);
        self.world.error(p.kind.name(), code.as_str(), gone);
        if let Kind::Send = p.kind {
            // An earlier attempt, whose ack was lost with its connection, may have been stored.
            self.world.gave_up(&p.text);
        }
    }

    fn on_conversation(
        &mut self,
        event: ConversationEvent,
        conv: &str,
        members: &[String],
        last_seq: u64,
    ) {
        let Some(i) = self.world.conv_index(conv) else {
            return;
        };
        self.world.convs[i]
            .members
            .store(members.len(), std::sync::atomic::Ordering::Relaxed);
        let member = members.iter().any(|m| m == self.user_id());
        let tracked = self.tracks.contains_key(&i);
        match event {
            ConversationEvent::MemberAdded if member && !tracked => self.joined(i, last_seq),
            ConversationEvent::Created if member && !tracked => self.joined(i, 0),
            ConversationEvent::MemberRemoved if !member && tracked => self.removed(i),
            _ => {}
        }
    }

    async fn on_http(&mut self, h: Http) {
        match h {
            Http::Uploaded(Ok(file_id)) => self.send_attachment(file_id).await,
            Http::Uploaded(Err(e)) => self.world.error("upload", &e, false),
            Http::Downloaded(Ok(())) => {}
            // A file whose message was retracted is purged; one of a group left is forbidden.
            Http::Downloaded(Err(e)) => {
                self.world
                    .error("download", &e, e == "http_403" || e == "http_404")
            }
            // On success the membership frame (or the next `ready`) starts the tracking.
            Http::Joined(Ok(())) => {}
            Http::Joined(Err(e)) => {
                self.joining = None;
                self.world.error("join", &e, false);
            }
            Http::Left(i, Ok(bound)) => {
                self.left.insert(i, Some(bound));
            }
            Http::Left(i, Err(e)) => {
                self.world.error("leave", &e, false);
                if let Some(t) = self.tracks.get_mut(&i) {
                    t.leaving = false;
                }
            }
        }
    }
}

/// The operations; each returns whether it was done (else it counts as skipped: offline,
/// window full, nothing to act on).
impl Device {
    async fn op(&mut self, op: Op) {
        let done = if self.ws.is_none() || self.draining {
            false
        } else {
            match op {
                Op::DirectSend => self.send_text(false).await,
                Op::GroupSend => self.send_text(true).await,
                Op::Received | Op::Read => self.receipt(op == Op::Read).await,
                Op::Upload => self.upload(),
                Op::Download => self.download(),
                Op::Retract => self.retract().await,
                Op::Hide => self.hide().await,
                Op::Reconnect => self.go_offline().await,
                Op::Join => self.join(),
                Op::Leave => self.leave(),
            }
        };
        if done {
            self.world.done(op);
        } else {
            self.world.skip(op);
        }
    }

    fn pick_conv(&mut self, f: impl Fn(usize, &Track) -> bool) -> Option<usize> {
        let mut ids: Vec<usize> = self
            .tracks
            .iter()
            .filter(|(i, t)| !t.leaving && f(**i, t))
            .map(|(i, _)| *i)
            .collect();
        ids.sort_unstable(); // choices follow the device's seed, not HashMap order
        self.rng.pick(&ids)
    }

    async fn submit(&mut self, conv: usize, id: String, frame: serde_json::Value, kind: Kind) {
        let text = frame["text"].as_str().unwrap_or_default().to_string();
        let frame = frame.to_string();
        let p = Pending {
            conv,
            text,
            frame: frame.clone(),
            sent: Instant::now(),
            retry_at: None,
            kind,
        };
        self.pending.insert(id, p);
        self.write(frame).await;
    }

    async fn send_text(&mut self, group: bool) -> bool {
        if self.pending.len() >= WINDOW {
            return false;
        }
        let Some(i) = self.pick_conv(|_, t| t.group == group) else {
            return false;
        };
        let id = self.new_id('s');
        let f = json!({"type": "send", "id": id, "conversation_id": self.world.convs[i].id, "text": self.text(&id)});
        self.submit(i, id, f, Kind::Send).await;
        true
    }

    async fn send_attachment(&mut self, file_id: String) {
        if self.ws.is_none() || self.draining || self.pending.len() >= WINDOW {
            return;
        }
        let Some(i) = self.pick_conv(|_, _| true) else {
            return;
        };
        let id = self.new_id('s');
        let f = json!({"type": "send", "id": id, "conversation_id": self.world.convs[i].id,
            "text": self.text(&id), "attachments": [{"file_id": file_id}]});
        self.submit(i, id, f, Kind::Send).await;
    }

    async fn receipt(&mut self, read: bool) -> bool {
        let Some(i) = self.pick_conv(|_, t| t.held() > t.start()) else {
            return false;
        };
        let kind = if read { "read" } else { "received" };
        let f = json!({"type": kind, "conversation_id": self.world.convs[i].id, "seq": self.tracks[&i].held()});
        self.write(f.to_string()).await;
        true
    }

    async fn retract(&mut self) -> bool {
        if self.pending.len() >= WINDOW {
            return false;
        }
        while let Some((i, seq)) = self.own.pop_back() {
            if self.member_of(i) {
                let id = self.new_id('d');
                let f = json!({"type": "delete", "id": id, "conversation_id": self.world.convs[i].id, "seq": seq, "scope": "everyone"});
                self.world.retraction_sent(i, seq);
                self.submit(i, id, f, Kind::Retract(seq)).await;
                return true;
            }
        }
        false
    }

    /// Hides a message this device holds, in a conversation it does not read storage back for.
    async fn hide(&mut self) -> bool {
        let me = self.me;
        let world = self.world.clone();
        let pick = self.pick_conv(|i, t| world.convs[i].reader != me && t.held() > t.start());
        let (Some(i), true) = (pick, self.pending.len() < WINDOW) else {
            return false;
        };
        let t = &self.tracks[&i];
        let seq = t.held() - self.rng.below((t.held() - t.start()).min(20));
        let id = self.new_id('d');
        let f = json!({"type": "delete", "id": id, "conversation_id": self.world.convs[i].id, "seq": seq, "scope": "me"});
        self.submit(i, id, f, Kind::Hide).await;
        true
    }

    /// Half the time cleanly (receipts, then a close frame), else the socket just drops, with
    /// sends possibly in flight; back after 1-4 s.
    async fn go_offline(&mut self) -> bool {
        if self.rng.below(2) == 0 {
            let frames: Vec<String> = self
                .tracks
                .iter()
                .map(|(i, t)| json!({"type": "received", "conversation_id": self.world.convs[*i].id, "seq": t.held()}).to_string())
                .collect();
            for f in frames {
                self.write(f).await;
            }
            if let Some(ws) = self.ws.as_mut() {
                let _ = ws.close(None).await;
            }
        }
        self.offline();
        self.back_at = Some(Instant::now() + Duration::from_millis(1000 + self.rng.below(3000)));
        true
    }

    fn spawn_http(&mut self, f: impl FnOnce(&World) -> Http + Send + 'static) {
        let world = self.world.clone();
        self.http = Some(tokio::task::spawn_blocking(move || f(&world)));
    }

    fn upload(&mut self) -> bool {
        if self.http.is_some() {
            return false;
        }
        let (me, k) = (self.me, self.rng.below(1000));
        self.spawn_http(move |w| {
            Http::Uploaded(http::upload(&w.agent, w.url_of(me), &w.users[me].token, k))
        });
        true
    }

    fn download(&mut self) -> bool {
        let (Some((file_id, size)), true) = (self.file.clone(), self.http.is_none()) else {
            return false;
        };
        let me = self.me;
        self.spawn_http(move |w| {
            Http::Downloaded(http::download(
                &w.agent,
                w.url_of(me),
                &w.users[me].token,
                &file_id,
                size,
            ))
        });
        true
    }

    /// Asks a group's admin to add this user back to a group of its pool.
    fn join(&mut self) -> bool {
        let candidates: Vec<usize> = self.world.pools_of[self.me]
            .iter()
            .filter(|i| !self.tracks.contains_key(i))
            .copied()
            .collect();
        let (Some(i), true) = (self.rng.pick(&candidates), self.http.is_none()) else {
            return false;
        };
        self.joining = Some(i);
        let me = self.me;
        self.spawn_http(move |w| {
            let c = &w.convs[i];
            Http::Joined(http::add_member(
                &w.agent,
                w.url_of(me),
                &w.users[c.reader].token,
                &c.id,
                &w.users[me].user_id,
            ))
        });
        true
    }

    /// Leaves a group (never its admin, never below 3 members or four fifths of its size).
    fn leave(&mut self) -> bool {
        if self.http.is_some() {
            return false;
        }
        let (me, world) = (self.me, self.world.clone());
        let big = |i: usize| {
            let c = &world.convs[i];
            c.members.load(std::sync::atomic::Ordering::Relaxed) > (c.target * 4 / 5).max(3)
        };
        let busy: HashSet<usize> = self.pending.values().map(|p| p.conv).collect();
        let ok = |i: usize, t: &Track| {
            t.group && world.convs[i].reader != me && big(i) && !busy.contains(&i)
        };
        let Some(i) = self.pick_conv(ok) else {
            return false;
        };
        self.tracks.get_mut(&i).unwrap().leaving = true;
        self.spawn_http(move |w| {
            let c = &w.convs[i];
            let (u, r) = (&w.users[me], &w.users[c.reader]);
            Http::Left(
                i,
                http::leave(
                    &w.agent,
                    w.url_of(me),
                    &u.token,
                    &r.token,
                    &c.id,
                    &u.user_id,
                ),
            )
        });
        true
    }
}
