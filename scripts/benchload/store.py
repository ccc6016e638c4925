"""The store's runs: `outage` (cached tokens while Redis is down), `storm` (one refresh for N
concurrent requests over K processes) and `soak` (RSS and descriptors over time)."""

import http.client
import json
import os
import re
import signal
import statistics
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .common import (CALLER_KEY, TOKEN, Fleet, WRK_DELAY_LUA, build_release, free_port, install, log,
                     wrk)
from .peers import redis_standalone, start_tollgate, tollgate_config, upstream_nginx

def run_outage(args):
    install()
    binary = build_release()
    fleet = Fleet()
    try:
        up = free_port()
        upstream_nginx(fleet, up)
        redis, redis_url = redis_standalone(fleet)
        port = free_port()
        config = tollgate_config(fleet, "tollgate-redis", port, free_port(), up, redis_url,
                                 cache_ttl="1s")
        start_tollgate(fleet, binary, "tollgate-redis", config, port)
        auth, path = f"Bearer {CALLER_KEY}", f"http://127.0.0.1:{up}/small"
        wrk(fleet, port, path, "Proxy-Authorization", auth, 2, args.connections)
        rates = {"before": [], "during": []}
        for round_ in range(args.rounds):
            rates["before"].append(wrk(fleet, port, path, "Proxy-Authorization", auth, args.duration,
                                       args.connections)["rps"])
            if round_ == args.rounds - 1:
                os.killpg(redis.pid, signal.SIGKILL)
                redis.wait()
                time.sleep(1.5)  # past the cache TTL: every request now asks the store first
        for _ in range(args.rounds):
            rates["during"].append(wrk(fleet, port, path, "Proxy-Authorization", auth, args.duration,
                                       args.connections)["rps"])
    finally:
        fleet.stop()
    before, during = statistics.median(rates["before"]), statistics.median(rates["during"])
    print(f"{args.rounds} runs x {args.duration}s each side, {args.connections} connections, small answers, "
          f"cache TTL 1 s; medians.\n")
    print("| Redis | req/s | runs |")
    print("|---|---:|---|")
    print(f"| up | {before:.0f} | {', '.join(f'{r:.0f}' for r in rates['before'])} |")
    print(f"| down | {during:.0f} | {', '.join(f'{r:.0f}' for r in rates['during'])} |")
    ratio = during / before
    print(f"\nDuring the outage: {ratio:.2f}x the rate before it (budget: at least 0.90x): "
          f"{'met' if ratio >= 0.9 else 'MISSED'}")


