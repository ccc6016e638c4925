//! WebSocket upgrades through a connector with `allow_websocket: true`: the upgrade carries the
//! injected credential, bytes flow only after the upstream answers 101, and connectors without
//! the setting refuse. Forward mode and inside a CONNECT tunnel.

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A TLS upstream that answers an upgrade with 101 and then echoes bytes; `/nows` answers 200.
async fn echo_upstream(ca: &TestCa) -> (u16, Arc<Mutex<Vec<String>>>) {
    let acceptor = ca.acceptor();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let heads: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = heads.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, seen) = (acceptor.clone(), seen.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let head = read_head(&mut tls).await;
                seen.lock().unwrap().push(head.clone());
                if head.starts_with("GET /nows") {
                    let _ = tls.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nno").await;
                    return;
                }
                let _ = tls
                    .write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
                    .await;
                let mut buf = [0u8; 1024];
                while let Ok(n) = tls.read(&mut buf).await {
                    if n == 0 || tls.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (port, heads)
}
fn upgrade_request(target: &str, host: &str, auth: &str) -> String {
    format!(
        "GET {target} HTTP/1.1\r\nHost: {host}\r\nProxy-Authorization: {auth}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrades_relay_only_after_101() {
    let ca = TestCa::new(&["ws.test"]);
    let (port, heads) = echo_upstream(&ca).await;
    let yaml = format!(
        "{}\nconnectors:\n  - name: chat\n    token: \"chat-token\"\n    allow_websocket: true\n    allowed_domains: [\"https://ws.test:{port}/*\"]\n  - name: plain\n    token: \"t\"\n    allowed_domains: [\"https://plain.test:{port}/*\"]\n",
        base_config(&ca)
    );
    let proxy = TestProxy::start(&yaml).await;
    let auth = bearer(&jwt("alice", serde_json::json!({})));

    // Forward mode: 101, then bytes both ways.
    let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
    stream
        .write_all(upgrade_request(&format!("https://ws.test:{port}/socket"), "ws.test", &auth).as_bytes())
        .await
        .unwrap();
    let head = read_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(head.to_ascii_lowercase().contains("upgrade: websocket"));
    stream.write_all(b"hello through tollgate").await.unwrap();
    let mut echoed = [0u8; 22];
    stream.read_exact(&mut echoed).await.unwrap();
    assert_eq!(&echoed, b"hello through tollgate");
    let upstream_head = heads.lock().unwrap()[0].to_ascii_lowercase();
    assert!(upstream_head.contains("authorization: bearer chat-token"), "{upstream_head}");
    assert!(upstream_head.contains("upgrade: websocket") && upstream_head.contains("sec-websocket-key"));
    assert!(!upstream_head.contains("proxy-authorization"));

    // No 101 from upstream: its answer is relayed and no bytes are relayed.
    let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
    stream
        .write_all(upgrade_request(&format!("https://ws.test:{port}/nows"), "ws.test", &auth).as_bytes())
        .await
        .unwrap();
    assert!(read_head(&mut stream).await.starts_with("HTTP/1.1 200"));

    // A connector without allow_websocket refuses before anything is sent.
    let before = heads.lock().unwrap().len();
    let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
    stream
        .write_all(upgrade_request(&format!("https://plain.test:{port}/socket"), "plain.test", &auth).as_bytes())
        .await
        .unwrap();
    let head = read_head(&mut stream).await;
    assert!(
        head.starts_with("HTTP/1.1 400") && head.to_ascii_lowercase().contains("x-tollgate-error: upgrade_refused"),
        "{head}"
    );
    assert_eq!(heads.lock().unwrap().len(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_inside_an_intercepted_tunnel() {
    let ca = TestCa::new(&["ws.test"]);
    let (port, heads) = echo_upstream(&ca).await;
    let yaml = format!(
        "{}\nconnectors:\n  - name: chat\n    token: \"chat-token\"\n    allow_websocket: true\n    allowed_domains: [\"https://ws.test:{port}/*\"]\n",
        base_config(&ca)
    );
    let proxy = TestProxy::start(&yaml).await;
    let auth = bearer(&jwt("alice", serde_json::json!({})));
    let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
    let connect =
        format!("CONNECT ws.test:{port} HTTP/1.1\r\nHost: ws.test:{port}\r\nProxy-Authorization: {auth}\r\n\r\n");
    stream.write_all(connect.as_bytes()).await.unwrap();
    assert!(read_head(&mut stream).await.starts_with("HTTP/1.1 200"));
    let mut tls = common::tunnel::intercepted(&proxy, "ws.test", stream, &[b"http/1.1"]).await;
    let inner = upgrade_request("/socket", &format!("ws.test:{port}"), "ignored-inside-the-tunnel")
        .replace("Proxy-Authorization: ignored-inside-the-tunnel\r\n", "");
    tls.write_all(inner.as_bytes()).await.unwrap();
    let head = read_head(&mut tls).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    tls.write_all(b"inside").await.unwrap();
    let mut echoed = [0u8; 6];
    tls.read_exact(&mut echoed).await.unwrap();
    assert_eq!(&echoed, b"inside");
    assert!(heads.lock().unwrap()[0].to_ascii_lowercase().contains("authorization: bearer chat-token"));
}
