-- Parley SQLite schema, version 4: conversations in protocol v1.1 (issue 12, items 5, 6, 8).

-- A group's avatar: the id of an uploaded file (item 5).
ALTER TABLE conversations ADD COLUMN avatar TEXT;

-- Per-user settings that sync across the user's devices (item 6): archived (0/1) and when
-- the conversation was pinned (ms; 0: not pinned), beside muted_until.
ALTER TABLE conversation_settings ADD COLUMN archived INTEGER NOT NULL DEFAULT 0;
ALTER TABLE conversation_settings ADD COLUMN pinned_at INTEGER NOT NULL DEFAULT 0;

-- Users a user blocked (item 8), by the blocker.
CREATE TABLE blocks (
    user_id    TEXT NOT NULL,
    blocked_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (user_id, blocked_id)
) WITHOUT ROWID;
-- Who blocked a user (presence is withheld both ways).
CREATE INDEX blocks_by_blocked ON blocks(blocked_id);
