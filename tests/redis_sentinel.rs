//! The token store on a Sentinel-managed primary, with real redis-server processes: a primary,
//! a replica and three sentinels. The primary is found by name; a write holding a refresh
//! token waits for the replica; when the primary is killed under steady load, a replica is
//! promoted and the store follows it by itself with the rotated refresh token intact.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::redis_server::RedisServer;
use tollgate::config::{EncryptionKey, RedisMode, StoreBackend, StoreSettings};
use tollgate::metrics::Metrics;
use tollgate::secret::Secret;
use tollgate::token::crypto::Sealer;
use tollgate::token::store::redis::{record_key, RedisStore};
use tollgate::token::{Connection, ConnectionKey, Expect, TokenStore};

const MASTER: &str = "tollgate-primary";

struct Deployment {
    primary: RedisServer,
    replica: RedisServer,
    sentinels: Vec<RedisServer>,
    _dir: tempfile::TempDir,
}

impl Deployment {
    fn start() -> Deployment {
        let dir = tempfile::tempdir().unwrap();
        let primary = RedisServer::start();
        let replica = RedisServer::start_with(vec!["--replicaof".into(), "127.0.0.1".into(), primary.port.to_string()]);
        let sentinels: Vec<RedisServer> =
            (0..3).map(|_| RedisServer::start_sentinel(dir.path(), MASTER, primary.port)).collect();
        // Sentinels must know the replica (from the primary) and each other before a failover.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = sentinels.iter().all(|s| {
                let replicas: Vec<redis::Value> =
                    s.query(redis::cmd("SENTINEL").arg("replicas").arg(MASTER)).unwrap_or_default();
                let peers: Vec<redis::Value> =
                    s.query(redis::cmd("SENTINEL").arg("sentinels").arg(MASTER)).unwrap_or_default();
                replicas.len() == 1 && peers.len() == 2
            });
            let synced = replica
                .query::<String>(redis::cmd("INFO").arg("replication"))
                .is_ok_and(|i| i.contains("master_link_status:up"));
            if ready && synced {
                break;
            }
            assert!(Instant::now() < deadline, "the sentinels did not find the replica and each other in 20 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        Deployment { primary, replica, sentinels, _dir: dir }
    }

    fn store(&self, replica_acks: u32) -> (RedisStore, Metrics) {
        let settings = StoreSettings {
            backend: StoreBackend::Memory,
            tls: None,
            timeout: Duration::from_millis(500),
            cache_ttl: Duration::from_secs(30),
            mode: RedisMode::Sentinel {
                master: MASTER.into(),
                sentinels: self.sentinels.iter().map(|s| ("127.0.0.1".to_string(), s.port)).collect(),
                password: None,
            },
            replica_acks,
            replica_ack_timeout: Duration::from_millis(500),
        };
        let metrics = Metrics::new(std::iter::empty()).unwrap();
        let sealer = Sealer::new(&[EncryptionKey { id: "k1".into(), key: [9; 32] }]).unwrap();
        let url = format!("redis://{MASTER}/0");
        (RedisStore::open(&url, &settings, sealer, metrics.clone()).unwrap(), metrics)
    }
}

fn connection(access: &str, refresh: &str) -> Connection {
    let mut c = Connection::new(Secret::new(access), Some(2_000_000_000));
    c.refresh_token = Some(Secret::new(refresh));
    c
}

async fn until_up(store: &RedisStore) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.ping().await.is_err() {
        assert!(Instant::now() < deadline, "the store never found the primary: {:?}", store.status());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn metric(metrics: &Metrics, name: &str) -> f64 {
    metrics
        .render()
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_primary_is_followed_and_the_rotated_refresh_token_survives() {
    let mut deployment = Deployment::start();
    let (store, metrics) = deployment.store(1);
    until_up(&store).await;
    assert_eq!(store.status().mode, "sentinel");

    let key = ConnectionKey::new("crm", "alice");
    assert_eq!(store.put(&key, connection("at-1", "rt-1"), Expect::Absent, None).await, Ok(1));
    // A refresh rotates the refresh token; the write returns only once the replica has it.
    assert_eq!(store.put(&key, connection("at-2", "rt-2"), Expect::Version(1), None).await, Ok(2));
    let on_replica: Option<u64> = deployment.replica.query(redis::cmd("HGET").arg(record_key(&key)).arg("v")).unwrap();
    assert_eq!(on_replica, Some(2), "the replica must hold the rotated refresh token when put returns");
    assert_eq!(metric(&metrics, "tollgate_store_replica_ack_timeouts_total"), 0.0);

    // Steady load: reads of the connection every 5 ms while the primary dies.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let store = Arc::new(store);
    let load = {
        let (store, stop, ok, failed, key) = (store.clone(), stop.clone(), ok.clone(), failed.clone(), key.clone());
        tokio::spawn(async move {
            let (mut first_failure, mut last_failure) = (None, None);
            while !stop.load(Ordering::SeqCst) {
                match store.get(&key).await {
                    Ok(Some(_)) => ok.fetch_add(1, Ordering::SeqCst),
                    _ => {
                        let now = Instant::now();
                        first_failure.get_or_insert(now);
                        last_failure = Some(now);
                        failed.fetch_add(1, Ordering::SeqCst)
                    }
                };
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            first_failure.zip(last_failure).map(|(a, b)| b - a)
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let killed = Instant::now();
    deployment.primary.kill();

    // The sentinels promote the replica; the store finds it and reads the rotated token there.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let role: Vec<redis::Value> = deployment.replica.query(&mut redis::cmd("ROLE")).unwrap_or_default();
        let promoted = matches!(role.first(), Some(redis::Value::BulkString(b)) if b.as_slice() == b"master");
        if promoted && store.get(&key).await.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "no failover within 30 s: {:?}", store.status());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let followed = killed.elapsed();
    let read = store.get(&key).await.unwrap().unwrap();
    assert_eq!(read.version, 2);
    assert_eq!(read.refresh_token.unwrap().expose(), "rt-2", "the rotated refresh token was lost in the failover");
    // Writes go to the new primary.
    assert_eq!(store.put(&key, connection("at-3", "rt-3"), Expect::Version(2), None).await, Ok(3));
    let on_new_primary: Option<u64> =
        deployment.replica.query(redis::cmd("HGET").arg(record_key(&key)).arg("v")).unwrap();
    assert_eq!(on_new_primary, Some(3));
    // With no replica left, that write's wait ran out: counted, and the write still stands.
    assert_eq!(metric(&metrics, "tollgate_store_replica_ack_timeouts_total"), 1.0);

    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    let window = load.await.unwrap();
    let (ok, failed) = (ok.load(Ordering::SeqCst), failed.load(Ordering::SeqCst));
    eprintln!(
        "failover: store followed the new primary {followed:?} after the kill; {failed} of {} reads failed, \
         failures spanning {window:?}",
        ok + failed
    );
    assert!(ok > 0);
    // Reads after the store found the new primary all succeed.
    let after = store.get(&key).await;
    assert!(after.is_ok(), "{after:?}");
}
