"""`callgrind`: instructions per request, repeatable whatever else the machine is doing."""

import os
import shutil
import subprocess

from .common import CALLER_KEY, PROXY_CPU, Fleet, build_release, free_port, install, log, wait_port, wrk
from .peers import tollgate_config, upstream_nginx

def callgrind_run(fleet, binary, name, up, seconds, connections):
    """Instructions per request of `binary` in steady state: counters zeroed after a warm-up,
    then `seconds` of wrk, then the counters dumped and divided by the requests wrk made."""
    port = free_port()
    config = tollgate_config(fleet, name, port, free_port(), up)
    out = os.path.join(fleet.dir, f"{name}.callgrind")
    env = {"TOKIO_WORKER_THREADS": "1", "TOLLGATE_LOG": "error"}
    proc = fleet.start(name, ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                              binary, "serve", "--config", config], PROXY_CPU, env=env)
    wait_port(port, timeout=120)
    auth = f"Bearer {CALLER_KEY}"
    figures = {}
    for size in ["small", "large"]:
        path = f"http://127.0.0.1:{up}/{size}"
        wrk(fleet, port, path, "Proxy-Authorization", auth, 3, connections)
        subprocess.run(["callgrind_control", "--zero", str(proc.pid)], check=True, capture_output=True)
        r = wrk(fleet, port, path, "Proxy-Authorization", auth, seconds, connections)
        before = set(os.listdir(fleet.dir))
        subprocess.run(["callgrind_control", "--dump", str(proc.pid)], check=True, capture_output=True)
        dumps = sorted(set(os.listdir(fleet.dir)) - before) or sorted(f for f in os.listdir(fleet.dir) if f.startswith(f"{name}.callgrind"))
        total = 0
        with open(os.path.join(fleet.dir, dumps[-1])) as f:
            for line in f:
                if line.startswith("summary:") or line.startswith("totals:"):
                    total = int(line.split()[1])
        figures[size] = total / r["requests"]
        if getattr(callgrind_run, "keep", None):
            shutil.copy(os.path.join(fleet.dir, dumps[-1]), os.path.join(callgrind_run.keep, f"{name}-{size}.callgrind"))
        log(f"{name:10} {size:5} {r['requests']:8} requests  {figures[size]:10.0f} instructions per request")
    return figures


def run_callgrind(args):
    install()
    if args.keep:
        os.makedirs(args.keep, exist_ok=True)
        callgrind_run.keep = os.path.abspath(args.keep)
    binaries = [("tollgate", build_release())]
    if args.baseline:
        binaries.append(("baseline", os.path.abspath(args.baseline)))
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

