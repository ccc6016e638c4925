"""The peers and the upstream: nginx, HAProxy, Envoy and Tollgate configured for the same work
(inject the bearer token the upstream demands), and a Redis Cluster."""

import hashlib
import json
import os
import subprocess
import time

from .common import (CALLER_KEY, KEY_B64, OTHER_CPU, PROXY_CPU, TOKEN, free_port, sbin)

# The name the TLS upstream's certificate carries (with 127.0.0.1 and ::1), and every peer checks.
TLS_NAME = "localhost"


def upstream_nginx(fleet, port, tls=None, name="upstream", locations=None):
    """The upstream: 401 without the expected bearer token; /small, /large (16 KiB), /token
    (or the `locations` given). With `tls` (certificate and key files): HTTPS only, on
    127.0.0.1 and ::1 (the name it is reached by, `localhost`, may resolve to either), with a
    session cache and tickets."""
    listen = f"listen 127.0.0.1:{port} reuseport backlog=4096;"
    if tls:
        listen = (f"listen 127.0.0.1:{port} ssl reuseport backlog=4096; listen [::1]:{port} ssl reuseport;\n"
                  f"    ssl_certificate {tls[0]}; ssl_certificate_key {tls[1]};\n"
                  "    ssl_protocols TLSv1.2 TLSv1.3; ssl_session_cache shared:up:10m; ssl_session_tickets on;")
    large = fleet.write("large.json", json.dumps({"data": "x" * (16 * 1024 - 12)}))
    locations = locations or f"""
    location = /small {{
      if ($http_authorization != "Bearer {TOKEN}") {{ return 401 '{{"error":"unauthorized"}}'; }}
      return 200 '{{"ok":true}}';
    }}
    location = /large {{
      if ($http_authorization != "Bearer {TOKEN}") {{ return 401 '{{"error":"unauthorized"}}'; }}
      alias {large};
    }}
    location = /token {{
      return 200 '{{"access_token":"{TOKEN}","token_type":"Bearer","expires_in":86400}}';
    }}"""
    conf = fleet.write(f"{name}.conf", f"""
worker_processes 1;
daemon off;
pid {fleet.dir}/{name}.pid;
error_log {fleet.dir}/{name}-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  default_type application/json;
  server {{
    {listen}
    {locations}
  }}
}}
""")
    return fleet.start(name, [sbin("nginx"), "-c", conf, "-p", fleet.dir], OTHER_CPU, port=port)


def peer_nginx(fleet, port, up, ca=None, connections=4096, name="nginx", access_log=False, start=None):
    """`ca`: the upstream speaks TLS; verify it against this CA and the name TLS_NAME, reuse
    sessions and keep connections alive (the same work Tollgate does). `access_log`: a JSON
    line per request, buffered and flushed every 20 ms as Tollgate writes its audit lines.
    `start(name, command)`: how to start it instead (under a profiler, say), when nginx runs
    without its master process, so that the one process there is serves."""
    scheme, tls = "http", ""
    if ca:
        scheme = "https"
        tls = (f"proxy_ssl_verify on; proxy_ssl_trusted_certificate {ca}; proxy_ssl_name {TLS_NAME};\n"
               "      proxy_ssl_server_name on; proxy_ssl_session_reuse on; proxy_ssl_protocols TLSv1.2 TLSv1.3;")
    log = (f"""log_format audit escape=json '{{"time":"$time_iso8601","request_id":"$request_id",'
    '"client":"$remote_addr","method":"$request_method","host":"$host","path":"$uri","status":$status,'
    '"duration":$request_time}}';
  access_log {fleet.dir}/{name}-access.log audit buffer=64k flush=20ms;""" if access_log else "access_log off;")
    conf = fleet.write(f"{name}.conf", f"""
worker_processes 1;
daemon off;
{"master_process off;" if start else ""}
pid {fleet.dir}/{name}.pid;
error_log {fleet.dir}/{name}-error.log warn;
worker_rlimit_nofile {connections + 64};
events {{ worker_connections {connections}; }}
http {{
  {log}
  keepalive_requests 1000000;
  upstream up {{ server 127.0.0.1:{up}; keepalive 128; }}
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location / {{
      proxy_pass {scheme}://up;
      {tls}
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Proxy-Authorization "";
      proxy_set_header Authorization "Bearer {TOKEN}";
      proxy_buffering off;
    }}
  }}
}}
""")
    command = [sbin("nginx"), "-c", conf, "-p", fleet.dir]
    if start:
        return start(name, command)
    return fleet.start(name, command, PROXY_CPU, port=port)


def peer_haproxy(fleet, port, up, ca=None):
    tls = f" ssl verify required ca-file {ca} sni str({TLS_NAME}) verifyhost {TLS_NAME}" if ca else ""
    conf = fleet.write("haproxy.cfg", f"""
global
  nbthread 1
  maxconn 8192
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  http-reuse always
frontend proxy
  bind 127.0.0.1:{port}
  http-request del-header Proxy-Authorization
  http-request set-header Authorization "Bearer {TOKEN}"
  default_backend up
backend up
  server up 127.0.0.1:{up}{tls}
""")
    return fleet.start("haproxy", [sbin("haproxy"), "-f", conf, "-db"], PROXY_CPU, port=port)


