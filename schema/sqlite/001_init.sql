-- Parley SQLite schema, version 1.
-- Every table is keyed the way the ScyllaDB schema partitions it: messages by
-- (conversation_id, seq), cursors by device, idempotency keys by (device_id, client_id).

CREATE TABLE users (
    user_id       TEXT PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE,
    display_name  TEXT,
    password_hash TEXT NOT NULL,
    created_at    INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE devices (
    device_id     TEXT PRIMARY KEY,
    user_id       TEXT NOT NULL,
    name          TEXT,
    created_at    INTEGER NOT NULL,
    push_provider TEXT,
    push_token    TEXT,
    push_endpoint TEXT
) WITHOUT ROWID;
CREATE INDEX devices_by_user ON devices(user_id);

CREATE TABLE conversations (
    conversation_id TEXT PRIMARY KEY,
    kind            TEXT NOT NULL,
    title           TEXT,
    created_by      TEXT NOT NULL,
    created_at      INTEGER NOT NULL,
    -- "userA:userB" (sorted) for direct conversations, so that a pair has only one.
    direct_key      TEXT UNIQUE
) WITHOUT ROWID;

CREATE TABLE members (
    conversation_id TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    role            TEXT NOT NULL,
    joined_seq      INTEGER NOT NULL,
    delivered_seq   INTEGER NOT NULL DEFAULT 0,
    read_seq        INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (conversation_id, user_id)
) WITHOUT ROWID;
CREATE INDEX members_by_user ON members(user_id);

CREATE TABLE messages (
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
    PRIMARY KEY (conversation_id, seq)
) WITHOUT ROWID;

CREATE TABLE device_cursors (
    device_id         TEXT NOT NULL,
    conversation_id   TEXT NOT NULL,
    delivered_seq     INTEGER NOT NULL,
    retraction_cursor INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (device_id, conversation_id)
) WITHOUT ROWID;

CREATE TABLE idempotency (
    device_id       TEXT NOT NULL,
    client_id       TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    message_id      TEXT NOT NULL,
    ts              INTEGER NOT NULL,
    PRIMARY KEY (device_id, client_id)
) WITHOUT ROWID;
CREATE INDEX idempotency_by_ts ON idempotency(ts);

-- Retractions ("everyone") and hides ("me", for_user set), as a per-conversation log that
-- sync replays to devices that already hold the message.
CREATE TABLE retractions (
    conversation_id TEXT NOT NULL,
    event_no        INTEGER NOT NULL,
    seq             INTEGER NOT NULL,
    scope           TEXT NOT NULL,
    by_user         TEXT NOT NULL,
    for_user        TEXT,
    ts              INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, event_no)
) WITHOUT ROWID;

CREATE TABLE hidden (
    user_id         TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    PRIMARY KEY (user_id, conversation_id, seq)
) WITHOUT ROWID;

CREATE TABLE files (
    file_id      TEXT PRIMARY KEY,
    uploader_id  TEXT NOT NULL,
    size         INTEGER NOT NULL,
    content_type TEXT NOT NULL,
    sha256       TEXT NOT NULL,
    created_at   INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX files_by_sha ON files(sha256);

-- A file is readable by the members of every conversation it was sent in.
CREATE TABLE file_grants (
    file_id         TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    PRIMARY KEY (file_id, conversation_id, seq)
) WITHOUT ROWID;
CREATE INDEX file_grants_by_conv ON file_grants(conversation_id, seq);

-- Small operational values (readiness probe writes here).
CREATE TABLE kv (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
