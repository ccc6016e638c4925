//! Structured JSON logs on stdout: one object per line. The level comes from `TOLLGATE_LOG`
//! (`error`, `warn`, `info`, `debug`, `trace`; default `info`).
//!
//! A request never waits for stdout, nor wakes anyone. Each line is appended to a buffer in
//! memory; a thread of its own writes the buffer out every [`FLUSH_EVERY`] while lines come,
//! or sooner once it holds [`FLUSH_AT`] bytes, and sleeps until woken once a whole interval
//! passed with nothing to write. When stdout does not
//! keep up (a slow log collector, a full pipe), the buffer stops at [`CAP`] bytes and the
//! lines past it are dropped and counted (`tollgate_log_lines_dropped_total`) instead of
//! stalling the proxy. [`Logs`], dropped when the process ends, writes out what is left.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Condvar, Mutex, OnceLock};
use std::time::Duration;

use tracing::level_filters::LevelFilter;
use tracing_subscriber::fmt::MakeWriter;

/// How long a line may wait in memory before it is written.
pub const FLUSH_EVERY: Duration = Duration::from_millis(20);
/// A buffer this full is written at once.
pub const FLUSH_AT: usize = 64 * 1024;
/// The most the buffer holds while stdout is behind; lines past it are dropped.
pub const CAP: usize = 4 * 1024 * 1024;
/// How long shutdown waits for stdout to take the last lines.
const DRAIN: Duration = Duration::from_secs(2);

static DROPPED: AtomicU64 = AtomicU64::new(0);
static SINK: OnceLock<Sink> = OnceLock::new();

/// Lines dropped because stdout did not keep up, since the process started.
pub fn dropped_lines() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// Installs the JSON subscriber. Keep the returned [`Logs`] until the process ends: dropping
/// it writes out the buffered lines. The writer thread starts with the first line, so a
/// process that logs nothing stays single-threaded (with one worker, the C library's system
/// calls then skip their multi-threaded path: about 200 instructions per request).
pub fn init() -> Logs {
    let level =
        std::env::var("TOLLGATE_LOG").ok().and_then(|v| v.parse::<LevelFilter>().ok()).unwrap_or(LevelFilter::INFO);
    let sink = SINK.get_or_init(Sink::default);
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_max_level(level)
        .with_writer(SinkWriters(sink))
        .try_init();
    Logs(())
}

/// The writer thread, once started: its end is signalled here.
static WRITER: OnceLock<Mutex<mpsc::Receiver<()>>> = OnceLock::new();

fn start_writer(sink: &'static Sink) {
    WRITER.get_or_init(|| {
        let (done_tx, done) = mpsc::channel();
        // Without a thread the lines wait in the buffer up to its cap, then are counted.
        let _ = std::thread::Builder::new().name("tollgate-logs".into()).spawn(move || {
            sink.drain_into(&mut std::io::stdout());
            let _ = done_tx.send(());
        });
        Mutex::new(done)
    });
}

/// Writes out the buffered lines when dropped.
#[must_use = "dropping it at once ends the log writer"]
pub struct Logs(());

impl Drop for Logs {
    fn drop(&mut self) {
        if let (Some(sink), Some(done)) = (SINK.get(), WRITER.get()) {
            sink.close();
            if let Ok(done) = done.lock() {
                let _ = done.recv_timeout(DRAIN);
            }
        }
    }
}

/// The buffer shared by every thread that logs and the one that writes.
#[derive(Default)]
struct Sink {
    state: Mutex<State>,
    wake: Condvar,
    /// How often a line woke the writer.
    #[cfg(test)]
    wakes: AtomicU64,
}

#[derive(Default)]
struct State {
    lines: Vec<u8>,
    closed: bool,
    /// The writer sleeps until woken (nothing came in its last interval): the next line wakes
    /// it. Otherwise it wakes by the clock and no line needs to.
    parked: bool,
}

impl Sink {
    /// Appends one formatted event; past [`CAP`] it is dropped and counted.
    fn append(&self, bytes: &[u8]) {
        let Ok(mut state) = self.state.lock() else { return };
        let before = state.lines.len();
        if before + bytes.len() > CAP {
            drop(state);
            DROPPED.fetch_add(lines_in(bytes), Ordering::Relaxed);
            return;
        }
        state.lines.extend_from_slice(bytes);
        // Waking the writer is a system call and, on a shared core, a switch to its thread in
        // the middle of a request: only a parked writer is woken, or one whose batch reached
        // FLUSH_AT. While lines come steadily, the writer's own clock collects them.
        if std::mem::take(&mut state.parked) || (before < FLUSH_AT && state.lines.len() >= FLUSH_AT) {
            #[cfg(test)]
            self.wakes.fetch_add(1, Ordering::Relaxed);
            self.wake.notify_one();
        }
    }

    fn close(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.closed = true;
        }
        self.wake.notify_one();
    }

    /// The writer thread: writes what came every [`FLUSH_EVERY`] (sooner when it reaches
    /// [`FLUSH_AT`] or the sink is closed); after an interval with nothing, sleeps until a line
    /// wakes it, then gives that batch [`FLUSH_EVERY`] to fill; and so on until closed and
    /// empty. An idle process never wakes it.
    fn drain_into(&self, out: &mut impl Write) {
        let mut batch = Vec::with_capacity(FLUSH_AT);
        let mut idle = true;
        loop {
            let closed = {
                let Ok(mut state) = self.state.lock() else { return };
                if idle {
                    while state.lines.is_empty() && !state.closed {
                        state.parked = true;
                        state = match self.wake.wait(state) {
                            Ok(state) => state,
                            Err(_) => return,
                        };
                    }
                    state.parked = false;
                }
                if !state.closed && state.lines.len() < FLUSH_AT {
                    state = match self.wake.wait_timeout(state, FLUSH_EVERY) {
                        Ok((state, _)) => state,
                        Err(_) => return,
                    };
                }
                idle = state.lines.is_empty();
                std::mem::swap(&mut state.lines, &mut batch);
                state.closed
            };
            if !batch.is_empty() && out.write_all(&batch).and_then(|()| out.flush()).is_err() {
                DROPPED.fetch_add(lines_in(&batch), Ordering::Relaxed);
            }
            // Keep one batch's worth of capacity, not the largest backlog ever seen.
            batch.clear();
            batch.shrink_to(FLUSH_AT);
            if closed {
                let Ok(state) = self.state.lock() else { return };
                if state.lines.is_empty() {
                    return;
                }
            }
        }
    }
}

