//! The data directory: its lock, and the token signing secret kept in it.
//!
//! Both are taken by every node at start, possibly by several at the same moment (cluster
//! nodes started together on a fresh directory, or a node restarted while its killed
//! predecessor's threads still hold the lock), so each is safe against that race.

use crate::config::Config;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

/// Takes the data directory: exclusively for a lone node, shared for the nodes of a cluster.
/// SQLite itself is safe across processes (WAL), but two nodes without a common bus would both
/// think they own every conversation, and their cached seq counters would collide: refuse.
///
/// A process killed with SIGKILL can hold the lock for a moment longer (its threads, one
/// blocked in fsync, are torn down after it), so a busy lock is waited for up to
/// `data_dir_lock_wait_ms` before the clear error.
pub fn lock(cfg: &Config) -> Result<File, String> {
    let path = cfg.data_dir.join("parley.lock");
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let clustered = !cfg.cluster.bus.is_empty();
    let deadline = Instant::now() + Duration::from_millis(cfg.data_dir_lock_wait_ms);
    let mut told = false;
    loop {
        let res = if clustered {
            f.try_lock_shared()
        } else {
            f.try_lock()
        };
        match res {
            Ok(()) => return Ok(f),
            Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                if !told {
                    told = true;
                    tracing::info!(
                        dir = %cfg.data_dir.display(),
                        wait_ms = cfg.data_dir_lock_wait_ms,
                        "the data directory is locked by another process; waiting for it"
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(TryLockError::WouldBlock) => return Err(in_use(cfg, clustered)),
            Err(TryLockError::Error(e)) => return Err(format!("{}: {e}", path.display())),
        }
    }
}

fn in_use(cfg: &Config, clustered: bool) -> String {
    format!(
        "the data directory {} is in use by another Parley node{}; nodes may share one \
         database only as a cluster: start every one of them with the same --bus \
         redis://... (or give this node its own --data-dir)",
        cfg.data_dir.display(),
        if clustered {
            " that runs without a cluster bus"
        } else {
            ""
        }
    )
}

/// The HS256 secret: from config or `PARLEY_JWT_SECRET`, else `<data_dir>/secret`, created with
/// 32 random bytes on first start.
pub fn secret(cfg: &Config) -> Result<Vec<u8>, String> {
    if !cfg.auth.jwt_secret.is_empty() {
        return Ok(cfg.auth.jwt_secret.as_bytes().to_vec());
    }
    if let Ok(s) = std::env::var("PARLEY_JWT_SECRET") {
        if !s.is_empty() {
            return Ok(s.into_bytes());
        }
    }
    let path = cfg.data_dir.join("secret");
    if let Some(s) = read_secret(&path)? {
        return Ok(s);
    }
    create_secret(&path)?;
    read_secret(&path)?.ok_or_else(|| format!("{}: empty after creation", path.display()))
}

fn read_secret(path: &Path) -> Result<Option<Vec<u8>>, String> {
    match std::fs::read_to_string(path) {
        Ok(s) if !s.trim().is_empty() => Ok(Some(s.trim().as_bytes().to_vec())),
        Ok(_) => Err(format!(
            "{} is empty: delete it or set auth.jwt_secret",
            path.display()
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Writes a new secret to a temporary file, makes it durable, then links it into place: the
/// link fails if another node created the secret first, and every node then reads that one.
/// No node can ever read a half-written secret.
fn create_secret(path: &Path) -> Result<(), String> {
    let tmp = path.with_extension(format!("tmp-{}", crate::ids::new_id()));
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let written = opts.open(&tmp).and_then(|mut f| {
        f.write_all(hex::encode(rand::random::<[u8; 32]>()).as_bytes())?;
        f.sync_all()
    });
    let linked = written.and_then(|_| std::fs::hard_link(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}
