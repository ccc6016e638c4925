"""`load`: interleaved rounds against direct, nginx, HAProxy, Envoy and Tollgate on each store;
a table per answer size, and the moderate-load latency table."""

import statistics

from .common import (CALLER_KEY, OTHER_CPU, PROXY_CPU, TOKEN, Fleet, WRK_DELAY_LUA, WRK_LUA, build_release, core_busy_ticks,
                     free_port, install, log, tree_cpu_seconds, wrk)
from .latency import CONNECTIONS, THINK_MS, round_by_round
from .peers import (peer_envoy, peer_haproxy, peer_nginx, redis_cluster, redis_standalone, start_tollgate, tollgate_config,
                    upstream_nginx)

TOLLGATE_TARGETS = ["tollgate-memory", "tollgate-redis", "tollgate-redis-cold", "tollgate-cluster",
                    "tollgate-cluster-cold"]


def run_load(args):
    envoy = install()
    binary = build_release()
    fleet = Fleet()
    try:
        up = free_port()
        upstream_nginx(fleet, up)
        ports = {name: free_port() for name in ["nginx", "haproxy", "envoy", *TOLLGATE_TARGETS]}
        procs = {
            "nginx": peer_nginx(fleet, ports["nginx"], up),
            "haproxy": peer_haproxy(fleet, ports["haproxy"], up),
            "envoy": peer_envoy(fleet, envoy, ports["envoy"], up),
        }
        redis, redis_url = redis_standalone(fleet)
        cluster_url = redis_cluster(fleet, 3)
        # "-cold": a cache TTL of 1 ms, so every request finds its token stale in the process
        # cache and reads (and decrypts) it from the store.
        stores = {
            "tollgate-memory": (None, "30s", "standalone"),
            "tollgate-redis": (redis_url, "30s", "standalone"),
            "tollgate-redis-cold": (redis_url, "1ms", "standalone"),
            "tollgate-cluster": (cluster_url, "30s", "cluster"),
            "tollgate-cluster-cold": (cluster_url, "1ms", "cluster"),
        }
        for name, (url, ttl, mode) in stores.items():
            config = tollgate_config(fleet, name, ports[name], free_port(), up, url, cache_ttl=ttl, mode=mode)
            procs[name] = start_tollgate(fleet, binary, name, config, ports[name])
        targets = [("direct", up, "Authorization", f"Bearer {TOKEN}", "/{size}")]
        for name in ["nginx", "haproxy", "envoy", *TOLLGATE_TARGETS]:
            targets.append((name, ports[name], "Proxy-Authorization", f"Bearer {CALLER_KEY}",
                            f"http://127.0.0.1:{up}/{{size}}"))
        # Warm-up: Tollgate fetches and caches its token; every path is checked to answer 2xx.
        warm_up(fleet, targets)
        results = measure(fleet, targets, procs, args)
        report(results, targets, args)
        moderate(fleet, targets, args)
    finally:
        fleet.stop()


def warm_up(fleet, targets, sizes=("small", "large")):
    """One short run per target and size: tokens fetched and cached, connections and TLS
    sessions made, and every path checked to answer 2xx before anything is measured."""
    for name, port, header, auth, path, *url in targets:
        for size in sizes:
            wrk(fleet, port, path.format(size=size), header, auth, 1, 4, url=url[0] if url else None)


def measure(fleet, targets, procs, args, sizes=("small", "large"), lua=WRK_LUA, env_for=None):
    """Interleaved rounds: in each round every target runs once per answer size, so a change of
    the machine's speed moves all of them alike. Per run: req/s, latency, the proxy's CPU per
    1,000 requests, and how busy the load generator's core was."""
    results = {}
    for round_ in range(args.rounds):
        for size in sizes:
            for name, port, header, auth, path, *url in targets:
                pid = procs[name].pid if name in procs else None
                before = tree_cpu_seconds(pid) if pid else 0.0
                busy_before = core_busy_ticks(OTHER_CPU)
                r = wrk(fleet, port, path.format(size=size), header, auth, args.duration, args.connections,
                        url=url[0] if url else None, lua=lua, env=env_for(name) if env_for else None)
                r["cpu_per_1k"] = (tree_cpu_seconds(pid) - before) / r["requests"] * 1000 if pid else None
                busy_after = core_busy_ticks(OTHER_CPU)
                ticks = busy_after[1] - busy_before[1]
                r["other_busy"] = (busy_after[0] - busy_before[0]) / ticks if ticks else None
                results.setdefault((size, name), []).append(r)
                log(f"round {round_ + 1} {size:5} {name:16} {r['rps']:10.0f} req/s  p50 {r['p50']:.3f} ms  "
                    f"p99 {r['p99']:.3f} ms")
    return results


