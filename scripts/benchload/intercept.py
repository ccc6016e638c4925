"""`intercept`: CONNECT interception. Unmodified SDKs send `CONNECT` through `HTTPS_PROXY`; the
proxy terminates TLS with a certificate it mints for the host, injects the bearer token and
originates TLS to the HTTPS upstream. Peers doing the same work: Squid with ssl-bump (Debian's
squid-openssl) and mitmproxy (PyPI), each adding the same Authorization header. The client is
benches/tunnel_load.rs, in two shapes: many requests kept alive in one tunnel per connection,
and one new tunnel (TCP, CONNECT, TLS handshake) per request, resumed where the proxy offers
it or always full."""

import json
import os
import pwd
import resource
import statistics
import subprocess
import urllib.request

from .common import (CALLER_KEY, OTHER_CPU, PROXY_CPU, TOKEN, Fleet, build_bench, build_release, core_busy_ticks, free_port,
                     log, pip_tool, tree_cpu_seconds, wait_port)
from .peers import TLS_NAME
from .tls import make_ca, tls_upstream, tollgate_tls

MITMPROXY_VERSION = "11.0.2"
SQUID_CERTGEN = "/usr/lib/squid/security_file_certgen"
# (shape, concurrent connections). 8 tunnels at a time in the per-tunnel shapes: the client's
# session cache holds 8 TLS 1.3 tickets per server, so more would turn some resumptions into
# full handshakes for every proxy alike; per-tunnel-full turns resumption off altogether.
SHAPES = [("keepalive", 32), ("per-tunnel", 8), ("per-tunnel-full", 8)]


def install_peers():
    """squid-openssl (Debian) and mitmproxy (PyPI, in .tools/mitmproxy-venv); the path of mitmdump."""
    if not os.path.exists(SQUID_CERTGEN):
        log("installing squid-openssl")
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "squid-openssl"], check=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    return os.path.join(pip_tool("mitmproxy-venv", "mitmproxy", MITMPROXY_VERSION, "mitmdump"), "bin", "mitmdump")


def peer_squid(fleet, port, upstream_ca):
    """Squid 5 bumping every tunnel (client-first: the certificate names the CONNECT host),
    certificates minted by security_file_certgen and kept in memory, no caching."""
    ca_cert, ca_key = make_ca(fleet, "squid-ca")
    home = os.path.join(fleet.dir, "squid")
    os.makedirs(home)
    subprocess.run([SQUID_CERTGEN, "-c", "-s", os.path.join(home, "ssl_db"), "-M", "16MB"], check=True,
                   capture_output=True)
    proxy_user = pwd.getpwnam("proxy")
    for dirpath, _, files in os.walk(home):
        for path in [dirpath, *(os.path.join(dirpath, f) for f in files)]:
            os.chown(path, proxy_user.pw_uid, proxy_user.pw_gid)
    conf = fleet.write("squid.conf", f"""
http_port 127.0.0.1:{port} ssl-bump tls-cert={ca_cert} tls-key={ca_key} generate-host-certificates=on dynamic_cert_mem_cache_size=16MB
sslcrtd_program {SQUID_CERTGEN} -s {home}/ssl_db -M 16MB
sslcrtd_children 4 startup=1 idle=1
ssl_bump bump all
tls_outgoing_options cafile={upstream_ca}
request_header_access Proxy-Authorization deny all
request_header_add Authorization "Bearer {TOKEN}" all
http_access allow all
cache deny all
cache_effective_user proxy
pid_filename {home}/squid.pid
cache_log {home}/cache.log
access_log none
coredump_dir {home}
shutdown_lifetime 1 second
""")
    proc = fleet.start("squid", ["/usr/sbin/squid", "-N", "-f", conf], PROXY_CPU, port=port)
    return proc, ca_cert


def peer_mitmproxy(fleet, mitmdump, port, upstream_ca):
    """mitmdump with an addon that sets the Authorization header; its CA is made on first start."""
    confdir = os.path.join(fleet.dir, "mitmproxy")
    addon = fleet.write("mitm_addon.py", f"""
def request(flow):
    flow.request.headers.pop("proxy-authorization", None)
    flow.request.headers["authorization"] = "Bearer {TOKEN}"
""")
    proc = fleet.start("mitmproxy", [mitmdump, "-q", "--listen-host", "127.0.0.1", "--listen-port", str(port),
                                     "--set", f"confdir={confdir}", "--set", f"ssl_verify_upstream_trusted_ca={upstream_ca}",
                                     "-s", addon], PROXY_CPU, port=port)
    return proc, os.path.join(confdir, "mitmproxy-ca-cert.pem")


def tunnel_load(client, port, ca, up, size, shape, connections, seconds):
    out = subprocess.run(["taskset", "-c", OTHER_CPU, client, "--proxy", f"127.0.0.1:{port}",
                          "--target", f"{TLS_NAME}:{up}", "--ca", ca, "--auth", f"Bearer {CALLER_KEY}",
                          "--path", f"/{size}", "--connections", str(connections), "--seconds", str(seconds),
                          "--shape", shape], capture_output=True, text=True, timeout=seconds + 60)
    if out.returncode != 0:
        raise SystemExit(f"tunnel_load against {port} failed: {out.stderr}")
    r = json.loads(out.stdout)
    if r["errors"] or not r["requests"]:
        raise SystemExit(f"tunnel_load against {port} ({shape}, /{size}): {r['errors']} errors, "
                         f"first: {r['first_error']}")
    return r


