//! `tollgate_cpu_seconds_total` and `tollgate_cpu_waiting_seconds_total` held against real
//! threads, alone in this test binary so that nothing else runs beside them: a thread with a
//! core to itself runs and hardly waits; twice as many spinning threads as cores wait about as
//! long as they run; while those threads idle, neither counter moves. Linux only: the figures
//! come from its per-thread scheduler statistics.
#![cfg(target_os = "linux")]

use std::sync::Barrier;
use std::time::{Duration, Instant};

use tollgate::metrics::Metrics;

/// (CPU seconds, waiting seconds) as a scrape exports them.
fn scrape(metrics: &Metrics) -> (f64, f64) {
    let text = metrics.render();
    let value = |name: &str| {
        let line = text.lines().find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '));
        let line = line.unwrap_or_else(|| panic!("{name} is not exported:\n{text}"));
        line[name.len()..].trim().parse::<f64>().unwrap_or_else(|e| panic!("{line}: {e}"))
    };
    (value("tollgate_cpu_seconds_total"), value("tollgate_cpu_waiting_seconds_total"))
}

/// What the counters grew by while `threads` threads spun for `spin`, read while the threads
/// are still alive, and the wall time between the two readings; then what they grew by in
/// 200 ms more while those threads, alive, sat idle.
fn spinning(metrics: &Metrics, threads: usize, spin: Duration) -> ((f64, f64, f64), (f64, f64)) {
    let (done, hold) = (Barrier::new(threads + 1), Barrier::new(threads + 1));
    let start = Instant::now();
    let before = scrape(metrics);
    let (after, idle) = std::thread::scope(|scope| {
        for _ in 0..threads {
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
        let after = scrape(metrics);
        let wall = start.elapsed().as_secs_f64();
        std::thread::sleep(Duration::from_millis(200));
        let idle = scrape(metrics);
        hold.wait();
        ((after.0 - before.0, after.1 - before.1, wall), (idle.0 - after.0, idle.1 - after.1))
    });
    (after, idle)
}

#[test]
fn cpu_time_and_waiting_follow_real_threads() {
    let metrics = Metrics::new(["only"]).expect("metrics");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let spin = Duration::from_millis(300);

    // One thread, a core to itself: it runs the whole time and hardly waits.
    let ((ran, waited, wall), _) = spinning(&metrics, 1, spin);
    assert!(ran >= 0.2 && ran <= cores as f64 * wall * 1.1 + 0.05, "one thread ran {ran:.3} s in {wall:.3} s");
    assert!(waited < ran / 2.0, "one thread on {cores} cores waited {waited:.3} s and ran {ran:.3} s");

    // Twice as many threads as cores: every core runs the whole time, and each thread waits
    // about half of it.
    let ((ran, waited, wall), idle) = spinning(&metrics, 2 * cores, spin);
    let busy = cores as f64 * 0.3;
    assert!(
        ran >= busy * 0.5 && ran <= cores as f64 * wall * 1.1 + 0.05,
        "ran {ran:.3} s on {cores} cores in {wall:.3} s"
    );
    assert!(waited >= busy * 0.25, "{} threads on {cores} cores waited {waited:.3} s", 2 * cores);

    // The same threads, alive and idle: nothing grows but what the readings themselves take,
    // and what the threads did before is not counted again.
    assert!(idle.0 < 0.05, "idle, the CPU counter grew {:.3} s", idle.0);
    assert!(idle.1 < 0.05, "idle, the waiting counter grew {:.3} s", idle.1);
}
