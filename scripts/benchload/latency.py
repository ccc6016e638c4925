"""`latency`: the tail at moderate load, on a quiet machine and a busy one.

8 connections per target, each sending a small request 2 ms after its last answer (about
3,600-3,800 req/s while the target has its turn), to direct, nginx and Tollgate (memory
store), each proxy once without and once with its per-request log line (nginx `access_log`
buffered and flushed every 20 ms; Tollgate's audit line at `TOLLGATE_LOG=info`). The targets
take turns of a fifth of a second (`benches/paced_load.rs`), forwards and backwards, each
Tollgate row next to the nginx row it is held against: whatever else the machine does in a
round falls on every target alike, where runs of whole seconds one after another each met
a different machine. "Busy": a cache-sweeping neighbour at SCHED_IDLE on both cores (it takes
no CPU time a proxy wants, only the caches and memory bandwidth); "contended": the same
neighbour at normal priority on the proxies' core, sharing its CPU time. Each round reports
every target's p99 and how much Tollgate adds over direct against what nginx adds, in that
same round. Beside each proxy's CPU per request, what the scheduler did for it
(/proc/<pid>/task/*/schedstat): how long it waited, runnable, for its core, and how many times
it was given the core, per request: where the tail is the scheduler's, these say whether one
proxy is made to wait more than the other."""

import json
import os
import signal
import statistics
import subprocess

from .common import (CALLER_KEY, OTHER_CPU, PROXY_CPU, TOKEN, Fleet, build_bench, build_release, free_port, install, log,
                     sched_growth, tree_cpu_seconds, tree_sched)
from .peers import peer_nginx, start_tollgate, tollgate_config, upstream_nginx

CONNECTIONS, THINK_MS, TURN_MS = 8, "2", "200"
# Each Tollgate row and the nginx row it is held against.
PAIRS = [("tollgate", "nginx"), ("tollgate-logged", "nginx-logged")]
# The neighbours of each condition: (policy, cores). A neighbour never runs longer than this.
NEIGHBOURS = {"quiet": [], "busy": [("idle", PROXY_CPU), ("idle", OTHER_CPU)], "contended": [("other", PROXY_CPU)]}
NEIGHBOUR_LIMIT_S = 600


def run_latency(args):
    install()
    binary = build_release()
    client = build_bench("paced_load")
    conditions = args.conditions.split(",")
    unknown = [c for c in conditions if c not in NEIGHBOURS]
    if unknown:
        raise SystemExit(f"unknown condition {unknown}: choose from {', '.join(NEIGHBOURS)}")
    fleet = Fleet()
    try:
        up = free_port()
        upstream_nginx(fleet, up)
        ports = {name: free_port() for name in ["nginx", "nginx-logged", "tollgate", "tollgate-logged"]}
        procs = {
            "nginx": peer_nginx(fleet, ports["nginx"], up),
            "nginx-logged": peer_nginx(fleet, ports["nginx-logged"], up, name="nginx-logged", access_log=True),
        }
        for name, level in [("tollgate", "error"), ("tollgate-logged", "info")]:
            config = tollgate_config(fleet, name, ports[name], free_port(), up)
            procs[name] = start_tollgate(fleet, binary, name, config, ports[name], log=level)
        targets = [("direct", f"127.0.0.1:{up}")]
        for name in ["nginx", "tollgate", "nginx-logged", "tollgate-logged"]:
            targets.append((name, f"127.0.0.1:{ports[name]}=proxy"))
        command = ["taskset", "-c", OTHER_CPU, client, "--upstream", f"127.0.0.1:{up}", "--path", "/small",
                   "--auth", f"Bearer {TOKEN}", "--proxy-auth", f"Bearer {CALLER_KEY}",
                   "--connections", str(CONNECTIONS), "--think-ms", THINK_MS, "--turn-ms", TURN_MS]
        command += [a for name, addr in targets for a in ["--target", f"{name}={addr}"]]
        # Warm-up: every connection path, one second each.
        paced(command, 1)
        rows = {}
        for round_ in range(args.rounds):
            for condition in conditions:
                neighbours = [start_neighbour(policy, cpu) for policy, cpu in NEIGHBOURS[condition]]
                try:
                    before = {name: tree_cpu_seconds(proc.pid) for name, proc in procs.items()}
                    sched_before = {name: tree_sched(proc.pid) for name, proc in procs.items()}
                    results = paced(command, args.duration)
                    for name, _ in targets:
                        r = results[name]
                        pid = procs[name].pid if name in procs else None
                        r["cpu_per_1k"] = (tree_cpu_seconds(pid) - before[name]) / r["requests"] * 1000 if pid else None
                        if pid:
                            # What the scheduler did for the proxy: how long it waited, runnable,
                            # for its core, and how many times it was given it, per request.
                            _, waited, turns = sched_growth(sched_before[name], tree_sched(pid))
                            r["wait_us"], r["turns"] = waited / r["requests"] * 1e6, turns / r["requests"]
                        rows.setdefault((condition, name), []).append(r)
                        wait_note = f"  waited {r['wait_us']:5.1f} us/req" if pid else ""
                        log(f"round {round_ + 1} {condition:9} {name:16} {r['rps']:7.0f} req/s  "
                            f"p50 {r['p50']:.3f} ms  p99 {r['p99']:.3f} ms{wait_note}")
                finally:
                    for n in neighbours:
                        stop_neighbour(n)
        report(rows, [t[0] for t in targets], conditions, args)
    finally:
        fleet.stop()