class TokenStub(BaseHTTPRequestHandler):
    """A token endpoint: counts calls, answers after `delay`; the first token lives two seconds."""
    calls = 0
    lock = threading.Lock()
    delay = 0.2

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(length)
        with TokenStub.lock:
            TokenStub.calls += 1
            n = TokenStub.calls
        time.sleep(TokenStub.delay)
        body = json.dumps({"access_token": TOKEN, "token_type": "Bearer",
                           "expires_in": 86400 if n > 1 else 2}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def run_storm(args):
    install()
    binary = build_release()
    fleet = Fleet()
    stub = ThreadingHTTPServer(("127.0.0.1", 0), TokenStub)
    threading.Thread(target=stub.serve_forever, daemon=True).start()
    try:
        up = free_port()
        upstream_nginx(fleet, up)
        redis, redis_url = redis_standalone(fleet)
        ports = []
        for k in range(args.replicas):
            port = free_port()
            extra = 'refresh: { skew: "1s", token_endpoint_timeout: "10s", lock_ttl: "20s" }'
            config = tollgate_config(fleet, f"tollgate-{k}", port, free_port(), up,
                                     redis_url, extra)
            config_text = open(config).read().replace(f"http://127.0.0.1:{up}/token",
                                                      f"http://127.0.0.1:{stub.server_port}/token")
            with open(config, "w") as f:
                f.write(config_text)
            start_tollgate(fleet, binary, f"tollgate-{k}", config, port, cpu="0,1")
            ports.append(port)
        # The first token is issued with a two-second lifetime; once it has expired, the storm.
        prime = one_request(ports[0], up)
        if prime[0] != 200 or TokenStub.calls != 1:
            raise SystemExit(f"priming failed: {prime}, {TokenStub.calls} token calls")
        time.sleep(3)
        before = TokenStub.calls
        results, barrier = [None] * args.requests, threading.Barrier(args.requests)

        def worker(i):
            barrier.wait()
            results[i] = one_request(ports[i % len(ports)], up)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(args.requests)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        calls = TokenStub.calls - before
        statuses = sorted({r[0] for r in results if r})
        waits = sorted(r[1] * 1000 for r in results if r)
        print(f"refresh storm: {args.requests} concurrent requests on an expired token over {args.replicas} "
              f"Tollgate processes sharing one Redis; token endpoint answers after {TokenStub.delay * 1000:.0f} ms")
        print(f"token-endpoint calls during the storm: {calls} (must be 1)")
        print(f"statuses: {statuses}")
        print(f"latency of the waiting requests: p50 {waits[len(waits) // 2]:.1f} ms, "
              f"p99 {waits[int(len(waits) * 0.99) - 1]:.1f} ms, max {waits[-1]:.1f} ms")
        if calls != 1 or statuses != [200]:
            raise SystemExit("the storm did not end in exactly one refresh with every request answered")
    finally:
        stub.shutdown()
        fleet.stop()


def one_request(port, up):
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", f"http://127.0.0.1:{up}/small", headers={"Proxy-Authorization": f"Bearer {CALLER_KEY}"})
    status = conn.getresponse().status
    conn.close()
    return status, time.perf_counter() - started


def run_soak(args):
    install()
    binary = build_release()
    fleet = Fleet()
    try:
        up = free_port()
        upstream_nginx(fleet, up)
        port = free_port()
        proc = start_tollgate(fleet, binary, "tollgate", tollgate_config(fleet, "tollgate", port, free_port(), up), port)
        connections = 10
        delay_ms = max(1, int(connections * 1000 / args.rate))
        os.environ["BENCH_DELAY_MS"] = str(delay_ms)
        done = []
        load = threading.Thread(target=lambda: done.append(wrk(
            fleet, port, f"http://127.0.0.1:{up}/small", "Proxy-Authorization", f"Bearer {CALLER_KEY}",
            args.duration, connections, lua=WRK_DELAY_LUA)), daemon=True)
        load.start()
        samples, started = [], time.time()
        while load.is_alive() and time.time() - started < args.duration + 20:
            time.sleep(args.every)
            with open(f"/proc/{proc.pid}/status") as f:
                rss = int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))
            fds = len(os.listdir(f"/proc/{proc.pid}/fd"))
            samples.append((time.time() - started, rss, fds))
            log(f"{samples[-1][0]:7.0f}s  rss {rss / 1024:7.1f} MiB  fds {fds}")
        load.join()
        settle = samples[len(samples) // 4:]  # after warm-up
        first, last = settle[: max(1, len(settle) // 4)], settle[-max(1, len(settle) // 4):]
        rss_first, rss_last = statistics.mean(s[1] for s in first), statistics.mean(s[1] for s in last)
        fd_first, fd_last = statistics.mean(s[2] for s in first), statistics.mean(s[2] for s in last)
        flat = rss_last <= rss_first * 1.10 + 1024 and fd_last <= fd_first + 5
        if not done:
            raise SystemExit("the load generator failed")
        achieved = done[0]["requests"] / args.duration
        print(f"soak: {args.duration}s at {achieved:.0f} req/s ({done[0]['requests']} requests, all 2xx; "
              f"p99 {done[0]['p99']:.2f} ms); {len(samples)} samples every {args.every}s")
        print(f"RSS {rss_first / 1024:.1f} MiB -> {rss_last / 1024:.1f} MiB; fds {fd_first:.0f} -> {fd_last:.0f}")
        print("memory and descriptors stayed flat" if flat else "NOT FLAT: memory or descriptors grew")
        if not flat:
            raise SystemExit(1)
    finally:
        fleet.stop()

