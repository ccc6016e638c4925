//! oidc-provider (npm, in tests/e2e/oidc), a standards-compliant authorization server, as a
//! child process on loopback over TLS with issuer `https://auth.test:PORT`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::TestCa;

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// oidc-provider as a child process, killed on drop.
pub struct AuthServer {
    pub port: u16,
    child: Child,
}

impl AuthServer {
    pub fn start(ca: &TestCa, redirect_uri: &str) -> (AuthServer, (tempfile::NamedTempFile, tempfile::NamedTempFile)) {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/oidc");
        assert!(
            dir.join("node_modules/oidc-provider").exists(),
            "oidc-provider is not installed: run `npm ci --prefix tests/e2e/oidc` (make test does)"
        );
        let (cert, key) = ca.leaf_pem_files();
        let port = free_port();
        let mut child = Command::new("node")
            .current_dir(&dir)
            .arg("server.mjs")
            .arg(port.to_string())
            .arg(cert.path())
            .arg(key.path())
            .arg(redirect_uri)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node is needed for the end-to-end OAuth test");
        let mut out = child.stdout.take().unwrap();
        let mut seen = String::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !seen.contains("ready") {
            assert!(Instant::now() < deadline, "oidc-provider did not start");
            let mut buf = [0u8; 256];
            let n = std::io::Read::read(&mut out, &mut buf).unwrap_or(0);
            assert!(n > 0, "oidc-provider exited");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        // Keep draining stdout: a closed pipe would kill the server on its next log line.
        std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
        (AuthServer { port, child }, (cert, key))
    }
}

impl Drop for AuthServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
