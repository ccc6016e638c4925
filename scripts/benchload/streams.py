"""`streams`: MCP clients hold server-sent event streams open for minutes. N concurrent SSE
streams (an event every few seconds each) through Tollgate and through nginx
(`proxy_buffering off`), one proxy at a time: resident memory per open stream, CPU while the
streams sit open, and the latency of events (from the upstream's send to the client's read).
With --soak S, Tollgate also runs S seconds of half as many streams closing and reopening (each
lives a random 5-60 s), sampling RSS and open descriptors.

Each open stream costs a proxy two descriptors (client and upstream), and this machine's hard
limit is 20,000 per process and nginx needs some connections beyond two per stream (at
9,500 it reuses connections and drops streams), so N defaults to 9,000."""

import hashlib
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time

from .common import (CALLER_KEY, KEY_B64, OTHER_CPU, TOKEN, Fleet, build_release, free_port, install, log,
                     process_tree, tree_cpu_seconds, wait_port)
from .peers import peer_nginx, start_tollgate

HERE = os.path.dirname(os.path.abspath(__file__))
INTERVAL = 5.0


def config(fleet, port, admin, up):
    sha = hashlib.sha256(CALLER_KEY.encode()).hexdigest()
    return fleet.write("tollgate-streams.yaml", f"""
listen: 127.0.0.1:{port}
admin_listen: 127.0.0.1:{admin}
admin_tokens: ["bench-admin-token-0123456789"]
encryption_keys: [{{ id: k1, secret: "{KEY_B64}" }}]
store: {{ backend: memory }}
limits: {{ max_connections: 19900 }}
callers:
  api_keys:
    - {{ name: bench, sha256: {sha}, connectors: [bench] }}
connectors:
  - name: bench
    grant: static
    token: "{TOKEN}"
    unsafe_allow_http: true
    unsafe_allow_ranges: ["127.0.0.0/8"]
    allowed_domains: ["http://127.0.0.1:{up}/*"]
""")


def tree_rss_kib(pid):
    """Resident memory of a process and its descendants (nginx's master and worker)."""
    total = 0
    for p in process_tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                total += int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))
        except (OSError, AttributeError):
            continue
    return total


def tree_fds(pid):
    """Open descriptors of a process and its descendants."""
    count = 0
    for p in process_tree(pid):
        try:
            count += len(os.listdir(f"/proc/{p}/fd"))
        except OSError:
            continue
    return count


