//! Blobs on the node's disk: `<dir>/ab/cd/<sha256>`, the layout every release has used. A put
//! is a rename of the staged file (same file system: staging is `<dir>/tmp`).

use super::{file_stream, Backend, ByteStream};
use std::io;
use std::path::{Path, PathBuf};
use tokio::io::AsyncSeekExt;

pub struct Local {
    dir: PathBuf,
}

impl Local {
    pub fn new(dir: PathBuf) -> Local {
        Local { dir }
    }

    fn path(&self, sha256: &str) -> io::Result<PathBuf> {
        if sha256.len() < 8 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a blob key",
            ));
        }
        Ok(self
            .dir
            .join(&sha256[0..2])
            .join(&sha256[2..4])
            .join(sha256))
    }
}

#[async_trait::async_trait]
impl Backend for Local {
    async fn put(&self, key: &str, staged: &Path, _size: u64) -> io::Result<()> {
        let dest = self.path(key)?;
        if let Some(parent) = dest.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        tokio::fs::rename(staged, &dest).await
    }

    async fn size(&self, key: &str) -> io::Result<Option<u64>> {
        match tokio::fs::metadata(self.path(key)?).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn read(&self, key: &str, start: u64, end: u64) -> io::Result<ByteStream> {
        let mut file = tokio::fs::File::open(self.path(key)?).await?;
        file.seek(io::SeekFrom::Start(start)).await?;
        Ok(file_stream(file, end.saturating_sub(start)))
    }

    async fn delete(&self, key: &str) -> io::Result<()> {
        match tokio::fs::remove_file(self.path(key)?).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}