def children_cpu_seconds():
    """CPU time of the children this script has waited for: the client runs, one at a time."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_intercept(args):
    mitmdump = install_peers()
    binary = build_release()
    client = build_bench("tunnel_load")
    fleet = Fleet()
    try:
        up, upstream_ca = tls_upstream(fleet)
        procs, cas, ports = {}, {}, {}
        ports["tollgate"], admin, procs["tollgate"] = tollgate_tls(fleet, binary, "tollgate", up, upstream_ca)
        wait_port(admin)
        cas["tollgate"] = fleet.write("tollgate-ca.pem",
                                      urllib.request.urlopen(f"http://127.0.0.1:{admin}/ca.pem", timeout=10).read().decode())
        ports["squid"], ports["mitmproxy"] = free_port(), free_port()
        procs["squid"], cas["squid"] = peer_squid(fleet, ports["squid"], upstream_ca)
        procs["mitmproxy"], cas["mitmproxy"] = peer_mitmproxy(fleet, mitmdump, ports["mitmproxy"], upstream_ca)
        names = ["tollgate", "squid", "mitmproxy"]
        for name in names:  # warm-up: tokens, minted certificates, every path answering 2xx
            for shape, _ in SHAPES:
                tunnel_load(client, ports[name], cas[name], up, "small", shape, 4, 1)
        results = {}
        for round_ in range(args.rounds):
            for shape, connections in SHAPES:
                for size in ["small", "large"]:
                    for name in names:
                        before, client_before = tree_cpu_seconds(procs[name].pid), children_cpu_seconds()
                        busy_before = core_busy_ticks(OTHER_CPU)
                        r = tunnel_load(client, ports[name], cas[name], up, size, shape, connections, args.duration)
                        r["cpu_per_1k"] = (tree_cpu_seconds(procs[name].pid) - before) / r["requests"] * 1000
                        r["client_per_1k"] = (children_cpu_seconds() - client_before) / r["requests"] * 1000
                        busy_after = core_busy_ticks(OTHER_CPU)
                        r["other_busy"] = (busy_after[0] - busy_before[0]) / max(busy_after[1] - busy_before[1], 1)
                        results.setdefault((shape, size, name), []).append(r)
                        log(f"round {round_ + 1} {shape:10} {size:5} {name:10} {r['rps']:9.0f} req/s  "
                            f"p50 {r['p50_ms']:.3f} ms  p99 {r['p99_ms']:.3f} ms  "
                            f"resumed {r['resumed']}/{r['handshakes']}")
        report(results, names, args)
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=10).read().decode()
        counters = {line.split()[0]: float(line.split()[1]) for line in metrics.splitlines()
                    if line.startswith("tollgate_tunnel_")}
        handshakes = {k.split('"')[1]: int(v) for k, v in counters.items() if k.startswith("tollgate_tunnel_handshakes")}
        print(f"Tollgate over the whole run: {sum(handshakes.values())} TLS handshakes in tunnels "
              f"({handshakes.get('resumed', 0)} resumed, {handshakes.get('failed', 0)} failed), "
              f"{int(counters.get('tollgate_tunnel_certificates_minted_total', 0))} certificate(s) minted "
              f"(tollgate_tunnel_handshakes_total, tollgate_tunnel_certificates_minted_total).")
    finally:
        fleet.stop()


def report(results, names, args):
    lines = [f"{args.rounds} interleaved rounds x {args.duration}s; client benches/tunnel_load.rs (one thread, "
             f"CPU {OTHER_CPU}, with the upstream); proxies on CPU {PROXY_CPU}. Medians.", ""]
    for shape, connections in SHAPES:
        for size, label in [("small", "11 B"), ("large", "16 KiB")]:
            lines += [f"### CONNECT, {shape} ({connections} connections), {label} answers", "",
                      "| proxy | req/s | p50 ms | p99 ms | CPU s / 1k req | client CPU s / 1k req "
                      f"| CPU {OTHER_CPU} busy | TLS handshakes resumed "
                      "| Tollgate's req/s over this peer's, round by round |",
                      "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
            ours = [r["rps"] for r in results[(shape, size, "tollgate")]]
            for name in names:
                runs = results[(shape, size, name)]
                med = {k: statistics.median(r[k] for r in runs)
                       for k in ["rps", "p50_ms", "p99_ms", "cpu_per_1k", "client_per_1k", "other_busy"]}
                handshakes, resumed = sum(r["handshakes"] for r in runs), sum(r["resumed"] for r in runs)
                paired = ("-" if name == "tollgate" else
                          ", ".join(f"{o / r['rps']:.2f}" for o, r in zip(ours, runs)))
                lines.append(f"| {name} | {med['rps']:.0f} | {med['p50_ms']:.3f} | {med['p99_ms']:.3f} "
                             f"| {med['cpu_per_1k']:.4f} | {med['client_per_1k']:.4f} | {med['other_busy'] * 100:.0f}% "
                             f"| {resumed}/{handshakes} | {paired} |")
            best = max(statistics.median(r["rps"] for r in results[(shape, size, n)]) for n in names[1:])
            ratio = statistics.median(ours) / best
            lines += ["", f"- Tollgate over the best peer: {ratio:.2f}x (budget: at least 2x): "
                          f"{'met' if ratio >= 2 else 'MISSED'}", ""]
    print("\n".join(lines))
