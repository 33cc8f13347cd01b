//! The blob store: uploaded bytes, content-addressed by SHA-256, behind one `Backend` trait
//! with two implementations: the node's disk (`local`, the default) and S3-compatible object
//! storage (`s3`), for clusters across hosts where a file uploaded to one node must be
//! readable on every other.
//!
//! It exists so that every place that touches file content (the upload handlers, the one
//! place bytes are served, the purges) shares one rule for getting bytes in and out, whatever
//! holds them: an upload streams into a temporary file on the node's disk while it is hashed,
//! and only once complete and fsynced is it handed to the backend under its hash (the local
//! backend renames it into `<dir>/ab/cd/<sha256>`, the S3 one puts it as an object), so a
//! blob key never holds a partial file, and an upload that fails or is abandoned leaves
//! nothing behind. Identical bytes get the same key, so they are stored once, whoever sent
//! them; who may read them is the store's business (one file row per upload), never the
//! blob store's.

mod local;
mod s3;

use bytes::Bytes;
use futures_util::Stream;
use sha2::{Digest, Sha256};
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How many leading bytes of an upload are kept for type sniffing.
const HEAD: usize = 8192;
/// The size of the chunks blob bytes are read and streamed in.
const CHUNK: usize = 64 * 1024;

/// A blob's bytes (or a range of them) as they come from the backend.
pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// Where blobs live. Keys are SHA-256 hashes in hex; every operation is idempotent.
#[async_trait::async_trait]
pub trait Backend: Send + Sync {
    /// Stores the complete, fsynced file at `staged` (`size` bytes) under `key`. The file may
    /// be moved away; if it is still there afterwards, the caller removes it.
    async fn put(&self, key: &str, staged: &Path, size: u64) -> io::Result<()>;
    /// The blob's size, or `None` if there is no such blob.
    async fn size(&self, key: &str) -> io::Result<Option<u64>>;
    /// Bytes `start..end` of the blob (`end` at most its size), streamed.
    async fn read(&self, key: &str, start: u64, end: u64) -> io::Result<ByteStream>;
    /// Deletes the blob; one already gone is not an error.
    async fn delete(&self, key: &str) -> io::Result<()>;
}

pub struct Blobs {
    backend: Arc<dyn Backend>,
    /// The node's own directory for uploads in progress (always on local disk).
    staging: PathBuf,
    /// Partial bytes of resumable uploads (local disk, kept across restarts).
    partial: PathBuf,
    kind: &'static str,
}

impl Blobs {
    /// Blobs on the node's disk under `dir` (today's layout).
    pub fn new(dir: PathBuf) -> Blobs {
        Blobs {
            backend: Arc::new(local::Local::new(dir.clone())),
            staging: dir.join("tmp"),
            partial: dir.join("partial"),
            kind: "local",
        }
    }

    /// The backend `[blobs]` names; staging and partial uploads stay under `dir`.
    pub fn from_config(cfg: &crate::config::BlobsConfig, dir: PathBuf) -> Result<Blobs, String> {
        match cfg.backend.as_str() {
            "local" => Ok(Blobs::new(dir)),
            "s3" => Ok(Blobs {
                backend: Arc::new(s3::S3::new(cfg)?),
                staging: dir.join("tmp"),
                partial: dir.join("partial"),
                kind: "s3",
            }),
            other => Err(format!(
                "blobs.backend: {other:?} is neither \"local\" nor \"s3\""
            )),
        }
    }

    /// "local" or "s3".
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// Where the partial bytes of resumable uploads live (created on demand).
    pub fn partial_dir(&self) -> &Path {
        &self.partial
    }

    /// Starts an upload into a temporary file.
    pub async fn begin(&self) -> io::Result<Upload> {
        tokio::fs::create_dir_all(&self.staging).await?;
        let tmp = self.staging.join(crate::ids::new_id());
        let file = tokio::fs::File::create(&tmp).await?;
        Ok(self.upload(file, tmp))
    }

