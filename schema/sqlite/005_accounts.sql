-- Parley SQLite schema, version 5: accounts and devices (protocol v1.1, issue 12 items 7, 9).
-- A device's current refresh token, as the hex SHA-256 of the token (rotated on every use;
-- presenting an older one revokes the device), and when it was last connected.
ALTER TABLE devices ADD COLUMN refresh_hash TEXT;
ALTER TABLE devices ADD COLUMN last_seen_at INTEGER;
