-- Parley SQLite schema, version 10: messages and idempotency keys in rowid tables, written at
-- one edge (issue 15, target 1).
--
-- Both were WITHOUT ROWID tables keyed by a 32-character id first (conversation, device), the
-- way the ScyllaDB schema partitions them. Every commit then dirtied the tail leaf of each
-- conversation and sender it touched, and a tail that filled split in the middle of the tree,
-- rewriting three siblings and their parent (SQLite's cheap right-edge split is for rowid
-- tables only). In rowid tables the rows of every conversation are appended to the one
-- rightmost leaf, and what is keyed by conversation or device is a small index entry.
--
-- `idempotency_by_ts` goes: keys are written in about the order of their stamps, so expiry
-- deletes the oldest rowids up to the first key that is still young
-- (storage/sqlite/cursors.rs).

CREATE TABLE messages_v10 (
    conversation_id  TEXT NOT NULL,
    seq              INTEGER NOT NULL,
    message_id       TEXT NOT NULL,
    sender_id        TEXT NOT NULL,
    sender_device_id TEXT NOT NULL,
    client_id        TEXT NOT NULL,
    ts               INTEGER NOT NULL,
    text             TEXT,
    attachments      TEXT,
    meta             TEXT,
    deleted          INTEGER NOT NULL DEFAULT 0,
    deleted_by       TEXT,
    edited_at        INTEGER,
    reply_to         INTEGER
);
INSERT INTO messages_v10 (conversation_id, seq, message_id, sender_id, sender_device_id,
        client_id, ts, text, attachments, meta, deleted, deleted_by, edited_at, reply_to)
    SELECT conversation_id, seq, message_id, sender_id, sender_device_id, client_id, ts, text,
        attachments, meta, deleted, deleted_by, edited_at, reply_to
    FROM messages ORDER BY conversation_id, seq;
DROP TABLE messages;
ALTER TABLE messages_v10 RENAME TO messages;
CREATE UNIQUE INDEX messages_by_seq ON messages(conversation_id, seq);

CREATE TABLE idempotency_v10 (
    device_id       TEXT NOT NULL,
    client_id       TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    message_id      TEXT NOT NULL,
    ts              INTEGER NOT NULL,
    payload_hash    TEXT
);
INSERT INTO idempotency_v10 (device_id, client_id, conversation_id, seq, message_id, ts,
        payload_hash)
    SELECT device_id, client_id, conversation_id, seq, message_id, ts, payload_hash
    FROM idempotency ORDER BY ts;
DROP TABLE idempotency;
ALTER TABLE idempotency_v10 RENAME TO idempotency;
CREATE UNIQUE INDEX idempotency_by_key ON idempotency(device_id, client_id);
