-- Parley SQLite schema, version 8: images (issue 13, item 1). An image upload records its
-- dimensions (of the stored copy, orientation applied), its thumbnail's blob and type, and a
-- ThumbHash placeholder (base64). NULL for every other file.
ALTER TABLE files ADD COLUMN width INTEGER;
ALTER TABLE files ADD COLUMN height INTEGER;
ALTER TABLE files ADD COLUMN thumb_sha256 TEXT;
ALTER TABLE files ADD COLUMN thumb_content_type TEXT;
ALTER TABLE files ADD COLUMN placeholder TEXT;
-- A thumbnail's blob is in use while a row names it (see blob_in_use).
CREATE INDEX files_by_thumb_sha ON files(thumb_sha256);
