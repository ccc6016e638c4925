//! `tollgate_cpu_seconds_total` and `tollgate_cpu_waiting_seconds_total`: how long Tollgate's
//! threads ran, and how long they were ready to run but waited for a CPU (Linux's schedstat
//! "run delay"), read from `/proc/self/task/*/schedstat` on each scrape.
//!
//! Divided by the requests served, the second says how much of a tail comes from a crowded
//! node rather than from Tollgate or its upstreams (docs/operations.md): when another process
//! holds the core, a woken proxy waits for it, and every request that arrives meanwhile waits
//! with it. What a thread ran or waited after the last scrape before it ended is not counted.

use std::collections::HashMap;
use std::sync::Mutex;

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
        if let Ok(mut seen) = self.seen.lock() {
            let now = threads();
            let grown = growth(&seen, &now);
            *seen = now;
            self.on_cpu.inc_by(grown.on_cpu as f64 / 1e9);
            self.waiting.inc_by(grown.waiting as f64 / 1e9);
        }
        self.on_cpu.collect().into_iter().chain(self.waiting.collect()).collect()
    }
}

/// What grew between two readings: each thread's growth, all of a thread seen for the first
/// time, nothing of a thread that has ended. A thread id used again by a new thread (whose
/// figures start lower) counts from the new thread's next reading.
fn growth(before: &HashMap<u32, Sched>, now: &HashMap<u32, Sched>) -> Sched {
    now.iter().fold(Sched::default(), |sum, (tid, at)| {
        let was = before.get(tid).copied().unwrap_or_default();
        Sched {
            on_cpu: sum.on_cpu + at.on_cpu.saturating_sub(was.on_cpu),
            waiting: sum.waiting + at.waiting.saturating_sub(was.waiting),
        }
    })
}

/// Every live thread's figures; empty where the kernel does not keep them.
fn threads() -> HashMap<u32, Sched> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return HashMap::new() };
    tasks
        .flatten()
        .filter_map(|task| {
            let tid = task.file_name().to_str()?.parse().ok()?;
            let line = std::fs::read_to_string(task.path().join("schedstat")).ok()?;
            Some((tid, parse(&line)?))
        })
        .collect()
}

/// A schedstat line: nanoseconds on a CPU, nanoseconds waiting for one, times run.
fn parse(line: &str) -> Option<Sched> {
    let mut fields = line.split_ascii_whitespace();
    let on_cpu = fields.next()?.parse().ok()?;
    let waiting = fields.next()?.parse().ok()?;
    Some(Sched { on_cpu, waiting })
}

pub fn register(registry: &Registry) -> Result<(), prometheus::Error> {
    let on_cpu = Counter::new("tollgate_cpu_seconds_total", "CPU time Tollgate's threads ran (Linux schedstat).")?;
    let waiting = Counter::new(
        "tollgate_cpu_waiting_seconds_total",
        "Time Tollgate's threads were ready to run but waited for a CPU (Linux schedstat run delay).",
    )?;
    registry.register(Box::new(CpuTime { on_cpu, waiting, seen: Mutex::new(HashMap::new()) }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

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
        let before = HashMap::from([(1, at(100, 10)), (2, at(50, 5)), (3, at(900, 90))]);
        // Thread 1 grew, thread 2 ended, thread 3's id now belongs to a new thread, 4 is new.
        let now = HashMap::from([(1, at(160, 15)), (3, at(20, 2)), (4, at(30, 3))]);
        assert_eq!(growth(&before, &now), at(60 + 30, 5 + 3));
        assert_eq!(growth(&now, &now), at(0, 0));
    }

    fn values(collector: &CpuTime) -> (f64, f64) {
        let families = collector.collect();
        let value = |name: &str| {
            let family = families.iter().find(|f| f.name() == name).unwrap_or_else(|| panic!("no {name}"));
            family.get_metric()[0].get_counter().get_value()
        };
        (value("tollgate_cpu_seconds_total"), value("tollgate_cpu_waiting_seconds_total"))
    }

    /// Twice as many spinning threads as cores, for 300 ms: each waits about half the time for
    /// a core, and the counters see it. The threads stay alive until the second reading.
    #[test]
    fn threads_kept_from_a_core_are_counted_as_waiting() {
        let on_cpu = Counter::new("tollgate_cpu_seconds_total", "t").unwrap();
        let waiting = Counter::new("tollgate_cpu_waiting_seconds_total", "t").unwrap();
        let collector = CpuTime { on_cpu, waiting, seen: Mutex::new(HashMap::new()) };
        let (cpu_before, waited_before) = values(&collector);
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let spin = Duration::from_millis(300);
        let (done, hold) = (std::sync::Barrier::new(2 * cores + 1), std::sync::Barrier::new(2 * cores + 1));
        std::thread::scope(|scope| {
            for _ in 0..2 * cores {
                scope.spawn(|| {
                    let start = Instant::now();
                    while start.elapsed() < spin {
                        std::hint::spin_loop();
                    }
                    done.wait();
                    hold.wait();
                });
            }
            done.wait();
            let (cpu, waited) = values(&collector);
            hold.wait();
            let cores = cores as f64;
            assert!(cpu - cpu_before >= cores * 0.3 * 0.25, "ran {:.3} s on {cores} cores", cpu - cpu_before);
            assert!(waited - waited_before >= 0.3 * 0.25, "waited {:.3} s", waited - waited_before);
        });
    }
}