def clients(port, up, n, hold, churn, on_opened, every=None, sample=None):
    """Runs sse_clients.py; calls on_opened() once all streams are open, sample() every
    `every` seconds while it runs; returns its JSON result."""
    proc = subprocess.Popen(["taskset", "-c", OTHER_CPU, sys.executable, os.path.join(HERE, "sse_clients.py"),
                             str(port), f"http://127.0.0.1:{up}/sse", f"Bearer {CALLER_KEY}", str(n), "1000",
                             str(hold), str(churn)], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line.startswith("opened"):
        proc.kill()
        raise SystemExit(f"the SSE clients did not start: {line}")
    opened = int(line.split()[1])
    on_opened(opened)
    stop = threading.Event()
    if sample:
        def tick():
            while not stop.wait(every):
                sample()
        threading.Thread(target=tick, daemon=True).start()
    result = proc.stdout.readline()
    stop.set()
    proc.wait(timeout=120)
    r = json.loads(result)
    if r["opened"] < n or r["failed"]:
        raise SystemExit(f"streams through {port}: {r['opened']}/{n} opened, {r['failed']} failed "
                         f"(first: {r['first_error']})")
    return r


def hold_one(name, proc, port, up, args):
    rss0, fds0 = tree_rss_kib(proc.pid), tree_fds(proc.pid)
    seen = {}

    def on_opened(opened):
        time.sleep(5)
        seen["rss"], seen["fds"] = tree_rss_kib(proc.pid), tree_fds(proc.pid)
        seen["cpu"], seen["t"] = tree_cpu_seconds(proc.pid), time.time()

    r = clients(port, up, args.streams, args.hold, 0, on_opened)
    cpu = (tree_cpu_seconds(proc.pid) - seen["cpu"]) / (time.time() - seen["t"])
    row = {"rss0": rss0 / 1024, "rss": seen["rss"] / 1024, "per_stream_kib": (seen["rss"] - rss0) / args.streams,
           "fds0": fds0, "fds": seen["fds"], "cpu": cpu * 100, **r}
    log(f"{name}: {row}")
    return row


def run_streams(args):
    install()
    binary = build_release()
    fleet = Fleet()
    try:
        up = free_port()
        fleet.start("sse-upstream", [sys.executable, os.path.join(HERE, "sse_upstream.py"), str(up), str(INTERVAL),
                                     TOKEN], OTHER_CPU, port=up)
        rows = {}
        port, admin = free_port(), free_port()
        stats = {"MIMALLOC_SHOW_STATS": "1"} if args.allocator_stats else None
        tollgate = start_tollgate(fleet, binary, "tollgate-streams", config(fleet, port, admin, up), port, env=stats)
        rows["tollgate"] = hold_one("tollgate", tollgate, port, up, args)
        soak = soak_run(tollgate, port, up, args) if args.soak else None
        os.killpg(tollgate.pid, 15)
        tollgate.wait()
        if args.allocator_stats:
            allocator_stats(fleet)
        # The upstream notices the closed streams at their next event; let it close them all
        # before nginx opens as many (the upstream has the same descriptor limit).
        time.sleep(INTERVAL * 2)
        nginx_port = free_port()
        nginx = peer_nginx(fleet, nginx_port, up, connections=19900)
        wait_port(nginx_port)
        rows["nginx"] = hold_one("nginx", nginx, nginx_port, up, args)
        report(rows, soak, args)
    finally:
        fleet.stop()


def allocator_stats(fleet):
    """The allocator's own account of its memory, printed by Tollgate as it exits
    (MIMALLOC_SHOW_STATS): peak and current committed and purged memory, to hold against RSS."""
    with open(os.path.join(fleet.dir, "tollgate-streams.log")) as f:
        text = f.read()
    start = text.find(" pages ")
    log("allocator statistics at exit:\n" + (text[start:] if start >= 0 else "(none printed)"))


def soak_run(proc, port, up, args):
    samples, start = [], []

    def sample():
        start[:] = start or [time.time()]
        samples.append((tree_rss_kib(proc.pid) / 1024, tree_fds(proc.pid), time.time() - start[0]))
        log(f"soak: rss {samples[-1][0]:.1f} MiB, fds {samples[-1][1]}")

    # The table's streams were just closed; each is noticed at its next event. Starting before
    # they are gone put 9,000 closing and 4,500 new streams over the descriptor limit at once
    # (new streams refused with 502), so wait until Tollgate holds only its own descriptors.
    deadline = time.time() + INTERVAL * 6
    while tree_fds(proc.pid) > 100 and time.time() < deadline:
        time.sleep(0.5)
    # Half the streams: a closed stream's upstream side is noticed at its next event (up to
    # INTERVAL later), so closing and reopening streams overlap, and each costs two descriptors.
    r = clients(port, up, args.streams // 2, args.soak, 60, lambda _: sample(), every=30, sample=sample)
    # Only what was sampled while the soak ran: the clients close every stream before they
    # report, and a sample taken then is of no stream at all.
    samples = [s for s in samples if s[2] < args.soak] or samples
    quarter = max(1, len(samples) // 4)
    first, last = samples[1:1 + quarter] or samples[:1], samples[-quarter:]
    return {"first_rss": statistics.mean(s[0] for s in first), "last_rss": statistics.mean(s[0] for s in last),
            "first_fds": statistics.mean(s[1] for s in first), "last_fds": statistics.mean(s[1] for s in last),
            "samples": len(samples), **r}


def report(rows, soak, args):
    lines = [f"{args.streams:,} SSE streams held {args.hold}s, an event every {INTERVAL:.0f} s on each "
             f"({args.streams / INTERVAL:,.0f} events/s); one proxy at a time, one worker, CPU 0; upstream "
             f"and clients (Python asyncio) on CPU 1.", "",
             "| proxy | RSS before, MiB | RSS with the streams open, MiB | per open stream, KiB | descriptors "
             "| CPU while open, % of a core | event latency p50 / p99 / max, ms |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['rss0']:.1f} | {r['rss']:.1f} | {r['per_stream_kib']:.1f} | {r['fds0']} -> "
                     f"{r['fds']} | {r['cpu']:.1f} | {r['p50_ms']:.2f} / {r['p99_ms']:.2f} / {r['max_ms']:.1f} |")
    ratio = rows["tollgate"]["per_stream_kib"] / rows["nginx"]["per_stream_kib"]
    lines += ["", f"- memory per stream, Tollgate over nginx: {ratio:.2f}x (budget: at most 1.00x): "
                  f"{'met' if ratio <= 1 else 'MISSED'}"]
    if soak:
        flat = soak["last_rss"] <= soak["first_rss"] * 1.10 + 1 and soak["last_fds"] <= soak["first_fds"] * 1.02 + 5
        lines.append(f"- soak, {args.soak}s of {args.streams // 2:,} streams closing and reopening ({soak['reopened']:,} reopened, "
                     f"{soak['events']:,} events): RSS {soak['first_rss']:.1f} -> {soak['last_rss']:.1f} MiB, "
                     f"descriptors {soak['first_fds']:.0f} -> {soak['last_fds']:.0f}: "
                     f"{'flat' if flat else 'NOT FLAT'}")
    print("\n".join(lines))
