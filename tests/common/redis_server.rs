//! A real redis-server per test, on a free loopback port, killed on drop. A test that needs
//! Redis fails loudly when the server cannot be started.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::TestCa;

pub struct RedisServer {
    pub port: u16,
    /// With TLS: the TLS port.
    pub tls_port: Option<u16>,
    /// More arguments (TLS, replication, cluster).
    extra_args: Vec<String>,
    /// A sentinel: its config file (Sentinel rewrites it), started with `--sentinel`.
    sentinel_conf: Option<std::path::PathBuf>,
    child: Option<Child>,
    /// Its working directory (a replica writes the primary's snapshot there).
    dir: tempfile::TempDir,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl RedisServer {
    pub fn start() -> RedisServer {
        Self::start_with(Vec::new())
    }

    /// A server with more arguments (e.g. `--replicaof`, `--cluster-enabled`).
    pub fn start_with(extra_args: Vec<String>) -> RedisServer {
        Self::start_on(free_port(), extra_args)
    }

    pub fn start_on(port: u16, extra_args: Vec<String>) -> RedisServer {
        let mut server = RedisServer {
            port,
            tls_port: None,
            extra_args,
            sentinel_conf: None,
            child: None,
            dir: tempfile::tempdir().unwrap(),
        };
        server.restart();
        server
    }

    /// A sentinel watching `master` at `primary_port` with a quorum of 2, that finds a primary
    /// down after 500 ms. Its config file lives in `dir`.
    pub fn start_sentinel(dir: &std::path::Path, master: &str, primary_port: u16) -> RedisServer {
        let port = free_port();
        let conf = dir.join(format!("sentinel-{port}.conf"));
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {dir}\n\
                 sentinel monitor {master} 127.0.0.1 {primary_port} 2\n\
                 sentinel down-after-milliseconds {master} 500\n\
                 sentinel failover-timeout {master} 3000\n\
                 sentinel parallel-syncs {master} 1\n",
                dir = dir.display()
            ),
        )
        .unwrap();
        let mut server = RedisServer {
            port,
            tls_port: None,
            extra_args: Vec::new(),
            sentinel_conf: Some(conf),
            child: None,
            dir: tempfile::tempdir().unwrap(),
        };
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
        let mut server = RedisServer {
            port: free_port(),
            tls_port: Some(tls_port),
            extra_args: tls_args,
            sentinel_conf: None,
            child: None,
            dir: tempfile::tempdir().unwrap(),
        };
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
        let mut command = Command::new("redis-server");
        match &self.sentinel_conf {
            Some(conf) => command.arg(conf).arg("--sentinel"),
            None => command
                .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(self.dir.path())
                .args(&self.extra_args),
        };
        let child = command.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap_or_else(|e| {
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

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        self.stop();
    }

    fn ping(&self) -> bool {
        redis::Client::open(self.url())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(200)))
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
            .is_ok()
    }

    /// One command's answer, on a fresh connection.
    pub fn query<T: redis::FromRedisValue>(&self, cmd: &mut redis::Cmd) -> redis::RedisResult<T> {
        cmd.query(&mut self.connection())
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

/// A Redis Cluster of `masters` real redis-server processes (no replicas), each with its own
/// bus port, slots spread by `redis-cli --cluster create`.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
    _dir: tempfile::TempDir,
}

impl RedisCluster {
    pub fn start(masters: usize) -> RedisCluster {
        let dir = tempfile::tempdir().unwrap();
        let nodes: Vec<RedisServer> = (0..masters)
            .map(|_| {
                let port = free_port();
                let args = [
                    "--cluster-enabled".to_string(),
                    "yes".into(),
                    "--cluster-config-file".into(),
                    dir.path().join(format!("nodes-{port}.conf")).display().to_string(),
                    "--cluster-port".into(),
                    free_port().to_string(),
                    "--cluster-node-timeout".into(),
                    "1000".into(),
                    "--dir".into(),
                    dir.path().display().to_string(),
                ];
                RedisServer::start_on(port, args.to_vec())
            })
            .collect();
        let created = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)))
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .status()
            .unwrap_or_else(|e| panic!("cannot run redis-cli ({e}); it comes with redis-server (redis-tools)"));
        assert!(created.success(), "redis-cli --cluster create failed");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = nodes.iter().all(|n| {
                n.query::<String>(redis::cmd("CLUSTER").arg("INFO")).is_ok_and(|info| {
                    info.contains("cluster_state:ok") && info.contains(&format!("cluster_known_nodes:{masters}"))
                })
            });
            if ready {
                break;
            }
            assert!(Instant::now() < deadline, "the cluster did not settle within 20 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        RedisCluster { nodes, _dir: dir }
    }

    /// The seed URL (the first node).
    pub fn url(&self) -> String {
        self.nodes[0].url()
    }

    /// Keys matching `pattern` held by each node, read from that node alone.
    pub fn keys_per_node(&self, pattern: &str) -> Vec<Vec<String>> {
        self.nodes
            .iter()
            .map(|n| if n.child.is_some() { n.query(redis::cmd("KEYS").arg(pattern)).unwrap() } else { Vec::new() })
            .collect()
    }
}
