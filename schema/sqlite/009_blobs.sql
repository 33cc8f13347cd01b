-- Parley SQLite schema, version 9: resumable uploads and upload housekeeping (issue 13, items
-- 2 and 5). Version 8 is the image columns of `files`.

-- A resumable (tus) upload: who started it, how long it will be, its declared type and the
-- client's Upload-Metadata as sent. The bytes received so far are a file on the disk of the
-- node that took them (<data_dir>/files/partial/<upload_id>); its length is the offset.
-- `file_id` is set once the upload completed into a file. Rows past `expires_at` are swept
-- with their partial bytes.
CREATE TABLE uploads (
    upload_id    TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL,
    device_id    TEXT NOT NULL,
    length       INTEGER NOT NULL,
    content_type TEXT NOT NULL,
    metadata     TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    file_id      TEXT
) WITHOUT ROWID;
CREATE INDEX uploads_by_expiry ON uploads(expires_at);

-- The per-user quota sums the sizes of a user's files; the unattached-file sweep walks old
-- files.
CREATE INDEX files_by_uploader ON files(uploader_id);
CREATE INDEX files_by_created ON files(created_at);
