-- Parley SQLite schema, version 7: retention (issue 12, item 11).

-- A conversation's own retention period (NULL: the deployment's `retention.default_secs`)
-- and how far its messages have been purged: every seq up to `expired_through` is gone, so
-- the conversation's last seq is at least this even when all its messages expired.
CREATE TABLE retention (
    conversation_id TEXT PRIMARY KEY,
    retention_secs  INTEGER,
    expired_through INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

-- What senders are told: messages of `user_id` in (from_seq, to_seq] that expired before
-- `device_id` of `recipient_id` received them (`lost` of them), one row per device, its range
-- widened by each purge. Cleared by the sender (DELETE /v1/undeliverable).
CREATE TABLE undeliverable (
    user_id         TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    device_id       TEXT NOT NULL,
    to_seq          INTEGER NOT NULL,
    from_seq        INTEGER NOT NULL,
    recipient_id    TEXT NOT NULL,
    lost            INTEGER NOT NULL,
    ts              INTEGER NOT NULL,
    PRIMARY KEY (user_id, conversation_id, device_id)
) WITHOUT ROWID;
