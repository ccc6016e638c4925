//! A paced load generator for the tail at moderate load (`scripts/bench-load latency`): the
//! same few targets (the upstream itself, nginx, Tollgate, ...) measured in short turns, one
//! target at a time, so that whatever else the machine is doing falls on every target alike.
//!
//! Every target has its own connections, opened at the start and kept alive. A turn lasts
//! `--turn-ms`; in it only the turn's target is sent requests: each of its connections sends a
//! small `GET`, reads the whole answer and waits `--think-ms` before the next, as `wrk` does
//! with a `delay()` script. A connection starts each turn after a random fraction of one
//! think time, so that the connections' requests are spread as they would be after running a
//! while, not sent all at once at each turn's start. The targets take their turns in the order
//! given, then in the reverse order, and so on, so of two targets next to each other in the
//! list each goes first as often as the other. A request still in flight when its turn ends
//! is finished and counted.
//!
//! ```text
//! cargo bench --bench paced_load -- --upstream 127.0.0.1:8081 --path /small \
//!     --target direct=127.0.0.1:8081 --target nginx=127.0.0.1:8082=proxy \
//!     --auth 'Bearer TOKEN' --proxy-auth 'Bearer KEY' --connections 8 --think-ms 2 \
//!     --turn-ms 200 --seconds 10
//! ```
//!
//! Prints one JSON line per target: requests, errors, req/s over its turns, p50, p90, p95,
//! p98, p99 and p99.9 in ms.
//! `--seconds` is each target's time: the run takes that times the number of targets.
//! Loopback only: every address must be a loopback address.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

mod support;
use support::{percentile, Argv, Seen};

struct Target {
    name: String,
    addr: SocketAddr,
    /// The whole request, written at once.
    request: Vec<u8>,
}

struct Args {
    targets: Vec<Target>,
    connections: usize,
    think: Duration,
    turn: Duration,
    seconds: f64,
}

const USAGE: &str = "paced_load --upstream ADDR --target NAME=ADDR[=proxy] ... [--path /p] [--auth VALUE] \
                     [--proxy-auth VALUE] [--connections N] [--think-ms MS] [--turn-ms MS] [--seconds S]";

fn loopback(text: &str, flag: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = text.parse().map_err(|e| format!("{flag} {text}: {e}"))?;
    if !addr.ip().is_loopback() {
        return Err(format!("{flag} {text}: not a loopback address"));
    }
    Ok(addr)
}

fn parse_args(mut argv: Argv) -> Result<Args, String> {
    let upstream = loopback(&argv.take("--upstream").ok_or("--upstream is required")?, "--upstream")?;
    let path = argv.take("--path").unwrap_or_else(|| "/".into());
    let auth = argv.take("--auth");
    let proxy_auth = argv.take("--proxy-auth");
    let connections = argv.number("--connections", 8.0)? as usize;
    let think = Duration::from_secs_f64(argv.number("--think-ms", 2.0)? / 1000.0);
    let turn = Duration::from_secs_f64(argv.number("--turn-ms", 200.0)? / 1000.0);
    let seconds = argv.number("--seconds", 10.0)?;
    let mut targets = Vec::new();
    while let Some(spec) = argv.take("--target") {
        let mut parts = spec.split('=');
        let (Some(name), Some(addr)) = (parts.next(), parts.next()) else {
            return Err(format!("--target {spec}: expected NAME=ADDR[=proxy]"));
        };
        let addr = loopback(addr, "--target")?;
        let request = match parts.next() {
            // Absolute form with the proxy credential, as an HTTP client sends through a proxy.
            Some("proxy") => {
                head(&format!("http://{upstream}{path}"), upstream, "Proxy-Authorization", proxy_auth.as_deref())
            }
            None => head(&path, upstream, "Authorization", auth.as_deref()),
            Some(other) => return Err(format!("--target {spec}: `{other}` is not `proxy`")),
        };
        targets.push(Target { name: name.to_string(), addr, request });
    }
    argv.finish()?;
    if targets.is_empty() || connections == 0 || seconds <= 0.0 || turn.is_zero() {
        return Err("give at least one --target, and positive --connections, --turn-ms and --seconds".into());
    }
    Ok(Args { targets, connections, think, turn, seconds })
}

fn head(target: &str, host: SocketAddr, field: &str, value: Option<&str>) -> Vec<u8> {
    let mut head = format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n");
    if let Some(value) = value {
        head.push_str(&format!("{field}: {value}\r\n"));
    }
    head.push_str("\r\n");
    head.into_bytes()
}