def moderate(fleet, targets, args):
    """Latency at a moderate rate (8 connections, each sending its next request 2 ms after its
    last answer: about 3,000-3,500 req/s), small responses: the p99 each proxy adds over a
    direct call, and Tollgate's against nginx's round by round (`latency` adds a busy machine)."""
    rows = {}
    for _ in range(args.rounds):
        for name, port, header, auth, path, *url in targets:
            r = wrk(fleet, port, path.format(size="small"), header, auth, args.duration, CONNECTIONS,
                    lua=WRK_DELAY_LUA, url=url[0] if url else None, env={"BENCH_DELAY_MS": THINK_MS})
            rows.setdefault(name, []).append(r)
    direct = [r["p99"] for r in rows["direct"]]
    lines = [f"### Moderate load ({CONNECTIONS} connections, {THINK_MS} ms think time, small responses)", "",
             "| target | req/s | p50 ms | p99 ms | p99 added over direct, ms |", "|---|---:|---:|---:|---:|"]
    for name, *_ in targets:
        rps, p50, p99 = (statistics.median(r[k] for r in rows[name]) for k in ["rps", "p50", "p99"])
        added = statistics.median(r["p99"] - d for r, d in zip(rows[name], direct))
        lines.append(f"| {name} | {rps:.0f} | {p50:.3f} | {p99:.3f} | {added:+.3f} |")
    lines.append("")
    for name in TOLLGATE_TARGETS:
        lines.append(round_by_round(name, rows[name], "nginx", rows["nginx"]))
    print("\n".join(lines))


def report(results, targets, args, ours=TOLLGATE_TARGETS):
    """A table per response size: medians, and each figure as a ratio to direct and to nginx
    (CPU only to nginx: the direct run has no proxy process)."""
    def med(size, name, key):
        values = [r[key] for r in results[(size, name)] if r[key] is not None]
        return statistics.median(values) if values else None

    def ratio(value, base):
        return f"{value / base:.2f}" if value is not None and base else "-"

    lines = [f"{args.rounds} interleaved rounds x {args.duration}s, {args.connections} connections, wrk 1 thread; "
             f"proxies on CPU {PROXY_CPU} with one worker, upstream/redis/wrk on CPU {OTHER_CPU}. Medians.", ""]
    for size, label in [("small", "small response (11 B)"), ("large", "16 KiB response")]:
        lines += [f"### {label}", "",
                  "| target | req/s | p50 ms | p99 ms | CPU s / 1k req "
                  "| req/s vs direct / nginx | p50 vs direct / nginx | p99 vs direct / nginx | CPU vs nginx |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        base = {k: (med(size, "direct", k), med(size, "nginx", k)) for k in ["rps", "p50", "p99", "cpu_per_1k"]}
        for name, *_ in targets:
            rps, p50, p99, cpu = (med(size, name, k) for k in ["rps", "p50", "p99", "cpu_per_1k"])
            cpu_text = f"{cpu:.4f}" if cpu is not None else "-"
            cells = [f"{ratio(v, base[k][0])} / {ratio(v, base[k][1])}" for k, v in [("rps", rps), ("p50", p50), ("p99", p99)]]
            lines.append(f"| {name} | {rps:.0f} | {p50:.3f} | {p99:.3f} | {cpu_text} | {' | '.join(cells)} "
                         f"| {ratio(cpu, base['cpu_per_1k'][1])} |")
        lines.append("")
        # Each round's runs follow one another, so a ratio taken within a round is not moved
        # by the machine speeding up or slowing down between rounds.
        nginx_rounds = [r["rps"] for r in results[(size, "nginx")]]
        for name in ours:
            paired = [r["rps"] / n for r, n in zip(results[(size, name)], nginx_rounds) if n]
            if paired:
                lines.append(f"- {name} req/s over nginx's in the same round: "
                             f"{', '.join(f'{x:.2f}' for x in paired)} (median {statistics.median(paired):.2f})")
        shares = [(name, med(size, name, "other_busy")) for name, *_ in targets]
        busy = [f"{name} {share * 100:.0f}%" for name, share in shares if share is not None]
        lines += [f"- CPU {OTHER_CPU} (wrk, upstream, Redis) busy, median per target: {', '.join(busy)}", ""]
    print("\n".join(lines))

