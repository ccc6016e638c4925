"""`users`: many principals, each with their own caller JWT and their own stored token, requests
spread evenly over them (every request names the next user, so a connection changes caller on
every request, as a runtime multiplexing users does). Tokens are brought in through the admin
API (`PUT /admin/connections/...`) and checked by the upstream, which answers 401 unless the
token is that user's. Rows: one user (the same rotating script over one credential), N users
warm (after a pass over all of them), and on Redis N users cold (a cache TTL of 1 ms: every
request reads its token from Redis and decrypts it)."""

import base64
import hashlib
import hmac
import http.client
import json
import os
import statistics
import time

from .common import KEY_B64, OTHER_CPU, PROXY_CPU, Fleet, build_release, free_port, install, log, wrk
from .load import measure
from .peers import redis_standalone, start_tollgate, upstream_nginx

SECRET = "bench-caller-hs256-secret-0123456789abcdef"
ADMIN = "bench-admin-token-0123456789"

# Each request names the next credential of this thread's list ("JWT user" lines). The requests
# are formatted once, before the run: formatting (and collecting) a new string per request made
# wrk's core, shared with the upstream, the bottleneck of the many-users rows, so the table
# measured the load generator's cache misses rather than Tollgate's.
ROTATE_LUA = """
local path, host = os.getenv("BENCH_PATH"), os.getenv("BENCH_HOST")
local requests = {}
for line in io.lines(os.getenv("BENCH_CREDS")) do
  local jwt, user = line:match("(%S+) (%S+)")
  requests[#requests + 1] = wrk.format("GET", path, { ["Host"] = host, ["Proxy-Authorization"] = "Bearer " .. jwt,
                                                      ["X-Bench-User"] = user })
end
local n, i = #requests, 0
function init(args) i = math.random(n) end
function request()
  i = i % n + 1
  return requests[i]
end
"""


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(subject):
    claims = {"sub": subject, "aud": "tollgate", "exp": int(time.time()) + 6 * 3600}
    signing = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "." + b64(json.dumps(claims).encode())
    return signing + "." + b64(hmac.new(SECRET.encode(), signing.encode(), hashlib.sha256).digest())


def upstream(fleet, port):
    """nginx answering /user only with the token of the user the request names (X-Bench-User)."""
    return upstream_nginx(fleet, port, name="users-upstream", locations="""
    location = /user {
      if ($http_authorization != "Bearer user-token-$http_x_bench_user") { return 401 '{"error":"unauthorized"}'; }
      return 200 '{"ok":true}';
    }""")


def config(fleet, name, port, admin, up, redis_url=None, cache_ttl="10m"):
    store = (f'store: {{ backend: redis, redis_url: "{redis_url}", cache_ttl: "{cache_ttl}" }}'
             if redis_url else "store: { backend: memory }")
    return fleet.write(f"{name}.yaml", f"""
listen: 127.0.0.1:{port}
admin_listen: 127.0.0.1:{admin}
admin_tokens: ["{ADMIN}"]
encryption_keys: [{{ id: k1, secret: "{KEY_B64}" }}]
{store}
callers:
  jwt: {{ audience: tollgate, hs256_secret: "{SECRET}" }}
connectors:
  - name: users
    grant: authorization_code
    authorization_endpoint: http://127.0.0.1:{up}/authorize
    token_endpoint: http://127.0.0.1:{up}/token
    client_id: bench
    client_secret: bench-client-secret
    unsafe_allow_http: true
    unsafe_allow_ranges: ["127.0.0.0/8"]
    allowed_domains: ["http://127.0.0.1:{up}/*"]
""")


def import_tokens(admin, users, start=0, step=1):
    """One `PUT /admin/connections/users/user-N` per user (every `step`-th from `start`), on one
    kept-alive connection: the seconds it took."""
    conn = http.client.HTTPConnection("127.0.0.1", admin, timeout=30)
    started = time.perf_counter()
    for i in range(start, users, step):
        conn.request("PUT", f"/admin/connections/users/user-{i}", body=json.dumps({"access_token": f"user-token-{i}"}),
                     headers={"Authorization": f"Bearer {ADMIN}", "Content-Type": "application/json"})
        response = conn.getresponse()
        body = response.read()
        if response.status not in (200, 201):
            raise SystemExit(f"importing user-{i}: {response.status} {body[:200]!r}")
    conn.close()
    return time.perf_counter() - started


