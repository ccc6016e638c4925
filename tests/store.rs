//! One behaviour suite for every token-store backend (memory and a real redis-server), plus
//! what only Redis can show: nothing readable at rest, values bound to their keys, and the
//! Cluster-safe key layout.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::redis_server::RedisServer;
use tollgate::config::EncryptionKey;
use tollgate::metrics::Metrics;
use tollgate::secret::Secret;
use tollgate::token::crypto::Sealer;
use tollgate::token::store::memory::MemoryStore;
use tollgate::token::store::redis::{lock_key, record_key, RedisStore};
use tollgate::token::store::Invalidation;
use tollgate::token::{Connection, ConnectionKey, ConnectionStatus, Expect, StoreError, TokenStore};

fn keys(ids: &[(&str, u8)]) -> Vec<EncryptionKey> {
    ids.iter().map(|(id, b)| EncryptionKey { id: id.to_string(), key: [*b; 32] }).collect()
}

fn redis_store(server: &RedisServer, key_ids: &[(&str, u8)]) -> RedisStore {
    let metrics = Metrics::new(std::iter::empty()).unwrap();
    RedisStore::new(&server.url(), Sealer::new(&keys(key_ids)).unwrap(), Duration::from_secs(2), metrics).unwrap()
}

fn connection(access: &str) -> Connection {
    let mut c = Connection::new(Secret::new(access), Some(2_000_000_000));
    c.refresh_token = Some(Secret::new("rt-secret-refresh-7781"));
    c.scopes = vec!["repo".into(), "read:user".into()];
    c.pinned_host = Some("dbc-1.cloud.databricks.com".into());
    c
}

