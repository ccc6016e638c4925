//! A real redis-server per test, on a free loopback port, killed on drop. A test that needs
//! Redis fails loudly when the server cannot be started.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::TestCa;

pub struct RedisServer {
    pub port: u16,
    /// With TLS: the TLS port, and the extra arguments that configure it.
    pub tls_port: Option<u16>,
    tls_args: Vec<String>,
    child: Option<Child>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl RedisServer {
    pub fn start() -> RedisServer {
        let mut server = RedisServer { port: free_port(), tls_port: None, tls_args: Vec::new(), child: None };
        server.restart();
        server
    }

    /// A server that also listens with TLS (Debian's redis-server is built with it), serving
    /// the leaf of `ca`; `client_certificates` makes it ask clients for a certificate from `ca`.
    /// The plain port stays for readiness checks and raw reads.
    pub fn start_tls(ca: &TestCa, client_certificates: bool) -> (RedisServer, Vec<tempfile::NamedTempFile>) {
        let (cert, key) = ca.leaf_pem_files();
        let tls_port = free_port();
        let tls_args = vec![
            "--tls-port".to_string(),
            tls_port.to_string(),
            "--tls-cert-file".into(),
            cert.path().display().to_string(),
            "--tls-key-file".into(),
            key.path().display().to_string(),
            "--tls-ca-cert-file".into(),
            ca.ca_file.path().display().to_string(),
            "--tls-auth-clients".into(),
            if client_certificates { "yes" } else { "no" }.into(),
        ];
        let mut server = RedisServer { port: free_port(), tls_port: Some(tls_port), tls_args, child: None };
        server.restart();
        (server, vec![cert, key])
    }

    /// The `rediss://` URL of the TLS port.
    pub fn tls_url(&self) -> String {
        format!("rediss://127.0.0.1:{}", self.tls_port.expect("started with TLS"))
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts (again) on the same port.
    pub fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(&self.tls_args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start redis-server ({e}); install it with `apt-get install redis-server`")
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.ping() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not answer on port {}", self.port);
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn ping(&self) -> bool {
        redis::Client::open(self.url())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(200)))
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
            .is_ok()
    }

    /// A plain synchronous connection for raw reads.
    pub fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url()).unwrap().get_connection().unwrap()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
