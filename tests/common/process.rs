//! The real `tollgate` binary as a separate process, on free loopback ports, killed on drop.

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct TollgateProcess {
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    child: Child,
    _config: tempfile::NamedTempFile,
}

/// A process config: JWT callers signed with `CALLER_SECRET`, and one static-token connector
/// `api` for the HTTPS upstream on `port` (trusting `ca`). `upstream` adds keys to the
/// `upstream` block (`response_timeout: "30s"`, say).
pub fn api_connector_yaml(ca: &super::TestCa, port: u16, upstream: &str) -> String {
    format!(
        r#"admin_tokens: ["admin-secret-token"]
encryption_keys: [{{ id: k1, secret: "{key}" }}]
callers:
  jwt: {{ audience: tollgate, hs256_secret: "{secret}" }}
upstream: {{ extra_ca_file: {ca}{upstream} }}
connectors:
  - name: api
    token: "static-upstream-token"
    unsafe_allow_ranges: ["127.0.0.0/8"]
    allowed_domains: ["https://127.0.0.1:{port}/*"]
"#,
        key = super::KEY,
        secret = super::CALLER_SECRET,
        ca = ca.ca_file.path().display(),
        upstream = if upstream.is_empty() { String::new() } else { format!(", {upstream}") },
    )
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl TollgateProcess {
    /// `yaml` must not set `listen` or `admin_listen`; they are added here.
    pub async fn start(yaml: &str) -> TollgateProcess {
        Self::start_logging(yaml, None).await
    }

    /// Like [`start`](Self::start), with debug-level logs written to `log`.
    pub async fn start_logging(yaml: &str, log: Option<&std::path::Path>) -> TollgateProcess {
        Self::start_with(yaml, log, &[]).await
    }

    /// Like [`start_logging`](Self::start_logging), with extra environment variables.
    pub async fn start_with(yaml: &str, log: Option<&std::path::Path>, env: &[(&str, &str)]) -> TollgateProcess {
        let stdout = match log {
            Some(path) => Stdio::from(std::fs::File::create(path).unwrap()),
            None => Stdio::null(),
        };
        Self::spawn(yaml, if log.is_some() { "debug" } else { "warn" }, env, stdout).await
    }

    /// Info-level logs (an audit line per request) into a pipe, returned unread: a log
    /// collector that has stopped reading.
    pub async fn start_piped(yaml: &str) -> (TollgateProcess, std::process::ChildStdout) {
        let mut process = Self::spawn(yaml, "info", &[], Stdio::piped()).await;
        let stdout = process.child.stdout.take().unwrap();
        (process, stdout)
    }

    async fn spawn(yaml: &str, level: &str, env: &[(&str, &str)], stdout: Stdio) -> TollgateProcess {
        let (proxy, admin) = (free_port(), free_port());
        let config = tempfile::NamedTempFile::new().unwrap();
        let text = format!("listen: 127.0.0.1:{proxy}\nadmin_listen: 127.0.0.1:{admin}\n{yaml}");
        std::fs::write(config.path(), text).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .args(["serve", "--config"])
            .arg(config.path())
            .env("TOLLGATE_LOG", level)
            .envs(env.iter().copied())
            .stdout(stdout)
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let process = TollgateProcess {
            proxy: SocketAddr::from(([127, 0, 0, 1], proxy)),
            admin: SocketAddr::from(([127, 0, 0, 1], admin)),
            child,
            _config: config,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if tokio::net::TcpStream::connect(process.admin).await.is_ok() {
                return process;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("tollgate did not start listening on {}", process.admin);
    }

    /// Replaces the config file's contents, keeping the listeners this process was started on.
    pub fn rewrite_config(&self, yaml: &str) {
        let text = format!("listen: {}\nadmin_listen: {}\n{yaml}", self.proxy, self.admin);
        std::fs::write(self._config.path(), text).unwrap();
    }

    /// Sends a signal (`HUP`, `TERM`, ...) to the process.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill").arg(format!("-{name}")).arg(self.child.id().to_string()).status().unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit by itself; panics if it is still running after `within`.
    pub async fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "tollgate was still running {within:?} later");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A metric's value from this process's `/metrics` (sum of matching lines).
    pub async fn metric(&self, prefix: &str) -> f64 {
        let answer = super::get(self.admin, "/metrics", &[]).await;
        String::from_utf8_lossy(&answer.body)
            .lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

impl Drop for TollgateProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