def write_creds(fleet, count):
    """A file of "JWT user" lines for users 0..count-1: what the rotation script reads."""
    path = os.path.join(fleet.dir, f"creds-{count}.txt")
    with open(path, "w") as f:
        f.writelines(f"{jwt(f'user-{i}')} {i}\n" for i in range(count))
    return path


def warm_up(fleet, targets, env_for, connections):
    """A pass over every user: tokens cached, every request answered 2xx (the upstream checks
    each user's token)."""
    for label, port, header, auth, path in targets:
        wrk(fleet, port, path, header, auth, 3, connections, lua=ROTATE_LUA, env=env_for(label))


def run_users(args):
    install()
    binary = build_release()
    fleet = Fleet()
    try:
        up = free_port()
        upstream(fleet, up)
        redis, redis_url = redis_standalone(fleet)
        procs, ports, admins = {}, {}, {}
        for name, url, ttl in [("tollgate-memory", None, "10m"), ("tollgate-redis", redis_url, "10m"),
                               ("tollgate-redis-cold", redis_url, "1ms")]:
            ports[name], admins[name] = free_port(), free_port()
            procs[name] = start_tollgate(fleet, binary, name, config(fleet, name, ports[name], admins[name], up, url, ttl),
                                         ports[name])
        # Redis holds one copy for both Redis processes; the memory store its own.
        for name in ["tollgate-memory", "tollgate-redis"]:
            seconds = import_tokens(admins[name], args.users)
            log(f"{name}: {args.users} connections imported in {seconds:.1f} s")
        creds = {"1": write_creds(fleet, 1), "n": write_creds(fleet, args.users)}
        rows = [("memory, 1 user", "tollgate-memory", "1"), ("memory, N users", "tollgate-memory", "n"),
                ("Redis, 1 user", "tollgate-redis", "1"), ("Redis, N users warm", "tollgate-redis", "n"),
                ("Redis, N users cold", "tollgate-redis-cold", "n")]
        targets = [(label, ports[name], "Proxy-Authorization", "", f"http://127.0.0.1:{up}/user") for label, name, _ in rows]
        row_procs = {label: procs[name] for label, name, _ in rows}
        row_creds = {label: creds[which] for label, _, which in rows}
        env_for = lambda label: {"BENCH_CREDS": row_creds[label]}  # noqa: E731
        warm_up(fleet, targets, env_for, args.connections)
        results = measure(fleet, targets, row_procs, args, sizes=("small",), lua=ROTATE_LUA, env_for=env_for)
        report(results, rows, args)
    finally:
        fleet.stop()


def report(results, rows, args):
    med = {label: {k: statistics.median(r[k] for r in results[("small", label)]) for k in ["rps", "p99", "cpu_per_1k", "other_busy"]}
           for label, *_ in rows}
    lines = [f"{args.users:,} users (N), each with their own JWT and stored token; every request the next user. "
             f"{args.rounds} interleaved rounds x {args.duration}s, {args.connections} connections, wrk 1 thread "
             f"running the rotation script (CPU {OTHER_CPU}); Tollgate on CPU {PROXY_CPU}, one worker. Medians.", "",
             "| row | req/s | p99 ms | CPU s / 1k req | Tollgate's core busy | wrk/upstream core busy | req/s vs 1 user (same store) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for label, name, _ in rows:
        base = med["memory, 1 user" if "memory" in label else "Redis, 1 user"]["rps"]
        m = med[label]
        busy = m["cpu_per_1k"] * m["rps"] / 1000
        lines.append(f"| {label} | {m['rps']:.0f} | {m['p99']:.3f} | {m['cpu_per_1k']:.4f} | {busy:.0%} | "
                     f"{m['other_busy']:.0%} | {m['rps'] / base:.2f} |")
    warm_mem = med["memory, N users"]["rps"] / med["memory, 1 user"]["rps"]
    warm_redis = med["Redis, N users warm"]["rps"] / med["Redis, 1 user"]["rps"]
    cold = med["Redis, N users cold"]["rps"] / med["Redis, N users warm"]["rps"]
    lines += ["", f"- warm within 10% of one user (budget: at least 0.90x): memory {warm_mem:.2f}x, Redis "
                  f"{warm_redis:.2f}x: {'met' if min(warm_mem, warm_redis) >= 0.9 else 'MISSED'}",
              f"- cold on Redis over warm (budget: at least 0.50x): {cold:.2f}x: {'met' if cold >= 0.5 else 'MISSED'}"]
    print("\n".join(lines))
