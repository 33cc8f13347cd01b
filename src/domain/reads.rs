//! The read-only queries of the contract: message pages (history over WebSocket and HTTP),
//! what a device is owed in one conversation (gap repair), and `sync` pages.
//!
//! It exists so that every way of reading messages applies the same rules: nothing from
//! before the member joined, nothing the user hid, retracted messages as tombstones (in pages)
//! or `deleted` frames (in what is owed), pages bounded by their limit.

use super::broadcast::QuoteInfo;
use super::{rules, view};
use crate::error::ApiResult;
use crate::storage::{
    DeviceConversation, EventKind, MemberRow, Order, ReactionCount, Store, StoreResult,
    StoredMessage,
};
use bytestring::ByteString;
use parley_protocol::{DeleteScope, Message};

use std::collections::HashMap;
use std::sync::Arc;

/// Where one device stands in one conversation, as its session tracks it.
#[derive(Default, Clone, Debug, PartialEq)]
pub struct Position {
    /// Highest seq handed to the device, in order.
    pub pushed: u64,
    /// Highest seq known to exist.
    pub latest: u64,
    /// A catch-up read is in flight.
    pub catching_up: bool,
    pub read: u64,
    /// MessageEvent log position stored for the device, and the highest event sent since.
    pub event_cursor: u64,
    pub event_sent: u64,
}

impl Position {
    /// A conversation as the store knows it for this device, before a session pushed anything.
    pub fn from_device(dc: &DeviceConversation) -> Position {
        Position {
            pushed: dc.delivered_seq,
            latest: dc.last_seq,
            catching_up: false,
            read: dc.read_seq,
            event_cursor: dc.event_cursor,
            event_sent: dc.event_cursor,
        }
    }

    /// A conversation this device learned of from an event: nothing before `joined` is owed.
    pub fn joined_at(joined: u64, last_seq: u64) -> Position {
        Position {
            pushed: joined,
            latest: last_seq,
            read: joined,
            ..Default::default()
        }
    }
}

/// `user`'s membership, read from the store and checked by the one membership rule (an
/// unknown conversation is `not_found`, as everywhere).
pub async fn member(store: &dyn Store, conversation_id: &str, user: &str) -> ApiResult<MemberRow> {
    let row = store.member(conversation_id, user).await?;
    if row.is_none() && store.load_conversation(conversation_id).await?.is_none() {
        return Err(rules::no_conversation());
    }
    rules::stored_member(row)
}

/// Messages with `after < seq < before`, ascending, without the ones the user hid; retracted
/// ones as tombstones. `Order::Desc` takes the newest `limit` below `before` (history),
/// `Order::Asc` the oldest above `after` (forward paging). Callers pass the member's join seq
/// as the lowest `after`. Hidden messages do not count against `limit`: the page reads on
/// past them, so a page is short (or empty) only when nothing further is there, and a client
/// pages on from the seq it got last (bounded: after `MAX_ROUNDS` reads it returns what it
/// has, which is never empty unless the user hid that many messages in a row).
pub async fn message_page(
    store: &dyn Store,
    user: &str,
    conversation_id: &str,
    after: u64,
    before: u64,
    limit: u32,
    order: Order,
) -> StoreResult<Vec<Message>> {
    const MAX_ROUNDS: usize = 8;
    let (mut after, mut before) = (after, before);
    let mut kept: Vec<StoredMessage> = Vec::new();
    let mut reactions = Vec::new();
    for _ in 0..MAX_ROUNDS {
        let parts = store
            .page_parts(conversation_id, user, after, before, limit, order)
            .await?;
        let msgs = parts.messages;
        let full = msgs.len() as u32 == limit;
        let (lo, hi) = match (
            msgs.iter().map(|m| m.seq).min(),
            msgs.iter().map(|m| m.seq).max(),
        ) {
            (Some(lo), Some(hi)) => (lo, hi),
            _ => break,
        };
        let hidden = parts.hidden;
        reactions.extend(parts.reactions);
        kept.extend(msgs.into_iter().filter(|m| !hidden.contains(&m.seq)));
        if !full || kept.len() as u32 >= limit {
            break;
        }
        match order {
            Order::Desc => before = lo,
            Order::Asc => after = hi,
        }
    }
    kept.sort_by_key(|m| m.seq);
    let excess = kept.len().saturating_sub(limit as usize);
    match order {
        Order::Desc => drop(kept.drain(..excess)),
        Order::Asc => kept.truncate(limit as usize),
    }
    let mut page: Vec<Message> = kept
        .into_iter()
        .map(|m| view::stored_message(m, user))
        .collect();
    decorate(store, conversation_id, &mut page, &reactions).await?;
    Ok(page)
}

