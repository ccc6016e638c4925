"""`callgrind-paced`: what one request costs Tollgate and nginx when requests come one at a
time, as at moderate load: the proxy goes idle after every answer and wakes up for the next
request and again for the upstream's answer.

Each proxy runs under callgrind with its cache simulation (first level 32 KiB each for
instructions and data, the last level sized like one core's L2, 1 MiB) while one connection
sends a small request 2 ms after each answer: instructions, first-level instruction and data
(read and write) misses and L2-sized misses per request. Then, outside valgrind, `strace -c` counts the system
calls each proxy makes per request under the same load."""

import os
import re
import signal
import subprocess
import time

from .callgrind import builds, counted, tollgate_under_callgrind, under_callgrind
from .common import CALLER_KEY, WRK_DELAY_LUA, Fleet, free_port, install, log, process_tree, wait_port, wrk
from .peers import peer_nginx, start_tollgate, tollgate_config, upstream_nginx

THINK_MS = "2"
CACHE_SIM = ["--cache-sim=yes", "--I1=32768,8,64", "--D1=32768,8,64", "--LL=1048576,16,64"]
EVENTS = ["Ir", "I1mr", "D1mr", "D1mw", "ILmr", "DLmr", "DLmw"]


def paced(fleet, port, up, seconds):
    """wrk with one connection, each request 2 ms after the last answer."""
    return wrk(fleet, port, f"http://127.0.0.1:{up}/small", "Proxy-Authorization", f"Bearer {CALLER_KEY}", seconds, 1,
               lua=WRK_DELAY_LUA, env={"BENCH_DELAY_MS": THINK_MS})


def instructions(fleet, proc, name, port, up, seconds):
    """Per-request callgrind counters of `proc`, a proxy under callgrind listening on `port`."""
    wait_port(port, timeout=120)
    paced(fleet, port, up, 3)
    per_request, r = counted(fleet, proc, name, lambda: paced(fleet, port, up, seconds))
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=60)
    figures = {k: per_request.get(k, 0) for k in EVENTS}
    log(f"{name:10} {r['requests']:6} requests  " + "  ".join(f"{k} {v:,.1f}" for k, v in figures.items()))
    return figures


def syscalls(proc, port, up, seconds, fleet):
    """System calls per request of the process serving on `port` (nginx's worker, Tollgate's
    threads), by `strace -c -f`."""
    target = process_tree(proc.pid)[-1]  # nginx's worker, or Tollgate itself
    paced(fleet, port, up, 2)
    out = os.path.join(fleet.dir, f"strace-{port}.txt")
    tracer = subprocess.Popen(["strace", "-c", "-f", "-o", out, "-p", str(target)], stderr=subprocess.DEVNULL)
    time.sleep(1)
    r = paced(fleet, port, up, seconds)
    tracer.send_signal(signal.SIGINT)
    tracer.wait(timeout=30)
    calls = {}
    with open(out) as f:
        for line in f:
            m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)$", line)
            if m and m.group(2) != "total":
                calls[m.group(2)] = int(m.group(1)) / r["requests"]
    return calls


def run_callgrind_paced(args):
    install()
    binaries = builds(args)
    fleet = Fleet()
    seconds = args.duration or 8
    try:
        up = free_port()
        upstream_nginx(fleet, up)
        rows, calls = [], {}
        for name, binary in binaries:
            port = free_port()
            proc = tollgate_under_callgrind(fleet, binary, name, tollgate_config(fleet, name, port, free_port(), up),
                                            CACHE_SIM)
            rows.append((name, instructions(fleet, proc, name, port, up, seconds)))
        port = free_port()
        proc = peer_nginx(fleet, port, up, name="nginx-paced",
                          start=lambda name, command: under_callgrind(fleet, name, command, CACHE_SIM))
        rows.append(("nginx", instructions(fleet, proc, "nginx-paced", port, up, seconds)))
        port = free_port()
        name, binary = binaries[0]
        proc = start_tollgate(fleet, binary, f"{name}-strace",
                              tollgate_config(fleet, f"{name}-strace", port, free_port(), up), port)
        calls[name] = syscalls(proc, port, up, seconds, fleet)
        port = free_port()
        calls["nginx"] = syscalls(peer_nginx(fleet, port, up, name="nginx-strace"), port, up, seconds, fleet)
    finally:
        fleet.stop()
    print(f"One connection, each small request {THINK_MS} ms after the last answer; per request:")
    print()
    print("| proxy | instructions | first-level instruction misses | first-level data misses (reads + writes) "
          "| L2-sized misses (all) |")
    print("|---|---:|---:|---:|---:|")
    for name, f in rows:
        print(f"| {name} | {f['Ir']:,.0f} | {f['I1mr']:,.0f} | {f['D1mr']:,.0f} + {f['D1mw']:,.0f} "
              f"| {f['ILmr'] + f['DLmr'] + f['DLmw']:.1f} |")
    print()
    names = sorted({c for v in calls.values() for c in v if any(v2.get(c, 0) >= 0.01 for v2 in calls.values())})
    print("| proxy | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for proxy, v in calls.items():
        print(f"| {proxy} | " + " | ".join(f"{v.get(c, 0):.2f}" for c in names) + " |")
