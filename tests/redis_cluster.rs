//! The token store on a real 3-master Redis Cluster: every operation for users whose records
//! live on each master, lists and scans that cover every master, invalidations that reach a
//! store subscribed elsewhere, and a standalone store pointed at a Cluster saying so.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::redis_server::RedisCluster;
use tollgate::config::{EncryptionKey, RedisMode, StoreBackend, StoreSettings};
use tollgate::metrics::Metrics;
use tollgate::secret::Secret;
use tollgate::token::crypto::Sealer;
use tollgate::token::store::redis::{record_key, RedisStore};
use tollgate::token::store::Invalidation;
use tollgate::token::{Connection, ConnectionKey, Expect, TokenStore};

fn settings(mode: RedisMode) -> StoreSettings {
    StoreSettings {
        backend: StoreBackend::Memory,
        tls: None,
        timeout: Duration::from_secs(2),
        cache_ttl: Duration::from_secs(30),
        mode,
        replica_acks: 0,
        replica_ack_timeout: Duration::from_millis(500),
    }
}

fn open(url: &str, mode: RedisMode) -> RedisStore {
    let sealer = Sealer::new(&[EncryptionKey { id: "k1".into(), key: [7; 32] }]).unwrap();
    RedisStore::open(url, &settings(mode), sealer, Metrics::new(std::iter::empty()).unwrap()).unwrap()
}

fn connection(access: &str) -> Connection {
    let mut c = Connection::new(Secret::new(access), Some(2_000_000_000));
    c.refresh_token = Some(Secret::new(format!("rt-{access}")));
    c
}

fn users() -> Vec<ConnectionKey> {
    (0..24).map(|i| ConnectionKey::new("crm", format!("user-{i}@example.com"))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_is_right_for_users_on_each_master() {
    let cluster = RedisCluster::start(3);
    let cluster_mode = || RedisMode::Cluster { seeds: Vec::new() };
    let (a, b) = (open(&cluster.url(), cluster_mode()), open(&cluster.url(), cluster_mode()));
    let seen: Arc<Mutex<Vec<Invalidation>>> = Arc::default();
    let sink = seen.clone();
    b.watch(Arc::new(move |i| sink.lock().unwrap().push(i)));
    tokio::time::sleep(Duration::from_millis(300)).await;

    let users = users();
    for (i, key) in users.iter().enumerate() {
        assert_eq!(a.put(key, connection(&format!("at-{i}")), Expect::Absent, None).await, Ok(1), "{key:?}");
    }
    // The records are spread over all three masters, each on the node that owns its slot.
    let per_node = cluster.keys_per_node("tollgate:{*}:conn");
    assert!(per_node.iter().all(|keys| !keys.is_empty()), "a master holds no user: {per_node:?}");
    assert_eq!(per_node.iter().map(Vec::len).sum::<usize>(), users.len());

    for (i, key) in users.iter().enumerate() {
        let read = b.get(key).await.unwrap().unwrap();
        assert_eq!(read.access_token.expose(), format!("at-{i}"));
        // Lock, compare-and-swap under the lock, unlock: one script and one slot per user.
        assert!(a.lock(key, "owner-a", Duration::from_secs(5)).await.unwrap());
        assert!(!b.lock(key, "owner-b", Duration::from_secs(5)).await.unwrap());
        assert_eq!(
            b.put(key, connection("stale"), Expect::Version(1), Some("owner-b")).await.unwrap_err().to_string(),
            "the refresh lock is held by someone else"
        );
        assert_eq!(a.put(key, connection(&format!("at-{i}-2")), Expect::Version(1), Some("owner-a")).await, Ok(2));
        a.unlock(key, "owner-a").await.unwrap();
        assert!(b.lock(key, "owner-b", Duration::from_secs(5)).await.unwrap());
        b.unlock(key, "owner-b").await.unwrap();
    }
    // Every write was announced to a store subscribed through whichever node it reached.
    let deadline = Instant::now() + Duration::from_secs(3);
    while !users.iter().all(|k| seen.lock().unwrap().contains(&Invalidation::Connection(k.id()))) {
        assert!(Instant::now() < deadline, "invalidations missing for some masters");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Lists cover every master.
    let listed = b.list(Some("crm"), None).await.unwrap();
    assert_eq!(listed.len(), users.len());
    assert!(listed.iter().all(|(_, c)| c.version == 2));
    assert_eq!(b.list(None, Some("user-5@example.com")).await.unwrap().len(), 1);

    // Short-lived values, spread by name.
    for i in 0..12 {
        let name = format!("flow-{i}");
        assert!(a.put_transient(&name, b"state", Duration::from_secs(30), true).await.unwrap());
        assert!(!b.put_transient(&name, b"other", Duration::from_secs(30), true).await.unwrap());
        assert_eq!(b.take_transient(&name).await.unwrap().as_deref(), Some(&b"state"[..]));
        assert_eq!(a.take_transient(&name).await.unwrap(), None);
    }

    // Deletes, on every master.
    for key in &users {
        assert!(a.delete(key).await.unwrap());
        assert_eq!(b.get(key).await.unwrap(), None);
    }
    assert_eq!(cluster.keys_per_node("tollgate:{*}:conn").iter().map(Vec::len).sum::<usize>(), 0);
    assert!(record_key(&users[0]).starts_with("tollgate:{"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_store_on_a_cluster_node_says_to_set_cluster_mode() {
    let cluster = RedisCluster::start(3);
    let store = open(&cluster.url(), RedisMode::Standalone);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let why = store.status().down_because.unwrap_or_default();
        if why.contains("store.mode: cluster") {
            break;
        }
        assert!(Instant::now() < deadline, "the probe never said the server is a Cluster node ({why:?})");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let err = store.get(&users()[0]).await.unwrap_err().to_string();
    assert!(err.contains("store.mode: cluster"), "{err}");
}