/// Adds the quotes and the `reactions` (read with the page, `Store::page_parts`) of a page
/// of messages: one read per distinct quoted message (a quote is built when it is read, so it
/// shows the quoted message's latest version, or that it was retracted).
async fn decorate(
    store: &dyn Store,
    conversation_id: &str,
    page: &mut [Message],
    reactions: &[(u64, Vec<ReactionCount>)],
) -> StoreResult<()> {
    let mut quotes: HashMap<u64, QuoteInfo> = HashMap::new();
    for q in page.iter().filter_map(|m| m.reply_to) {
        if quotes.contains_key(&q) {
            continue;
        }
        if let Some(quoted) = store.message(conversation_id, q).await? {
            quotes.insert(q, view::quote(&quoted));
        }
    }
    for m in page.iter_mut() {
        let r = reactions
            .iter()
            .find(|(seq, _)| *seq == m.seq)
            .map(|(_, r)| r.as_slice())
            .unwrap_or(&[]);
        let q = m.reply_to.and_then(|q| quotes.get(&q));
        view::decorate(m, q, r);
    }
    Ok(())
}

/// A history page for a member: the newest `limit` messages below `before`.
pub async fn history(
    store: &dyn Store,
    user: &str,
    conversation_id: &str,
    before: u64,
    limit: u32,
) -> ApiResult<Vec<Message>> {
    let joined = member(store, conversation_id, user).await?.joined_seq;
    Ok(message_page(
        store,
        user,
        conversation_id,
        joined,
        before,
        limit,
        Order::Desc,
    )
    .await?)
}

/// One item of what a device is owed: the frame that stands for seqs `first..=last` (one
/// message, or a range that expired).
#[derive(Debug)]
pub struct Owed {
    pub first: u64,
    pub last: u64,
    pub frame: Option<ByteString>,
}

/// What a device is owed in one conversation after `after`, in seq order. A message the user
/// hid comes as a `deleted` frame with scope `me` (a client checking seq for gaps sees why it
/// has no message there), and messages purged by retention as one `expired` frame for their
/// range; `frame` is `None` never today but keeps the position logic honest if one is skipped.
pub async fn owed_frames(
    store: &dyn Store,
    user: &str,
    conversation_id: &str,
    after: u64,
    limit: u32,
) -> StoreResult<Vec<Owed>> {
    let parts = store
        .page_parts(conversation_id, user, after, u64::MAX, limit, Order::Asc)
        .await?;
    let msgs = parts.messages;
    let mut items: Vec<Owed> = Vec::with_capacity(msgs.len() + 1);
    // Retention purges from the oldest message up: what is missing right after `after` expired.
    let first = match msgs.first() {
        Some(m) => m.seq,
        None => store.retention(conversation_id).await?.expired_through + 1,
    };
    if first > after + 1 {
        items.push(Owed {
            first: after + 1,
            last: first - 1,
            frame: Some(view::expired(conversation_id, after + 1, first - 1)),
        });
    }
    if msgs.is_empty() {
        return Ok(items);
    }
    let hidden = parts.hidden;
    let mut shown = Vec::new();
    for m in msgs {
        let seq = m.seq;
        let frame = if hidden.contains(&seq) {
            Some(view::deleted(conversation_id, seq, DeleteScope::Me, user))
        } else if m.deleted {
            Some(view::tombstone(&m))
        } else {
            shown.push(view::stored_message(m, user));
            None
        };
        items.push(Owed {
            first: seq,
            last: seq,
            frame,
        });
    }
    decorate(store, conversation_id, &mut shown, &parts.reactions).await?;
    let mut shown = shown.into_iter();
    for item in items.iter_mut().filter(|i| i.frame.is_none()) {
        item.frame = shown.next().map(view::message);
    }
    Ok(items)
}

