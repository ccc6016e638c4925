//! `tollgate_cpu_seconds_total` and `tollgate_cpu_waiting_seconds_total`: how long Tollgate's
//! threads ran, and how long they were ready to run but waited for a CPU (Linux's schedstat
//! "run delay", which includes time held back by a cgroup CPU limit), read from
//! `/proc/self/task/*/schedstat` on each scrape.
//!
//! Divided by the requests served, the second says how much a crowded node or a CPU limit
//! adds to each request (docs/operations.md): when another process holds the core, a woken
//! proxy waits for it, and every request that arrives meanwhile waits with it. What a thread
//! ran or waited after the last scrape before it ended is not counted. On a kernel that keeps
//! no such figures both stay at zero. `tests/cpu_metrics.rs` holds them against real threads.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Counter, Registry};

/// What the scheduler has recorded for one thread, in nanoseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Sched {
    on_cpu: u64,
    waiting: u64,
}

/// Reads every thread's figures when scraped and adds what grew since the last scrape.
struct CpuTime {
    on_cpu: Counter,
    waiting: Counter,
    /// Each thread's figures at the last scrape, by thread id.
    seen: Mutex<HashMap<u32, Sched>>,
}

impl Collector for CpuTime {
    fn desc(&self) -> Vec<&Desc> {
        self.on_cpu.desc().into_iter().chain(self.waiting.desc()).collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        // The map is whole after every step, so a panic elsewhere leaves nothing half done.
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        // A thread list that cannot be read (no descriptor left, say) changes nothing:
        // forgetting the threads would count their whole lives again at the next scrape.
        if let Some(now) = threads(&seen) {
            let grown = growth(&seen, &now);
            *seen = now;
            self.on_cpu.inc_by(grown.on_cpu as f64 / 1e9);
            self.waiting.inc_by(grown.waiting as f64 / 1e9);
        }
        drop(seen);
        self.on_cpu.collect().into_iter().chain(self.waiting.collect()).collect()
    }
}

/// What grew between two readings: each thread's growth, all of a thread seen for the first
/// time, nothing of a thread that has ended. A thread whose figures fell is a new thread
/// under an old id, and counts whole.
fn growth(before: &HashMap<u32, Sched>, now: &HashMap<u32, Sched>) -> Sched {
    now.iter().fold(Sched::default(), |sum, (tid, at)| {
        let was = before.get(tid).copied().filter(|was| was.on_cpu <= at.on_cpu && was.waiting <= at.waiting);
        let was = was.unwrap_or_default();
        Sched { on_cpu: sum.on_cpu + at.on_cpu - was.on_cpu, waiting: sum.waiting + at.waiting - was.waiting }
    })
}

/// Every live thread's figures; `None` when the thread list cannot be read. A thread whose
/// own file cannot be read keeps its figures from `seen`.
fn threads(seen: &HashMap<u32, Sched>) -> Option<HashMap<u32, Sched>> {
    let tasks = std::fs::read_dir("/proc/self/task").ok()?;
    let now = tasks
        .flatten()
        .filter_map(|task| {
            let tid: u32 = task.file_name().to_str()?.parse().ok()?;
            let read = std::fs::read_to_string(task.path().join("schedstat")).ok();
            let at = read.as_deref().and_then(parse).or_else(|| seen.get(&tid).copied())?;
            Some((tid, at))
        })
        .collect();
    Some(now)
}

/// A schedstat line: nanoseconds on a CPU, nanoseconds waiting for one, times run.
fn parse(line: &str) -> Option<Sched> {
    let mut fields = line.split_ascii_whitespace();
    let on_cpu = fields.next()?.parse().ok()?;
    let waiting = fields.next()?.parse().ok()?;
    Some(Sched { on_cpu, waiting })
}

/// Adds both counters to `registry`, read at each scrape.
pub fn register(registry: &Registry) -> Result<(), prometheus::Error> {
    let on_cpu = Counter::new("tollgate_cpu_seconds_total", "CPU time Tollgate's threads ran (Linux schedstat).")?;
    let waiting = Counter::new(
        "tollgate_cpu_waiting_seconds_total",
        "Time Tollgate's threads were ready to run but waited for a CPU, a CPU limit's throttling \
         included (Linux schedstat run delay).",
    )?;
    registry.register(Box::new(CpuTime { on_cpu, waiting, seen: Mutex::new(HashMap::new()) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(on_cpu: u64, waiting: u64) -> Sched {
        Sched { on_cpu, waiting }
    }

    #[test]
    fn schedstat_lines() {
        assert_eq!(parse("1234 5678 9\n"), Some(at(1234, 5678)));
        assert_eq!(parse("1 2"), Some(at(1, 2)));
        for bad in ["", "1", "x 2 3", "1 -2 3", "1 2.5 3"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn growth_counts_new_threads_whole_and_never_goes_back() {
        let before = HashMap::from([(1, at(100, 10)), (2, at(50, 5)), (3, at(900, 90)), (5, at(10, 100))]);
        // Thread 1 grew, 2 ended, 3's and 5's ids now belong to new threads (5's ran longer
        // already but has waited less), 4 is new.
        let now = HashMap::from([(1, at(160, 15)), (3, at(20, 2)), (4, at(30, 3)), (5, at(40, 4))]);
        assert_eq!(growth(&before, &now), at(60 + 20 + 30 + 40, 5 + 2 + 3 + 4));
        assert_eq!(growth(&now, &now), at(0, 0));
    }
}
