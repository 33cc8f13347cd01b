//! A real S3 server for the tests: moto's `moto_server` (PyPI `moto[server]`, installed by
//! `scripts/test` into target/pyenv), on a free loopback port, with one bucket; killed on drop.
//! `PARLEY_TEST_MOTO` names another binary.

use crate::common::{free_port, wait_until};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct S3Server {
    child: Child,
    pub port: u16,
    pub bucket: String,
}

fn binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PARLEY_TEST_MOTO") {
        return Some(p.into());
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/pyenv/bin/moto_server");
    if venv.exists() {
        return Some(venv);
    }
    let on_path = Command::new("moto_server")
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    on_path.then(|| "moto_server".into())
}

impl S3Server {
    /// A running server with an empty bucket, or `None` (and the SKIPPED line) without one.
    pub fn start() -> Option<S3Server> {
        let Some(bin) = binary() else {
            eprintln!("SKIPPED: no S3 server (scripts/test installs moto_server in target/pyenv)");
            return None;
        };
        let port = free_port();
        let child = Command::new(bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server");
        let s = S3Server {
            child,
            port,
            bucket: "parley-test".into(),
        };
        let up = wait_until(Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(up, "moto_server did not start on port {port}");
        let st = ureq::put(&format!("{}/{}", s.endpoint(), s.bucket))
            .send_empty()
            .expect("create bucket")
            .status();
        assert!(st.is_success(), "create bucket: {st}");
        Some(s)
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The `[blobs]` section a node uses this server with.
    pub fn config(&self) -> String {
        format!(
            "[blobs]\nbackend = \"s3\"\nendpoint = \"{}\"\nbucket = \"{}\"\nregion = \"us-east-1\"\naccess_key = \"test\"\nsecret_key = \"test\"\npath_style = true\n",
            self.endpoint(),
            self.bucket
        )
    }

    /// Whether the bucket holds the blob (an unsigned listing: moto allows it).
    pub fn has(&self, sha256: &str) -> bool {
        let key = format!("blobs/{sha256}");
        let url = format!("{}/{}?prefix={key}", self.endpoint(), self.bucket);
        let body = ureq::get(&url)
            .call()
            .expect("list bucket")
            .body_mut()
            .read_to_string()
            .unwrap();
        body.contains(&format!("<Key>{key}</Key>"))
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
