-- Parley SQLite schema, version 3: protocol v1.1 (issue 12).

-- What a client id was used for: a retry with the same id but another payload is a conflict,
-- not the original's ack.
ALTER TABLE idempotency ADD COLUMN payload_hash TEXT;

-- The retraction log becomes the conversation's event log: retractions and hides as before,
-- and edits and reactions (`kind`, with what the event carries in `data` as JSON). Rows
-- written before this version have only `scope`, which is set for retractions and hides only.
CREATE TABLE events (
    conversation_id TEXT NOT NULL,
    event_no        INTEGER NOT NULL,
    seq             INTEGER NOT NULL,
    kind            TEXT,
    scope           TEXT,
    data            TEXT,
    by_user         TEXT NOT NULL,
    for_user        TEXT,
    ts              INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, event_no)
) WITHOUT ROWID;
INSERT INTO events (conversation_id, event_no, seq, scope, by_user, for_user, ts)
    SELECT conversation_id, event_no, seq, scope, by_user, for_user, ts FROM retractions;
DROP TABLE retractions;
ALTER TABLE device_cursors RENAME COLUMN retraction_cursor TO event_cursor;

-- The latest version is in `messages`; `edited_at` is when it replaced the one before.
ALTER TABLE messages ADD COLUMN edited_at INTEGER;
-- The seq of the message this one replies to.
ALTER TABLE messages ADD COLUMN reply_to INTEGER;

-- Earlier versions of edited messages, kept until the message is retracted.
CREATE TABLE message_versions (
    conversation_id TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    version         INTEGER NOT NULL,
    text            TEXT,
    meta            TEXT,
    replaced_at     INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, seq, version)
) WITHOUT ROWID;

-- One reaction per (message, emoji, user).
CREATE TABLE reactions (
    conversation_id TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    emoji           TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    ts              INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, seq, emoji, user_id)
) WITHOUT ROWID;
