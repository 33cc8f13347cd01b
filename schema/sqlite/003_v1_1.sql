-- Parley SQLite schema, version 3: protocol v1.1 (issue 12).

-- What a client id was used for: a retry with the same id but another payload is a conflict,
-- not the original's ack.
ALTER TABLE idempotency ADD COLUMN payload_hash TEXT;