async fn wait_for(seen: &Arc<Mutex<Vec<Invalidation>>>, want: &Invalidation) {
    for _ in 0..100 {
        if seen.lock().unwrap().contains(want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no invalidation {want:?} within a second; saw {:?}", seen.lock().unwrap());
}

async fn behaviour(store: &dyn TokenStore) {
    let seen: Arc<Mutex<Vec<Invalidation>>> = Arc::default();
    let sink = seen.clone();
    store.watch(Arc::new(move |i| sink.lock().unwrap().push(i)));
    // Let a pub/sub subscription settle before the first write.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let key = ConnectionKey::new("github", "alice@example.com");
    assert_eq!(store.get(&key).await.unwrap(), None);
    assert_eq!(store.put(&key, connection("at-1"), Expect::Absent, None).await, Ok(1));
    assert_eq!(store.put(&key, connection("at-x"), Expect::Absent, None).await, Err(StoreError::Conflict));
    wait_for(&seen, &Invalidation::Connection(key.id())).await;
    assert_eq!(store.put(&key, connection("at-2"), Expect::Version(1), None).await, Ok(2));
    assert_eq!(store.put(&key, connection("at-stale"), Expect::Version(1), None).await, Err(StoreError::Conflict));
    assert_eq!(store.put(&key, connection("at-3"), Expect::Any, None).await, Ok(3));
    let read = store.get(&key).await.unwrap().unwrap();
    assert_eq!(read.version, 3);
    assert_eq!(read.access_token.expose(), "at-3");
    assert_eq!(read.refresh_token.as_ref().map(|t| t.expose()), Some("rt-secret-refresh-7781"));
    assert_eq!(read.scopes, ["repo", "read:user"]);
    assert_eq!(read.pinned_host.as_deref(), Some("dbc-1.cloud.databricks.com"));
    assert_eq!(read.status, ConnectionStatus::Connected);

    // The refresh lock: exclusive, owner-checked, expiring.
    let ttl = Duration::from_millis(300);
    assert!(store.lock(&key, "owner-a", ttl).await.unwrap());
    assert!(!store.lock(&key, "owner-b", ttl).await.unwrap());
    assert_eq!(
        store.put(&key, connection("at-b"), Expect::Version(3), Some("owner-b")).await,
        Err(StoreError::LockLost)
    );
    assert_eq!(store.put(&key, connection("at-4"), Expect::Version(3), Some("owner-a")).await, Ok(4));
    store.unlock(&key, "owner-b").await.unwrap();
    assert!(!store.lock(&key, "owner-c", ttl).await.unwrap(), "unlock by a non-owner released the lock");
    store.unlock(&key, "owner-a").await.unwrap();
    assert!(store.lock(&key, "owner-c", ttl).await.unwrap());
    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    assert!(store.lock(&key, "owner-d", ttl).await.unwrap(), "the lock did not expire");
    assert_eq!(
        store.put(&key, connection("at-c"), Expect::Version(4), Some("owner-c")).await,
        Err(StoreError::LockLost)
    );

    let other = ConnectionKey::new("github", "bob@example.com");
    assert_eq!(store.get(&other).await.unwrap(), None, "connections of different principals are separate");
    store.put(&ConnectionKey::new("slack", "alice@example.com"), connection("at-s"), Expect::Any, None).await.unwrap();
    let all = store.list(None, None).await.unwrap();
    assert_eq!(all.len(), 2);
    let alices = store.list(None, Some("alice@example.com")).await.unwrap();
    assert_eq!(alices.iter().map(|(k, _)| k.connector.as_str()).collect::<Vec<_>>(), ["github", "slack"]);
    let github = store.list(Some("github"), None).await.unwrap();
    assert_eq!((github.len(), github[0].1.version), (1, 4));
    store.delete(&ConnectionKey::new("slack", "alice@example.com")).await.unwrap();
    seen.lock().unwrap().clear();
    assert!(store.delete(&key).await.unwrap());
    wait_for(&seen, &Invalidation::Connection(key.id())).await;
    assert!(!store.delete(&key).await.unwrap());
    assert_eq!(store.get(&key).await.unwrap(), None);
    // Transient values: claimed once, taken once, gone after their TTL.
    assert!(store.put_transient("ticket:n1", b"", Duration::from_secs(5), true).await.unwrap());
    assert!(
        !store.put_transient("ticket:n1", b"", Duration::from_secs(5), true).await.unwrap(),
        "a claim succeeded twice"
    );
    store.put_transient("flow:s1", b"flow-state-secret", Duration::from_secs(5), false).await.unwrap();
    assert_eq!(store.take_transient("flow:s1").await.unwrap().as_deref(), Some(&b"flow-state-secret"[..]));
    assert_eq!(store.take_transient("flow:s1").await.unwrap(), None, "a flow was used twice");
    store.put_transient("flow:s2", b"x", Duration::from_millis(100), false).await.unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(store.take_transient("flow:s2").await.unwrap(), None, "a transient value outlived its TTL");
    store.ping().await.unwrap();
}

#[tokio::test]
async fn memory_store_behaviour() {
    behaviour(&MemoryStore::new()).await;
}

#[tokio::test]
async fn redis_store_behaviour() {
    let server = RedisServer::start();
    behaviour(&redis_store(&server, &[("k1", 1)])).await;
}

#[tokio::test]
async fn redis_holds_nothing_readable_and_values_are_bound_to_their_keys() {
    let server = RedisServer::start();
    let store = redis_store(&server, &[("k1", 1)]);
    let alice = ConnectionKey::new("github", "alice");
    let bob = ConnectionKey::new("github", "bob");
    store.put(&alice, connection("at-secret-access-5521"), Expect::Any, None).await.unwrap();
    store.put(&bob, connection("at-bob-access"), Expect::Any, None).await.unwrap();
    assert!(store.lock(&alice, "owner", Duration::from_secs(5)).await.unwrap());

    let mut raw = server.connection();
    let all: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut raw).unwrap();
    assert_eq!(all.len(), 3, "{all:?}");
    // Record, lock and version of one connection share one Cluster hash tag.
    let tag = format!("{{{}}}", alice.id());
    assert!(record_key(&alice).contains(&tag) && lock_key(&alice).contains(&tag));
    assert!(all.iter().all(|k| k.starts_with("tollgate:{") && !k.contains("alice") && !k.contains("github")));
    let mut dump = String::new();
    for key in &all {
        let kind: String = redis::cmd("TYPE").arg(key).query(&mut raw).unwrap();
        let values: Vec<String> = match kind.as_str() {
            "hash" => redis::cmd("HGETALL").arg(key).query(&mut raw).unwrap(),
            _ => vec![redis::cmd("GET").arg(key).query(&mut raw).unwrap()],
        };
        dump.push_str(&values.join("\n"));
    }
    for secret in ["at-secret-access-5521", "rt-secret-refresh-7781", "alice", "dbc-1.cloud"] {
        assert!(!dump.contains(secret), "{secret} is readable in Redis");
    }

    // Bob's sealed value copied over Alice's record does not decrypt.
    let bobs: String = redis::cmd("HGET").arg(record_key(&bob)).arg("d").query(&mut raw).unwrap();
    let _: () = redis::cmd("HSET").arg(record_key(&alice)).arg("d").arg(&bobs).query(&mut raw).unwrap();
    assert!(matches!(store.get(&alice).await, Err(StoreError::Corrupt(_))));
    assert!(store.get(&bob).await.unwrap().is_some());
}

#[tokio::test]
async fn encryption_keys_rotate() {
    let server = RedisServer::start();
    let key = ConnectionKey::new("github", "alice");
    redis_store(&server, &[("k1", 1)]).put(&key, connection("at-old-key"), Expect::Any, None).await.unwrap();
    let rotated = redis_store(&server, &[("k2", 2), ("k1", 1)]);
    assert_eq!(rotated.get(&key).await.unwrap().unwrap().access_token.expose(), "at-old-key");
    rotated.put(&key, connection("at-new-key"), Expect::Any, None).await.unwrap();
    let sealed: String = redis::cmd("HGET").arg(record_key(&key)).arg("d").query(&mut server.connection()).unwrap();
    assert!(sealed.starts_with("v1.k2."), "new writes use the first key");
    assert!(matches!(redis_store(&server, &[("k1", 1)]).get(&key).await, Err(StoreError::Corrupt(_))));
}
