-- Parley SQLite schema, version 6: group receipt summaries (protocol v1.1, issue 12 item 4).

-- Receipt marks: when a member's delivered or read position moved to `seq`. The latest 32 per
-- (conversation, user, kind) are kept, so the time a member passed a message is the `ts` of its
-- first mark at or above that seq, at a cost bounded by members, not by history.
CREATE TABLE receipt_marks (
    conversation_id TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    kind            TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    ts              INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, user_id, kind, seq)
) WITHOUT ROWID;