/// Sends the request and reads the whole answer; an error for anything but a 2xx with a
/// `Content-Length`.
async fn exchange(stream: &mut TcpStream, request: &[u8], read: &mut Vec<u8>) -> Result<(), String> {
    stream.write_all(request).await.map_err(|e| format!("write: {e}"))?;
    read.clear();
    loop {
        let mut fields = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut fields);
        if let httparse::Status::Complete(at) = response.parse(read).map_err(|e| format!("answer head: {e}"))? {
            let status = response.code.unwrap_or(0);
            if !(200..300).contains(&status) {
                return Err(format!("status {status}"));
            }
            let length = response
                .headers
                .iter()
                .find(|f| f.name.eq_ignore_ascii_case("content-length"))
                .and_then(|f| std::str::from_utf8(f.value).ok()?.trim().parse::<usize>().ok())
                .ok_or("an answer without Content-Length")?;
            while read.len() < at + length {
                if stream.read_buf(read).await.map_err(|e| format!("read: {e}"))? == 0 {
                    return Err("the connection closed inside an answer".into());
                }
            }
            if read.len() > at + length {
                return Err("more bytes than the answer's length".into());
            }
            return Ok(());
        }
        if read.len() > 64 * 1024 || stream.read_buf(read).await.map_err(|e| format!("read: {e}"))? == 0 {
            return Err("the connection closed before an answer".into());
        }
    }
}

/// A small xorshift generator: the start offsets need spreading, not quality.
struct Spread(u64);

impl Spread {
    fn below(&mut self, limit: Duration) -> Duration {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        limit.mul_f64((self.0 >> 11) as f64 / (1u64 << 53) as f64)
    }
}

/// The think time between an answer and the next request. tokio's timer fires on whole
/// milliseconds, so a wait asked for runs long by up to a millisecond or so: each wait is asked
/// for that much shorter (a running mean of how long the last ones ran over), so that the
/// waits average the think time, as `wrk`'s do.
struct Think {
    think: Duration,
    over: Duration,
}

impl Think {
    async fn pause(&mut self) {
        let ask = self.think.saturating_sub(self.over);
        let started = Instant::now();
        tokio::time::sleep(ask).await;
        let over = started.elapsed().saturating_sub(ask);
        self.over = (self.over * 7 + over) / 8;
    }
}

/// Whose turn it is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Turn {
    /// Before the first turn: no one's.
    Waiting,
    /// The target at this index in the list.
    Of(usize),
    /// The turns have ended.
    Over,
}

/// One connection of target `index`: sends while the turn (`turns`) is its target's, until
/// the turns are over.
async fn connection(args: Arc<Args>, index: usize, seed: u64, mut turns: watch::Receiver<Turn>) -> Seen {
    let mut seen = Seen::default();
    let target = &args.targets[index];
    let mut stream = match TcpStream::connect(target.addr).await {
        Ok(s) => s,
        Err(e) => {
            seen.error(format!("connect {}: {e}", target.addr));
            return seen;
        }
    };
    let _ = stream.set_nodelay(true);
    let mut read = Vec::with_capacity(4096);
    let mut spread = Spread(seed | 1);
    let mut think = Think { think: args.think, over: Duration::ZERO };
    loop {
        // Wait for this target's turn, or the end.
        let ours = turns.wait_for(|t| *t == Turn::Over || *t == Turn::Of(index)).await;
        if !ours.is_ok_and(|t| *t == Turn::Of(index)) {
            return seen;
        }
        tokio::time::sleep(spread.below(args.think)).await;
        while *turns.borrow() == Turn::Of(index) {
            let started = Instant::now();
            match exchange(&mut stream, &target.request, &mut read).await {
                Ok(()) => seen.answered(started),
                Err(e) => {
                    seen.error(e);
                    return seen;
                }
            }
            think.pause().await;
        }
    }
}

fn main() {
    let Some((args, runtime)) = support::start("paced_load", USAGE, parse_args) else { return };
    let args = Arc::new(args);
    let targets = args.targets.len();
    let rounds = (args.seconds / args.turn.as_secs_f64()).ceil().max(1.0) as usize;
    let seen = runtime.block_on(async {
        let (turns, watching) = watch::channel(Turn::Waiting);
        let mut workers = Vec::new();
        for index in 0..targets {
            for c in 0..args.connections {
                let seed = 0x9e37_79b9_7f4a_7c15u64.wrapping_mul((index * args.connections + c + 1) as u64);
                workers.push((index, tokio::spawn(connection(args.clone(), index, seed, watching.clone()))));
            }
        }
        // Let every connection open before the first turn.
        tokio::time::sleep(Duration::from_millis(200)).await;
        for round in 0..rounds {
            for k in 0..targets {
                // Odd rounds go backwards, so of two neighbours in the list each goes first
                // in half the rounds.
                let _ = turns.send(Turn::Of(if round % 2 == 0 { k } else { targets - 1 - k }));
                tokio::time::sleep(args.turn).await;
            }
        }
        let _ = turns.send(Turn::Over);
        let mut seen: Vec<Seen> = (0..targets).map(|_| Seen::default()).collect();
        for (index, worker) in workers {
            if let Ok(connection) = worker.await {
                seen[index].absorb(connection);
            }
        }
        seen
    });
    let seconds = rounds as f64 * args.turn.as_secs_f64();
    for (target, mut seen) in args.targets.iter().zip(seen) {
        let mut line = seen.summary(seconds);
        line.insert("name".into(), target.name.clone().into());
        for (key, p) in [("p90_ms", 0.90), ("p95_ms", 0.95), ("p98_ms", 0.98), ("p999_ms", 0.999)] {
            line.insert(key.into(), percentile(&seen.latencies_us, p).into());
        }
        println!("{}", serde_json::Value::Object(line));
    }
}
