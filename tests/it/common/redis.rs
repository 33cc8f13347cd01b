//! A real `redis-server` for cluster tests (Debian's package, installed by `scripts/test`).

use super::free_port;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A real `redis-server` on a free loopback port, with no persistence; killed on drop.
pub struct Redis {
    child: Option<Child>,
    pub port: u16,
    _dir: tempfile::TempDir,
    /// More `redis-server` arguments (cluster mode, replication, TLS, sentinel).
    args: Vec<String>,
    /// More `redis-cli` arguments (TLS, credentials).
    pub cli_args: Vec<String>,
}

impl Redis {
    pub fn start() -> Redis {
        Self::start_with(Vec::new())
    }

    /// With more `redis-server` arguments (given again on `restart`).
    pub fn start_with(args: Vec<String>) -> Redis {
        Self::start_on(free_port(), args)
    }

    /// On `port`, with more `redis-server` arguments.
    pub fn start_on(port: u16, args: Vec<String>) -> Redis {
        let mut r = Redis {
            child: None,
            port,
            _dir: tempfile::tempdir().unwrap(),
            args,
            cli_args: Vec::new(),
        };
        r.spawn();
        r
    }

    pub fn dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    fn spawn(&mut self) {
        // A sentinel needs its config file first on the command line.
        let mut cmd = Command::new("redis-server");
        if self.args.first().is_some_and(|a| a.ends_with(".conf")) {
            cmd.arg(&self.args[0]);
        }
        let child = cmd
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(self._dir.path())
            .args(self.args.iter().skip_while(|a| a.ends_with(".conf")))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (scripts/test installs it with apt-get)");
        self.child = Some(child);
        let up = super::wait_until(Duration::from_secs(5), || {
            std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
        });
        assert!(up, "redis-server did not start on port {}", self.port);
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// `redis-cli` on this server; its output.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(&self.cli_args)
            .args(args)
            .output()
            .expect("redis-cli (scripts/test installs redis-server with it)");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// kill -9: every connection drops, every key and subscription is lost.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// SIGSTOP: Redis keeps its sockets but answers nothing (a stalled bus).
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// SIGCONT after `pause`.
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, sig: i32) {
        let pid = self.child.as_ref().expect("running").id();
        // SAFETY: a signal to our own child process.
        assert_eq!(unsafe { libc::kill(pid as i32, sig) }, 0);
    }

    /// Starts again, empty, on the same port.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "kill it first");
        self.spawn();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}