    /// Turns a complete file on the node's disk (a finished resumable upload) into an upload
    /// ready to commit: moved into staging and hashed. The file is gone from `path` after.
    pub async fn adopt(&self, path: &Path) -> io::Result<Upload> {
        tokio::fs::create_dir_all(&self.staging).await?;
        let tmp = self.staging.join(crate::ids::new_id());
        tokio::fs::rename(path, &tmp).await?;
        let mut file = tokio::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .open(&tmp)
            .await?;
        let mut upload = self.upload(file.try_clone().await?, tmp);
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = file.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            upload.absorb(&buf[..n]);
        }
        Ok(upload)
    }

    fn upload(&self, file: tokio::fs::File, tmp: PathBuf) -> Upload {
        Upload {
            file: Some(file),
            tmp,
            hasher: Sha256::new(),
            size: 0,
            head: Vec::new(),
            backend: self.backend.clone(),
        }
    }

    /// The blob's size, or `None` if it is gone.
    pub async fn size(&self, sha256: &str) -> io::Result<Option<u64>> {
        self.backend.size(sha256).await
    }

    /// Bytes `start..end` of a blob.
    pub async fn read(&self, sha256: &str, start: u64, end: u64) -> io::Result<ByteStream> {
        self.backend.read(sha256, start, end).await
    }

    /// Deletes a blob nothing refers to any more. A blob already gone is not an error.
    pub async fn unlink(&self, sha256: &str) -> io::Result<()> {
        self.backend.delete(sha256).await
    }
}

/// An upload in progress. Dropped without `commit`, it removes its temporary file.
pub struct Upload {
    file: Option<tokio::fs::File>,
    tmp: PathBuf,
    hasher: Sha256,
    size: u64,
    head: Vec<u8>,
    backend: Arc<dyn Backend>,
}

impl Upload {
    pub async fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        self.absorb(chunk);
        match self.file.as_mut() {
            Some(f) => f.write_all(chunk).await,
            None => Err(io::Error::other("upload already finished")),
        }
    }

    /// Counts and hashes bytes (and keeps the first ones) without writing them.
    fn absorb(&mut self, chunk: &[u8]) {
        if self.head.len() < HEAD {
            let take = (HEAD - self.head.len()).min(chunk.len());
            self.head.extend_from_slice(&chunk[..take]);
        }
        self.hasher.update(chunk);
        self.size += chunk.len() as u64;
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The first bytes, for checking the declared type.
    pub fn head(&self) -> &[u8] {
        &self.head
    }

    /// Makes the bytes durable and hands them to the backend; returns the SHA-256 (hex).
    /// Identical content gets the same key, so storing it twice keeps one blob.
    pub async fn commit(mut self) -> io::Result<String> {
        let file = self.file.take().expect("commit once");
        file.sync_all().await?;
        drop(file);
        let sha = hex::encode(std::mem::take(&mut self.hasher).finalize());
        self.backend.put(&sha, &self.tmp, self.size).await?;
        Ok(sha)
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        // After a local commit the file was renamed away; after an S3 one it is removed here.
        let _ = std::fs::remove_file(&self.tmp);
    }
}

/// Streams bytes `start..end` of an open file in chunks.
fn file_stream(file: tokio::fs::File, len: u64) -> ByteStream {
    Box::pin(futures_util::stream::unfold(
        (file, len),
        |(mut file, left)| async move {
            if left == 0 {
                return None;
            }
            let mut buf = vec![0u8; CHUNK.min(left as usize)];
            match file.read(&mut buf).await {
                Ok(0) => Some((
                    Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "blob shorter than its size",
                    )),
                    (file, 0),
                )),
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok(Bytes::from(buf)), (file, left - n as u64)))
                }
                Err(e) => Some((Err(e), (file, 0))),
            }
        },
    ))
}