# Copies 64 MiB over and over in user space (so the kernel can take its core back at once):
# every cache level is swept and memory bandwidth is shared, as by a busy neighbour.
THRASH = ("import time\na = bytearray(64 << 20)\nb = bytes(64 << 20)\nend = time.time() + {limit}\n"
          "while time.time() < end:\n    a[:] = b\n")


def start_neighbour(policy, cpu):
    """A cache-sweeping neighbour pinned to `cpu`; `idle` runs it at SCHED_IDLE (only when the
    core has nothing else to do), `other` at normal priority (it takes its share of CPU time)."""
    cmd = ["taskset", "-c", cpu, "python3", "-c", THRASH.format(limit=NEIGHBOUR_LIMIT_S)]
    if policy == "idle":
        cmd = ["chrt", "-i", "0", *cmd]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def stop_neighbour(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def paced(command, seconds):
    """One run of benches/paced_load.rs, `seconds` of turns per target: {name: result}."""
    out = subprocess.run([*command, "--seconds", str(seconds)], capture_output=True, text=True,
                         timeout=seconds * 10 + 60)
    results = {}
    for line in out.stdout.splitlines():
        r = json.loads(line)
        if r["errors"]:
            raise SystemExit(f"paced_load against {r['name']}: {r['errors']} errors, first: {r['first_error']}")
        results[r["name"]] = {"rps": r["rps"], "p50": r["p50_ms"], "p99": r["p99_ms"], "requests": r["requests"]}
    if out.returncode != 0 or not results:
        raise SystemExit(f"paced_load failed:\n{out.stdout}{out.stderr}")
    return results


def round_by_round(ours, our_runs, peer, peer_runs):
    """One line: our added p99 minus the peer's in each round (the same direct run, so p99
    minus p99), and in how many rounds ours was at or below."""
    diffs = [t["p99"] - n["p99"] for t, n in zip(our_runs, peer_runs)]
    return (f"- {ours} added p99 minus {peer}'s, round by round (ms): {', '.join(f'{d:+.3f}' for d in diffs)}; "
            f"at or below in {sum(d <= 0 for d in diffs)} of {len(diffs)} rounds, "
            f"median {statistics.median(diffs):+.3f}")


def report(rows, names, conditions, args):
    lines = [f"{args.rounds} rounds x {args.duration}s per target in turns of {TURN_MS} ms, {CONNECTIONS} connections, "
             f"{THINK_MS} ms think time, small answers; proxies on CPU {PROXY_CPU} with one worker. Medians.", ""]
    for condition in conditions:
        direct = [r["p99"] for r in rows[(condition, "direct")]]
        lines += [f"### {condition}", "",
                  "| target | req/s | p50 ms | p99 ms | p99 added over direct, ms | CPU s / 1k req "
                  "| waiting for its core, µs / req | given its core, times / req |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for name in names:
            runs = rows[(condition, name)]
            rps, p50, p99 = (statistics.median(r[k] for r in runs) for k in ["rps", "p50", "p99"])
            added = statistics.median(r["p99"] - d for r, d in zip(runs, direct))
            cpus = [r["cpu_per_1k"] for r in runs if r["cpu_per_1k"] is not None]
            cpu = f"{statistics.median(cpus):.4f}" if cpus else "-"
            waits = [r["wait_us"] for r in runs if "wait_us" in r]
            wait = f"{statistics.median(waits):.1f}" if waits else "-"
            turns = [r["turns"] for r in runs if "turns" in r]
            turn = f"{statistics.median(turns):.2f}" if turns else "-"
            lines.append(f"| {name} | {rps:.0f} | {p50:.3f} | {p99:.3f} | {added:+.3f} | {cpu} | {wait} | {turn} |")
        lines.append("")
        for ours, peer in PAIRS:
            # Same round, same direct run: Tollgate's added p99 minus nginx's is p99 minus p99.
            lines.append(round_by_round(ours, rows[(condition, ours)], peer, rows[(condition, peer)]))
        lines.append("")
    print("\n".join(lines))
