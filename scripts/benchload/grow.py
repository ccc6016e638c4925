"""`grow`: how cost grows with the configuration and the user base. One Tollgate process per
row (memory store, cached tokens, small answers), rows interleaved round by round:

- allowed-domain patterns on the connector: 10, 100, 1,000, 10,000 (exact hosts, `*.` wildcards
  and path patterns on other hosts; the request matches the last one listed);
- connectors: 1, 10, 100, 1,000 (each its own host; the request goes to the last);
- users: 1, 1,000, 10,000, 100,000, each with their own JWT and imported token, every request
  the next user (as `users`)."""

import hashlib
import statistics
import threading

from .common import (CALLER_KEY, KEY_B64, OTHER_CPU, PROXY_CPU, TOKEN, Fleet, build_release, free_port, install,
                     log)
from .load import measure, warm_up
from .peers import start_tollgate, upstream_nginx
from . import users as users_bench

PATTERNS = [10, 100, 1_000, 10_000]
CONNECTORS = [1, 10, 100, 1_000]
USERS = [1, 1_000, 10_000, 100_000]


def decoy(i):
    """A pattern that does not cover the request: one of three shapes, on a host of its own."""
    return [f"https://api{i}.decoy{i % 97}.example/*", f"https://*.w{i}.example/v1/*",
            f"https://docs{i}.example/api/v{i % 7}/*"][i % 3]


def config(fleet, name, port, admin, up, patterns=1, connectors=1):
    sha = hashlib.sha256(CALLER_KEY.encode()).hexdigest()
    names = [f"c{i}" for i in range(connectors)]
    blocks = []
    for i, cname in enumerate(names):
        last = i == connectors - 1
        allowed = [decoy(j) for j in range(patterns - 1)] if last else [f"https://api.c{i}.example/*"]
        if last:
            allowed.append(f"http://127.0.0.1:{up}/*")
        listed = "\n".join(f'      - "{p}"' for p in allowed)
        blocks.append(f"""  - name: {cname}
    grant: static
    token: "{TOKEN}"
    unsafe_allow_http: true
    unsafe_allow_ranges: ["127.0.0.0/8"]
    allowed_domains:
{listed}""")
    return fleet.write(f"{name}.yaml", f"""
listen: 127.0.0.1:{port}
admin_listen: 127.0.0.1:{admin}
admin_tokens: ["{users_bench.ADMIN}"]
encryption_keys: [{{ id: k1, secret: "{KEY_B64}" }}]
store: {{ backend: memory }}
callers:
  api_keys:
    - {{ name: bench, sha256: {sha}, connectors: [{", ".join(names)}] }}
connectors:
{chr(10).join(blocks)}
""")


def import_parallel(admin, count, threads=4):
    """users.import_tokens over `threads` connections, each a slice of the users."""
    errors = []

    def work(k):
        try:
            users_bench.import_tokens(admin, count, start=k, step=threads)
        except SystemExit as e:
            errors.append(str(e))

    pool = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    if errors:
        raise SystemExit(errors[0])


def run_grow(args):
    install()
    binary = build_release()
    fleet = Fleet()
    try:
        up = free_port()
        upstream_nginx(fleet, up)
        users_up = free_port()
        users_bench.upstream(fleet, users_up)
        rows, procs, targets, creds = [], {}, [], {}
        for family, sizes in [("patterns", PATTERNS), ("connectors", CONNECTORS)]:
            for n in sizes:
                label = f"{family} {n:,}"
                port, admin = free_port(), free_port()
                kwargs = {"patterns": n} if family == "patterns" else {"connectors": n}
                procs[label] = start_tollgate(fleet, binary, label.replace(" ", "-").replace(",", ""),
                                              config(fleet, label.replace(" ", "-").replace(",", ""), port, admin, up,
                                                     **kwargs), port)
                targets.append((label, port, "Proxy-Authorization", f"Bearer {CALLER_KEY}",
                                f"http://127.0.0.1:{up}/small"))
                rows.append((family, n, label))
        warm_up(fleet, targets, sizes=("small",))
        user_targets = []
        for n in USERS[: args.grow_users]:
            label = f"users {n:,}"
            port, admin = free_port(), free_port()
            name = f"users-{n}"
            procs[label] = start_tollgate(fleet, binary, name, users_bench.config(fleet, name, port, admin, users_up),
                                          port)
            import_parallel(admin, n)
            log(f"{label}: imported")
            creds[label] = users_bench.write_creds(fleet, n)
            user_targets.append((label, port, "Proxy-Authorization", "", f"http://127.0.0.1:{users_up}/user"))
            rows.append(("users", n, label))
        env_for = lambda label: {"BENCH_CREDS": creds[label]}  # noqa: E731
        users_bench.warm_up(fleet, user_targets, env_for, args.connections)
        results = measure(fleet, targets, procs, args, sizes=("small",))
        results.update(measure(fleet, user_targets, procs, args, sizes=("small",), lua=users_bench.ROTATE_LUA,
                               env_for=env_for))
        report(results, rows, args, {label: rss_mib(p.pid) for label, p in procs.items()})
    finally:
        fleet.stop()


def report(results, rows, args, rss):
    lines = [f"{args.rounds} interleaved rounds x {args.duration}s, {args.connections} connections, small answers, "
             f"memory store; Tollgate on CPU {PROXY_CPU} (one worker per process), wrk on CPU {OTHER_CPU}. Medians.",
             "", "| grows | size | req/s | p99 ms | CPU s / 1k req | req/s vs the smallest | CPU vs the smallest "
             "| RSS MiB at the end |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    first = {}
    for family, n, label in rows:
        runs = results[("small", label)]
        rps, p99, cpu = (statistics.median(r[k] for r in runs) for k in ["rps", "p99", "cpu_per_1k"])
        base = first.setdefault(family, (rps, cpu))
        lines.append(f"| {family} | {n:,} | {rps:.0f} | {p99:.3f} | {cpu:.4f} | {rps / base[0]:.2f} | {cpu / base[1]:.2f} "
                     f"| {rss[label]:.1f} |")
    lines += ["", "The users rows' wrk runs a script that hands it the next user's request, formatted before the "
                  "run (a new caller each time), so compare them with each other rather than with the other families."]
    print("\n".join(lines))


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0