fn lines_in(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| b == b'\n').count().max(1) as u64
}

/// The subscriber's writers: each event is formatted first, then handed over in one write.
struct SinkWriters(&'static Sink);

impl<'a> MakeWriter<'a> for SinkWriters {
    type Writer = SinkWriter;

    fn make_writer(&'a self) -> SinkWriter {
        SinkWriter(self.0)
    }
}

struct SinkWriter(&'static Sink);

impl Write for SinkWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.append(bytes);
        start_writer(self.0);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that records each write, to see how lines were batched.
    #[derive(Default)]
    struct Recorder(Vec<Vec<u8>>);

    impl Write for Recorder {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.push(bytes.to_vec());
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_are_batched_and_all_written_on_close() {
        let sink = Sink::default();
        for i in 0..100 {
            sink.append(format!("{{\"n\":{i}}}\n").as_bytes());
        }
        sink.close();
        let mut out = Recorder::default();
        sink.drain_into(&mut out);
        assert_eq!(out.0.len(), 1, "one write for the whole batch");
        let text = String::from_utf8(out.0.concat()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 100);
        assert_eq!(lines[99], "{\"n\":99}");
    }

    /// Lines that come steadily are collected by the writer's clock: the first one wakes the
    /// parked writer, the rest wake no one, however many batches they make.
    #[test]
    fn steady_lines_do_not_wake_the_writer() {
        #[derive(Clone, Default)]
        struct Shared(std::sync::Arc<Mutex<Vec<Vec<u8>>>>);
        impl Write for Shared {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().push(bytes.to_vec());
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sink: &'static Sink = Box::leak(Box::default());
        let out = Shared::default();
        let mut writes = out.clone();
        let writer = std::thread::spawn(move || sink.drain_into(&mut writes));
        while !sink.state.lock().unwrap().parked {
            std::thread::sleep(Duration::from_millis(1));
        }
        // A line every millisecond for about ten intervals.
        for i in 0..(10 * FLUSH_EVERY.as_millis()) {
            sink.append(format!("{{\"n\":{i}}}\n").as_bytes());
            std::thread::sleep(Duration::from_millis(1));
        }
        let batches = out.0.lock().unwrap().len();
        let wakes = sink.wakes.load(Ordering::Relaxed);
        sink.close();
        writer.join().unwrap();
        assert!(batches >= 3, "the lines went out in batches while they came: {batches}");
        // One wake for the first line; a stall longer than an interval (a busy machine) parks
        // the writer and costs one more. Waking it for each batch's first line would be one
        // wake per batch.
        assert!(wakes * 2 < batches as u64, "{wakes} wakes for {batches} batches");
        let lines = out.0.lock().unwrap().concat().iter().filter(|&&b| b == b'\n').count();
        assert_eq!(lines as u128, 10 * FLUSH_EVERY.as_millis(), "every line written once");
    }

    #[test]
    fn a_full_buffer_drops_and_counts_lines_instead_of_growing() {
        let sink = Sink::default();
        let line = [b'x'; 1023].iter().copied().chain([b'\n']).collect::<Vec<u8>>();
        let before = dropped_lines();
        for _ in 0..(CAP / line.len() + 10) {
            sink.append(&line);
        }
        let held = sink.state.lock().unwrap().lines.len();
        assert!(held <= CAP, "the buffer stays within its cap: {held}");
        assert_eq!(held, CAP / line.len() * line.len(), "whole lines only");
        assert!(dropped_lines() - before >= 10, "the lines past the cap are counted");
    }

    /// A stdout that does not take writes (a full pipe) blocks only the writer thread: lines
    /// logged meanwhile wait in the buffer and are written once it moves again.
    #[test]
    fn a_stuck_writer_does_not_block_appends() {
        struct Stuck(mpsc::Receiver<()>, Vec<u8>);
        impl Write for Stuck {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                let _ = self.0.recv();
                self.1.extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sink: &'static Sink = Box::leak(Box::default());
        let (release, stuck) = mpsc::channel::<()>();
        let writer = std::thread::spawn(move || {
            let mut out = Stuck(stuck, Vec::new());
            sink.drain_into(&mut out);
            out.1
        });
        sink.append(b"first\n");
        while !sink.state.lock().unwrap().lines.is_empty() {
            std::thread::sleep(FLUSH_EVERY);
        }
        // The writer now holds "first" and waits for stdout; log 10,000 lines meanwhile.
        let (finished, appended) = mpsc::channel();
        std::thread::spawn(move || {
            for _ in 0..10_000 {
                sink.append(b"{\"a\":1}\n");
            }
            let _ = finished.send(());
        });
        appended.recv_timeout(Duration::from_secs(60)).expect("appends blocked behind a stuck stdout");
        assert_eq!(sink.state.lock().unwrap().lines.len(), 80_000, "every line waits in the buffer");
        sink.close();
        drop(release);
        let written = writer.join().unwrap();
        assert_eq!(written.len(), 6 + 80_000, "and all of them are written once stdout moves");
    }
}
