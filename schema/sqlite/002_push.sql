-- Parley SQLite schema, version 2: push notifications (issue 11).

-- A device's push target: the Web Push subscription keys, the payload mode, when it was
-- registered, and whether a provider declared it dead (then the app must register again).
ALTER TABLE devices ADD COLUMN push_p256dh TEXT;
ALTER TABLE devices ADD COLUMN push_auth TEXT;
ALTER TABLE devices ADD COLUMN push_payload TEXT;
ALTER TABLE devices ADD COLUMN push_registered_at INTEGER;
ALTER TABLE devices ADD COLUMN push_disabled_at INTEGER;
ALTER TABLE devices ADD COLUMN push_disabled_reason TEXT;

-- Conversations with committed messages not yet turned into push jobs: written in the same
-- transaction as the messages, so a crash between commit and scheduling loses no push.
CREATE TABLE push_pending (
    conversation_id TEXT PRIMARY KEY,
    upto_seq        INTEGER NOT NULL
) WITHOUT ROWID;

-- The outbox: one job per (device, conversation). A newer message replaces a pending one
-- (collapse: `seq` moves, `version` is bumped); a bridge leases due jobs, and a delivery
-- completes only the version it delivered.
CREATE TABLE push_jobs (
    device_id       TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    kind            TEXT NOT NULL,      -- 'message' or 'clear'
    seq             INTEGER NOT NULL,
    version         INTEGER NOT NULL,
    due_at          INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    lease_owner     TEXT,
    lease_until     INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    PRIMARY KEY (device_id, conversation_id)
) WITHOUT ROWID;
CREATE INDEX push_jobs_by_due ON push_jobs(due_at);

-- The newest message a device was notified of, per conversation: once the user has read past
-- it elsewhere, that device is owed a "clear".
CREATE TABLE push_shown (
    device_id       TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    PRIMARY KEY (device_id, conversation_id)
) WITHOUT ROWID;
CREATE INDEX push_shown_by_user ON push_shown(user_id, conversation_id);

-- Per-user settings of a conversation.
CREATE TABLE conversation_settings (
    user_id         TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    muted_until     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, conversation_id)
) WITHOUT ROWID;