def peer_envoy(fleet, envoy, port, up, ca=None):
    cluster = {
        "name": "up", "type": "STATIC", "connect_timeout": "5s",
        "load_assignment": {"cluster_name": "up", "endpoints": [{"lb_endpoints": [{"endpoint": {
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": up}}}}]}]},
    }
    if ca:
        cluster["transport_socket"] = {"name": "envoy.transport_sockets.tls", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "sni": TLS_NAME,
            "common_tls_context": {"validation_context": {
                "trusted_ca": {"filename": ca},
                "match_typed_subject_alt_names": [{"san_type": "DNS", "matcher": {"exact": TLS_NAME}}]}}}}
    conf = fleet.write("envoy.yaml", json.dumps({
        "static_resources": {
            "listeners": [{
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                        "stat_prefix": "bench",
                        "http_protocol_options": {"allow_absolute_url": True},
                        "route_config": {"virtual_hosts": [{
                            "name": "all", "domains": ["*"],
                            "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "up"}}],
                            "request_headers_to_remove": ["proxy-authorization"],
                            "request_headers_to_add": [{
                                "header": {"key": "authorization", "value": f"Bearer {TOKEN}"},
                                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}],
                        }]},
                        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
                    }}]}],
            }],
            "clusters": [cluster],
        }}))
    return fleet.start("envoy", [envoy, "-c", conf, "--concurrency", "1", "--log-level", "error",
                                 "--base-id", str(port)], PROXY_CPU, port=port)


def tollgate_config(fleet, name, port, admin, up, redis_url=None, extra="", cache_ttl="30s", mode="standalone",
                    origin=None):
    """`origin`: the upstream's scheme://host:port when it is not plain http on 127.0.0.1 (the
    token endpoint and the allowed domain are both under it)."""
    origin = origin or f"http://127.0.0.1:{up}"
    store = (f'store: {{ backend: redis, mode: {mode}, redis_url: "{redis_url}", cache_ttl: "{cache_ttl}" }}'
             if redis_url else "store: { backend: memory }")
    sha = hashlib.sha256(CALLER_KEY.encode()).hexdigest()
    return fleet.write(f"{name}.yaml", f"""
listen: 127.0.0.1:{port}
admin_listen: 127.0.0.1:{admin}
admin_tokens: ["bench-admin-token-0123456789"]
encryption_keys: [{{ id: k1, secret: "{KEY_B64}" }}]
{store}
callers:
  api_keys:
    - {{ name: bench, sha256: {sha}, connectors: [bench] }}
{extra}
connectors:
  - name: bench
    grant: client_credentials
    token_endpoint: {origin}/token
    client_id: bench
    client_secret: bench-client-secret
    unsafe_allow_http: true
    unsafe_allow_ranges: ["127.0.0.0/8", "::1/128"]
    allowed_domains: ["{origin}/*"]
""")


def start_tollgate(fleet, binary, name, config, port, cpu=PROXY_CPU, log="error", env=None):
    """`log`: TOLLGATE_LOG; at `info` every request writes its audit line (to a file here).
    `env`: more of its environment."""
    env = {"TOKIO_WORKER_THREADS": "1", "TOLLGATE_LOG": log, **(env or {})}
    return fleet.start(name, [binary, "serve", "--config", config], cpu, env=env, port=port)


def redis_standalone(fleet):
    """A Redis server without persistence on CPU 1: (process, URL)."""
    port = free_port()
    proc = fleet.start("redis", ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                 "--appendonly", "no"], OTHER_CPU, port=port)
    return proc, f"redis://127.0.0.1:{port}"


def redis_cluster(fleet, masters):
    """A Redis Cluster of `masters` nodes on CPU 1 (no replicas): the seed URL."""
    nodes = []
    for _ in range(masters):
        port = free_port()
        fleet.start(f"redis-cluster-{port}", [
            "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--cluster-enabled", "yes", "--cluster-port", str(free_port()), "--dir", fleet.dir,
            "--cluster-config-file", os.path.join(fleet.dir, f"nodes-{port}.conf")], OTHER_CPU, port=port)
        nodes.append(f"127.0.0.1:{port}")
    subprocess.run(["redis-cli", "--cluster", "create", *nodes, "--cluster-replicas", "0", "--cluster-yes"],
                   check=True, capture_output=True, timeout=60)
    deadline = time.time() + 30
    while time.time() < deadline:
        infos = [subprocess.run(["redis-cli", "-p", n.split(":")[1], "cluster", "info"], capture_output=True,
                                text=True).stdout for n in nodes]
        if all("cluster_state:ok" in i and f"cluster_known_nodes:{masters}" in i for i in infos):
            return f"redis://{nodes[0]}"
        time.sleep(0.2)
    raise SystemExit("the Redis Cluster did not settle in 30 s")

