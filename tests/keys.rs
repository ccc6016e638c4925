//! Finishing a key rotation on a real redis-server: `tollgate keys status` counts records under
//! three keys, `tollgate keys rewrap` re-seals them all under the first key while a writer
//! keeps updating some of them (nothing it wrote is lost), and afterwards the old keys can be
//! removed: a store that knows only the new key opens every record.

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use common::redis_server::RedisServer;
use tollgate::config::EncryptionKey;
use tollgate::metrics::Metrics;
use tollgate::secret::Secret;
use tollgate::token::crypto::Sealer;
use tollgate::token::store::redis::RedisStore;
use tollgate::token::{Connection, ConnectionKey, Expect, TokenStore};

fn key(id: &str, byte: u8) -> EncryptionKey {
    EncryptionKey { id: id.into(), key: [byte; 32] }
}

fn store(redis: &RedisServer, keys: &[EncryptionKey]) -> RedisStore {
    RedisStore::new(
        &redis.url(),
        Sealer::new(keys).unwrap(),
        Duration::from_secs(2),
        Metrics::new(std::iter::empty()).unwrap(),
    )
    .unwrap()
}

fn config(redis: &RedisServer, keys: &[EncryptionKey]) -> tempfile::NamedTempFile {
    let keys: Vec<String> = keys
        .iter()
        .map(|k| format!("{{ id: {}, secret: \"{}\" }}", k.id, base64::engine::general_purpose::STANDARD.encode(k.key)))
        .collect();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        file.path(),
        format!(
            "listen: 127.0.0.1:0\nadmin_listen: 127.0.0.1:0\nencryption_keys: [{}]\nstore: {{ backend: redis, redis_url: \"{}\" }}\n",
            keys.join(", "),
            redis.url()
        ),
    )
    .unwrap();
    file
}

fn tollgate(args: &[&str], file: &tempfile::NamedTempFile) -> (i32, serde_json::Value, String) {
    let out =
        Command::new(env!("CARGO_BIN_EXE_tollgate")).args(args).arg("--config").arg(file.path()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let json = serde_json::from_str(stdout.trim()).unwrap_or(serde_json::Value::Null);
    (out.status.code().unwrap_or(-1), json, String::from_utf8_lossy(&out.stderr).to_string())
}

fn connection(access: &str) -> Connection {
    let mut c = Connection::new(Secret::new(access), Some(2_000_000_000));
    c.refresh_token = Some(Secret::new(format!("rt-{access}")));
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_counts_keys_and_rewrap_moves_every_record_to_the_first_key() {
    let redis = RedisServer::start();
    let (k1, k2, k3) = (key("k1", 1), key("k2", 2), key("k3", 3));
    let user = |i: usize| ConnectionKey::new("crm", format!("user-{i}"));
    // Three rotations' worth of records: 5 under k1, 4 under k2, 3 under k3.
    let eras = [
        (vec![k1.clone()], 0..5),
        (vec![k2.clone(), k1.clone()], 5..9),
        (vec![k3.clone(), k2.clone(), k1.clone()], 9..12),
    ];
    for (keys, users) in eras {
        let s = store(&redis, &keys);
        for i in users {
            s.put(&user(i), connection(&format!("at-{i}")), Expect::Any, None).await.unwrap();
        }
    }
    let all = [k3.clone(), k2.clone(), k1.clone()];
    let file = config(&redis, &all);
    let (code, status, err) = tollgate(&["keys", "status"], &file);
    assert_eq!(code, 0, "{err}");
    assert_eq!(status["records"], serde_json::json!({ "k1": 5, "k2": 4, "k3": 3 }), "{status}");
    assert_eq!(status["current_key"], "k3");

    // A replica keeps writing users 0..4 (sealed under k3) while the rewrap runs.
    let writer_store = Arc::new(store(&redis, &all));
    let stop = Arc::new(AtomicBool::new(false));
    let last: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(vec![String::new(); 4]));
    let writer = {
        let (s, stop, last) = (writer_store.clone(), stop.clone(), last.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) || n < 8 {
                let i = n % 4;
                let access = format!("at-{i}-write-{n}");
                s.put(&user(i), connection(&access), Expect::Any, None).await.unwrap();
                last.lock().unwrap()[i] = access;
                n += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let rewrap_file = config(&redis, &all);
    let (code, done, err) =
        tokio::task::spawn_blocking(move || tollgate(&["keys", "rewrap", "--batch", "2"], &rewrap_file)).await.unwrap();
    stop.store(true, Ordering::SeqCst);
    writer.await.unwrap();
    assert_eq!(code, 0, "{err}");
    let total = ["rewrapped", "current", "skipped"].iter().map(|k| done[k].as_u64().unwrap()).sum::<u64>();
    assert_eq!(total, 12, "{done}");
    assert!(done["rewrapped"].as_u64().unwrap() >= 5, "{done}");
    assert_eq!(done["failed"], 0);
    assert!(err.contains("rewrapped"), "progress lines on stderr: {err}");

    let (_, status, _) = tollgate(&["keys", "status"], &file);
    assert_eq!(status["records"], serde_json::json!({ "k3": 12 }), "{status}");
    // The old keys can go: a store with k3 alone opens every record, with the writer's last
    // write for the users it kept changing.
    let only_new = store(&redis, std::slice::from_ref(&k3));
    let last = last.lock().unwrap().clone();
    for i in 0..12 {
        let read = only_new.get(&user(i)).await.unwrap().unwrap_or_else(|| panic!("user-{i} is gone"));
        let want = last.get(i).cloned().unwrap_or_else(|| format!("at-{i}"));
        assert_eq!(read.access_token.expose(), want, "user-{i}");
        assert_eq!(read.refresh_token.unwrap().expose(), format!("rt-{want}"));
    }

    // A record under a key the config no longer has is left alone, and the command says so.
    store(&redis, &[key("k0", 9)]).put(&user(99), connection("at-old"), Expect::Any, None).await.unwrap();
    let (code, done, err) = tollgate(&["keys", "rewrap"], &file);
    assert_eq!(code, 1);
    assert_eq!(done["failed"], 1, "{done}");
    assert!(err.contains("keep the old keys"), "{err}");
}
