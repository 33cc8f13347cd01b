//! The blob store: uploaded bytes on the node's disk, content-addressed by SHA-256.
//!
//! It exists so that the two places that touch file content, the upload handler and the
//! retraction that purges it, share one layout and one rule for getting bytes in and out:
//! an upload streams into a temporary file while it is hashed and moves into place
//! (`<dir>/ab/cd/<sha256>`) only once complete and fsynced, so a blob path never holds a
//! partial file; an upload that fails or is abandoned leaves nothing behind.

use sha2::{Digest, Sha256};
use std::io;
use std::path::PathBuf;
use tokio::io::AsyncWriteExt;

/// How many leading bytes of an upload are kept for type sniffing.
const HEAD: usize = 8192;

pub struct Blobs {
    dir: PathBuf,
}

impl Blobs {
    pub fn new(dir: PathBuf) -> Blobs {
        Blobs { dir }
    }

    /// Where the blob with this hash lives.
    pub fn path(&self, sha256: &str) -> PathBuf {
        self.dir
            .join(&sha256[0..2])
            .join(&sha256[2..4])
            .join(sha256)
    }

    /// Starts an upload into a temporary file.
    pub async fn begin(&self) -> io::Result<Upload> {
        let tmp_dir = self.dir.join("tmp");
        tokio::fs::create_dir_all(&tmp_dir).await?;
        let tmp = tmp_dir.join(crate::ids::new_id());
        let file = tokio::fs::File::create(&tmp).await?;
        Ok(Upload {
            file: Some(file),
            tmp,
            hasher: Sha256::new(),
            size: 0,
            head: Vec::new(),
            dir: self.dir.clone(),
        })
    }

    /// Deletes a blob nothing refers to any more. A blob already gone is not an error.
    pub async fn unlink(&self, sha256: &str) -> io::Result<()> {
        match tokio::fs::remove_file(self.path(sha256)).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// An upload in progress. Dropped without `commit`, it removes its temporary file.
pub struct Upload {
    file: Option<tokio::fs::File>,
    tmp: PathBuf,
    hasher: Sha256,
    size: u64,
    head: Vec<u8>,
    dir: PathBuf,
}

impl Upload {
    pub async fn write(&mut self, chunk: &[u8]) -> io::Result<()> {
        if self.head.len() < HEAD {
            let take = (HEAD - self.head.len()).min(chunk.len());
            self.head.extend_from_slice(&chunk[..take]);
        }
        self.hasher.update(chunk);
        self.size += chunk.len() as u64;
        match self.file.as_mut() {
            Some(f) => f.write_all(chunk).await,
            None => Err(io::Error::other("upload already finished")),
        }
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The first bytes, for checking the declared type.
    pub fn head(&self) -> &[u8] {
        &self.head
    }

    /// Makes the bytes durable and moves them into place; returns the SHA-256 (hex). Identical
    /// content lands on the same path, so storing it twice keeps one blob.
    pub async fn commit(mut self) -> io::Result<String> {
        let file = self.file.take().expect("commit once");
        file.sync_all().await?;
        drop(file);
        let sha = hex::encode(std::mem::take(&mut self.hasher).finalize());
        let dest = Blobs {
            dir: self.dir.clone(),
        }
        .path(&sha);
        if let Some(parent) = dest.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        tokio::fs::rename(&self.tmp, &dest).await?;
        self.tmp = PathBuf::new();
        Ok(sha)
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}
