"""`callgrind`: instructions per request, repeatable whatever else the machine is doing."""

import os
import shutil
import signal
import subprocess

from .common import CALLER_KEY, PROXY_CPU, Fleet, build_release, free_port, install, log, wait_port, wrk
from .peers import tollgate_config, upstream_nginx
from . import users


def dump(fleet, proc, name):
    """Dumps `proc`'s counters: (events, totals) of the profile written, kept if asked."""
    before = set(os.listdir(fleet.dir))
    subprocess.run(["callgrind_control", "--dump", str(proc.pid)], check=True, capture_output=True)
    dumps = sorted(set(os.listdir(fleet.dir)) - before) or sorted(f for f in os.listdir(fleet.dir) if f.startswith(f"{name}.callgrind"))
    events, totals = [], []
    with open(os.path.join(fleet.dir, dumps[-1])) as f:
        for line in f:
            if line.startswith("events:"):
                events = line.split()[1:]
            if line.startswith("summary:") or line.startswith("totals:"):
                totals = [int(v) for v in line.split()[1:]]
    if getattr(callgrind_run, "keep", None):
        shutil.copy(os.path.join(fleet.dir, dumps[-1]), os.path.join(callgrind_run.keep, f"{name}.callgrind"))
    return dict(zip(events, totals))


def counted(fleet, proc, name, run):
    """`proc`'s callgrind counters over `run()` alone (a wrk run), per request: zeroed before,
    dumped after. Returns (counters, wrk's result)."""
    subprocess.run(["callgrind_control", "--zero", str(proc.pid)], check=True, capture_output=True)
    r = run()
    return {k: v / r["requests"] for k, v in dump(fleet, proc, name).items()}, r


def under_callgrind(fleet, name, command, options=(), env=None, port=None):
    """Starts `command` on the proxies' core under callgrind (its profile named after `name`)."""
    out = os.path.join(fleet.dir, f"{name}.callgrind")
    return fleet.start(name, ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *options, *command],
                       PROXY_CPU, env=env, port=port)


def tollgate_under_callgrind(fleet, binary, name, config, options=()):
    """Tollgate with one worker and no audit lines, under callgrind."""
    env = {"TOKIO_WORKER_THREADS": "1", "TOLLGATE_LOG": "error"}
    return under_callgrind(fleet, name, [binary, "serve", "--config", config], options, env)


def callgrind_run(fleet, binary, name, up, seconds, connections):
    """Instructions per request of `binary` in steady state: counters zeroed after a warm-up,
    then `seconds` of wrk, then the counters dumped and divided by the requests wrk made."""
    port = free_port()
    proc = tollgate_under_callgrind(fleet, binary, name, tollgate_config(fleet, name, port, free_port(), up))
    wait_port(port, timeout=120)
    auth = f"Bearer {CALLER_KEY}"
    figures = {}
    for size in ["small", "large"]:
        path = f"http://127.0.0.1:{up}/{size}"
        wrk(fleet, port, path, "Proxy-Authorization", auth, 3, connections)
        per_request, r = counted(fleet, proc, f"{name}-{size}",
                                 lambda: wrk(fleet, port, path, "Proxy-Authorization", auth, seconds, connections))
        figures[size] = per_request["Ir"]
        log(f"{name:10} {size:5} {r['requests']:8} requests  {figures[size]:10.0f} instructions per request")
    return figures


def users_run(fleet, binary, name, up, count, seconds, connections):
    """The many-users path under callgrind with its cache simulation, the last level sized as
    one core's L2 (1 MiB): instructions, first-level data misses and L2-sized misses per
    request, `count` users each with their own JWT and token, every request the next user.
    Warm-up passes run until every user has been seen twice, so every credential is verified
    and every token cached before the counters are zeroed."""
    port, admin, tag = free_port(), free_port(), f"{name}-{count}"
    proc = tollgate_under_callgrind(fleet, binary, tag, users.config(fleet, tag, port, admin, up),
                                    ["--cache-sim=yes", "--LL=1048576,16,64"])
    wait_port(port, timeout=120)
    wait_port(admin, timeout=60)
    users.import_tokens(admin, count)
    creds = {"BENCH_CREDS": users.write_creds(fleet, count)}
    path = f"http://127.0.0.1:{up}/user"
    seen = 0
    while seen < 2 * count:
        seen += wrk(fleet, port, path, "Proxy-Authorization", "", 10, connections, lua=users.ROTATE_LUA,
                    env=creds)["requests"]
    figures, r = counted(fleet, proc, tag, lambda: wrk(fleet, port, path, "Proxy-Authorization", "", seconds,
                                                       connections, lua=users.ROTATE_LUA, env=creds))
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=60)
    log(f"{name:10} {count:7} users {r['requests']:8} requests  {figures['Ir']:8.0f} instructions  "
        f"{figures['D1mr']:6.1f} D1 misses  {figures['DLmr']:5.1f} L2-sized misses per request")
    return figures


def builds(args):
    """(name, binary) of this checkout's release build, and of --baseline if given."""
    binaries = [("tollgate", build_release())]
    if args.baseline:
        binaries.append(("baseline", os.path.abspath(args.baseline)))
    return binaries


def run_callgrind_users(args):
    install()
    binaries = builds(args)
    fleet = Fleet()
    try:
        up = free_port()
        users.upstream(fleet, up)
        results = [(name, count, users_run(fleet, binary, name, up, count, args.duration, args.connections))
                   for name, binary in binaries for count in [1, args.users]]
    finally:
        fleet.stop()
    print("Per request:")
    print()
    print("| build | users | instructions | first-level data read misses | L2-sized read misses |")
    print("|---|---:|---:|---:|---:|")
    for name, count, f in results:
        print(f"| {name} | {count:,} | {f['Ir']:,.0f} | {f['D1mr']:.1f} | {f['DLmr']:.1f} |")


def run_callgrind(args):
    install()
    if args.keep:
        os.makedirs(args.keep, exist_ok=True)
        callgrind_run.keep = os.path.abspath(args.keep)
    binaries = builds(args)
    fleet = Fleet()
    try:
        up = free_port()
        upstream_nginx(fleet, up)
        results = {name: callgrind_run(fleet, binary, name, up, args.duration, args.connections)
                   for name, binary in binaries}
    finally:
        fleet.stop()
    print("| build | small (11 B) | 16 KiB |")
    print("|---|---|---|")
    for name, figures in results.items():
        print(f"| {name} | {figures['small']:,.0f} | {figures['large']:,.0f} |")