pub struct SyncPage {
    /// The new position of every conversation of the device.
    pub positions: Vec<(Arc<str>, Position)>,
    pub frames: Vec<ByteString>,
    pub more: bool,
}

/// One `sync` page of at most `limit` frames, continuing from the positions the session
/// `known`s (or the device's stored cursors for conversations it has not seen).
pub async fn sync_page(
    store: &dyn Store,
    user: &str,
    device: &str,
    known: &HashMap<Arc<str>, Position>,
    limit: u32,
) -> ApiResult<SyncPage> {
    let dcs = store.device_conversations(device, user).await?;
    let mut budget = limit as usize;
    let mut page = SyncPage {
        positions: Vec::new(),
        frames: Vec::new(),
        more: false,
    };
    for dc in dcs {
        let key: Arc<str> = Arc::from(dc.conversation_id.as_str());
        let mut pos = known
            .get(&key)
            .cloned()
            .unwrap_or_else(|| Position::from_device(&dc));
        pos.pushed = pos.pushed.max(dc.delivered_seq);
        pos.latest = pos.latest.max(dc.last_seq);
        pos.read = pos.read.max(dc.read_seq);
        pos.event_cursor = pos.event_cursor.max(dc.event_cursor);
        pos.event_sent = pos.event_sent.max(pos.event_cursor);
        if budget > 0 {
            budget = sync_conversation(store, user, &dc, &mut pos, budget, &mut page).await?;
        }
        page.more |= pos.latest > pos.pushed;
        page.positions.push((key, pos));
    }
    Ok(page)
}

/// Adds one conversation's share of a sync page: events of messages the device holds,
/// then what it is owed, within `budget` frames. Returns the budget left.
async fn sync_conversation(
    store: &dyn Store,
    user: &str,
    dc: &DeviceConversation,
    pos: &mut Position,
    mut budget: usize,
    page: &mut SyncPage,
) -> ApiResult<usize> {
    let held = pos.pushed;
    let rs = store
        .events_since(&dc.conversation_id, user, pos.event_sent, budget as u32)
        .await?;
    if rs.len() == budget {
        page.more = true;
    }
    let mut edited: Vec<u64> = Vec::new();
    for r in rs {
        pos.event_sent = r.event_no;
        if r.seq > held {
            continue; // the message itself comes in its latest state
        }
        let conv = &r.conversation_id;
        let frame = match &r.kind {
            EventKind::Retract => view::deleted(conv, r.seq, DeleteScope::Everyone, &r.by_user),
            EventKind::Hide => view::deleted(conv, r.seq, DeleteScope::Me, &r.by_user),
            EventKind::React { emoji, added } => {
                view::reaction(conv, r.seq, &r.by_user, emoji, *added)
            }
            EventKind::Edit => {
                if !edited.contains(&r.seq) {
                    edited.push(r.seq);
                }
                continue;
            }
            EventKind::Other => continue,
        };
        page.frames.push(frame);
        budget = budget.saturating_sub(1);
    }
    // One frame per edited message, with its latest version (none if it was retracted since:
    // its `deleted` is in this page or the next).
    for seq in edited {
        if let Some(m) = store.message(&dc.conversation_id, seq).await? {
            if !m.deleted {
                page.frames.push(view::edited(&m, &m.sender_id));
                budget = budget.saturating_sub(1);
            }
        }
    }
    if pos.latest > pos.pushed && budget > 0 {
        let items =
            owed_frames(store, user, &dc.conversation_id, pos.pushed, budget as u32).await?;
        for item in items {
            if item.first != pos.pushed + 1 {
                break;
            }
            pos.pushed = item.last;
            if let Some(f) = item.frame {
                page.frames.push(f);
                budget -= 1;
            }
            if budget == 0 {
                break;
            }
        }
    }
    Ok(budget)
}
