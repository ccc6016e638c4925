#!/usr/bin/env python3
"""The chart checks behind `make chart-check` (scripts/chart-check installs the tools).

For the default values and each ci/*-values.yaml (full, sentinel, cluster): `helm lint --strict`; `helm template`; the core
objects validated against the Kubernetes schemas in strict mode (kubernetes-validate); the
ServiceMonitor and PrometheusRule against their CRD models (validate-crds.mjs); the rendered
tollgate.yaml loaded by `tollgate check-config` with the rendered Secret as its environment;
the alert rules through `promtool check rules` and the unit tests in alerts.test.yaml; every
dashboard query parsed by promtool, and every tollgate_* metric the alerts and the dashboard
use exported by a running Tollgate. Each alert has a runbook entry in docs/operations.md. For
each Redis mode: the store keys rendered, the ports the NetworkPolicy opens to Redis, the TLS
Secret mounted where the config reads it, and the in-chart Redis on a persistent volume with
an append-only file.
"""

import argparse
import base64
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CHART = os.path.join(ROOT, "charts", "tollgate")
HERE = os.path.dirname(os.path.abspath(__file__))
RELEASE = NAMESPACE = "tollgate"


def run(cmd, **kwargs):
    print("+", " ".join(cmd), flush=True)
    result = subprocess.run(cmd, text=True, capture_output=True, **kwargs)
    if result.returncode != 0:
        sys.stdout.write(result.stdout)
        sys.stderr.write(result.stderr)
        raise SystemExit(f"failed ({result.returncode}): {' '.join(cmd)}")
    return result.stdout


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def exported_metrics(tollgate):
    """Metric families a running Tollgate exports (memory store, no connectors needed)."""
    proxy, admin = free_port(), free_port()
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(
            f"listen: 127.0.0.1:{proxy}\nadmin_listen: 127.0.0.1:{admin}\n"
            'encryption_keys: [{ id: k1, secret: "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=" }]\n'
            'connectors: [{ name: c, token: "t", allowed_domains: ["https://api.example.com/*"] }]\n'
        )
        path = f.name
    process = subprocess.Popen([tollgate, "serve", "--config", path], stdout=subprocess.DEVNULL)
    try:
        deadline = time.time() + 20
        while True:
            try:
                text = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=2).read().decode()
                break
            except OSError:
                if time.time() > deadline:
                    raise SystemExit("tollgate did not serve /metrics")
                time.sleep(0.2)
    finally:
        process.terminate()
        process.wait()
        os.unlink(path)
    families = {}
    for line in text.splitlines():
        m = re.match(r"# TYPE (\S+) (\S+)", line)
        if m:
            families[m.group(1)] = m.group(2)
    return families


def used_metrics(expr, families):
    """tollgate_* metrics an expression reads, each checked against the exported families."""
    missing = []
    for name in set(re.findall(r"\btollgate_[a-z0-9_]+", expr)):
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        if name in families or (base in families and families[base] == "histogram"):
            continue
        missing.append(name)
    return missing


def check_rules(groups, workdir, families, label):
    rules = os.path.join(workdir, "rules.yaml")
    with open(rules, "w") as f:
        yaml.safe_dump({"groups": groups}, f)
    run(["promtool", "check", "rules", rules])
    missing = [m for g in groups for r in g["rules"] for m in used_metrics(r["expr"], families)]
    if missing:
        raise SystemExit(f"{label} use metrics Tollgate does not export: {sorted(set(missing))}")
    return rules


def check_dashboard(dashboard, workdir, families):
    exprs = []

    def walk(panels):
        for panel in panels:
            walk(panel.get("panels", []))
            for target in panel.get("targets", []):
                exprs.append((panel["title"], target["expr"]))

    walk(dashboard["panels"])
    if not exprs:
        raise SystemExit("the dashboard has no queries")
    rules = []
    for i, (title, expr) in enumerate(exprs):
        concrete = expr.replace("$__rate_interval", "5m").replace("$job", ".+").replace("$connector", ".*")
        if "$" in concrete:
            raise SystemExit(f"dashboard panel {title!r}: unknown variable in {expr}")
        rules.append({"record": f"dashboard:panel_{i}", "expr": concrete})
        missing = used_metrics(expr, families)
        if missing:
            raise SystemExit(f"dashboard panel {title!r} uses metrics Tollgate does not export: {missing}")
    path = os.path.join(workdir, "dashboard-rules.yaml")
    with open(path, "w") as f:
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, f)
    run(["promtool", "check", "rules", path])
    print(f"dashboard: {len(exprs)} queries parse, every metric is exported")


REDIS_TLS_DIR = "/etc/tollgate/redis/"


def check_config(docs, tollgate, workdir):
    config = next(d for d in docs if d["kind"] == "ConfigMap" and "tollgate.yaml" in d["data"])
    secret = next((d for d in docs if d["kind"] == "Secret"), None)
    env = {"PATH": os.environ.get("PATH", "")}
    if secret:
        env.update({k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()})
    text = config["data"]["tollgate.yaml"]
    if REDIS_TLS_DIR in text:
        # The Redis TLS Secret's files, as the pod would have them mounted: a CA and a client
        # certificate minted here, so check-config reads and parses real PEM.
        mounted = os.path.join(workdir, "redis-tls") + "/"
        os.makedirs(mounted)
        run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", mounted + "tls.key", "-out", mounted + "tls.crt", "-subj", "/CN=tollgate", "-days", "1"])
        shutil.copy(mounted + "tls.crt", mounted + "ca.crt")
        text = text.replace(REDIS_TLS_DIR, mounted)
    path = os.path.join(workdir, "tollgate.yaml")
    with open(path, "w") as f:
        f.write(text)
    run([tollgate, "check-config", path], env=env)
    return yaml.safe_load(config["data"]["tollgate.yaml"])


# What each values file must render for Redis: the store keys of tollgate.yaml, the ports the
# NetworkPolicy opens to Redis (None: no NetworkPolicy), and whether the in-chart Redis keeps
# its data on a volume.
SCENARIOS = [
    ("default", None, {"mode": None}, None, True),
    ("full", "full-values.yaml", {"mode": "standalone"}, {6379}, False),
    ("sentinel", "sentinel-values.yaml",
     {"mode": "sentinel", "sentinel_password": "${TOLLGATE_SENTINEL_PASSWORD}", "replica_acks": 1,
      "tls": {"ca_file": REDIS_TLS_DIR + "ca.crt"}}, {6380, 26379}, False),
    ("cluster", "cluster-values.yaml",
     {"mode": "cluster", "nodes": ["redis-1.redis.svc:7001", "redis-2.redis.svc:7002"],
      "tls": {"ca_file": REDIS_TLS_DIR + "ca.crt", "cert_file": REDIS_TLS_DIR + "tls.crt",
              "key_file": REDIS_TLS_DIR + "tls.key"}}, {7000, 7001, 7002}, False),
]


def check_redis(docs, store, want_store, want_ports, want_persistent):
    for key, want in want_store.items():
        if store.get(key) != want:
            raise SystemExit(f"store.{key} rendered as {store.get(key)!r}, want {want!r}")
    policy = next((d for d in docs if d["kind"] == "NetworkPolicy" and not d["metadata"]["name"].endswith("-redis")), None)
    if want_ports is not None:
        if not policy:
            raise SystemExit("no NetworkPolicy rendered")
        opened = {p["port"] for rule in policy["spec"]["egress"] for p in rule.get("ports", [])}
        redis_ports = opened - {53, 443}
        if redis_ports != want_ports:
            raise SystemExit(f"NetworkPolicy opens {sorted(redis_ports)} to Redis, want {sorted(want_ports)}")
    redis = next((d for d in docs if d["kind"] == "StatefulSet" and d["metadata"]["name"].endswith("-redis")), None)
    if want_persistent:
        if not redis or not redis["spec"].get("volumeClaimTemplates"):
            raise SystemExit("the in-chart Redis must keep its data on a persistent volume")
        args = redis["spec"]["template"]["spec"]["containers"][0]["args"]
        if args[args.index("--appendonly") + 1] != "yes":
            raise SystemExit("the in-chart Redis must write an append-only file")
    mounts = [m for d in docs if d["kind"] == "Deployment"
              for c in d["spec"]["template"]["spec"]["containers"] for m in c.get("volumeMounts", [])]
    if "tls" in want_store and not any(m["mountPath"] == REDIS_TLS_DIR.rstrip("/") for m in mounts):
        raise SystemExit("the Redis TLS Secret is not mounted where the config reads it")
    print(f"redis: store {', '.join(f'{k}={v!r}' for k, v in want_store.items())}; ports {sorted(want_ports or [])}")


def check_runbook(groups):
    text = open(os.path.join(ROOT, "docs", "operations.md")).read()
    for group in groups:
        for rule in group["rules"]:
            if f"### {rule['alert']}" not in text:
                raise SystemExit(f"alert {rule['alert']} has no runbook entry in docs/operations.md")
            if not rule.get("annotations", {}).get("runbook_url", "").endswith("#" + rule["alert"].lower()):
                raise SystemExit(f"alert {rule['alert']}: runbook_url does not point at its entry")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--helm", required=True)
    parser.add_argument("--tollgate", required=True)
    parser.add_argument("--validate", required=True, help="kubernetes-validate executable")
    parser.add_argument("--kubernetes-version", default="1.35.0")
    args = parser.parse_args()
    families = exported_metrics(args.tollgate)
    print(f"tollgate exports {len(families)} metric families")

    for label, values, want_store, want_ports, want_persistent in SCENARIOS:
        print(f"== values: {label}")
        extra = ["-f", os.path.join(CHART, "ci", values)] if values else []
        run([args.helm, "lint", "--strict", CHART, *extra])
        rendered = run([args.helm, "template", RELEASE, CHART, "-n", NAMESPACE, *extra])
        docs = [d for d in yaml.safe_load_all(rendered) if d]
        workdir = tempfile.mkdtemp(prefix=f"chart-{label}-")
        try:
            core = [d for d in docs if not d["apiVersion"].startswith("monitoring.coreos.com/")]
            custom = [d for d in docs if d["apiVersion"].startswith("monitoring.coreos.com/")]
            core_path = os.path.join(workdir, "core.yaml")
            with open(core_path, "w") as f:
                yaml.safe_dump_all(core, f)
            out = run([args.validate, "--strict", "--quiet", "-k", args.kubernetes_version, core_path])
            if "ERROR" in out:
                sys.stdout.write(out)
                raise SystemExit("core objects do not validate")
            print(f"{len(core)} core objects valid ({', '.join(sorted({d['kind'] for d in core}))})")
            if custom:
                custom_path = os.path.join(workdir, "custom.json")
                with open(custom_path, "w") as f:
                    json.dump(custom, f)
                print(run(["node", os.path.join(HERE, "validate-crds.mjs"), custom_path]), end="")
            store = check_config(docs, args.tollgate, workdir)["store"]
            check_redis(docs, store, want_store, want_ports, want_persistent)
            rule = next((d for d in docs if d["kind"] == "PrometheusRule"), None)
            if rule:
                groups = rule["spec"]["groups"]
                check_runbook(groups)
                check_rules(groups, workdir, families, "alert rules")
                shutil.copy(os.path.join(HERE, "alerts.test.yaml"), workdir)
                print(run(["promtool", "test", "rules", os.path.join(workdir, "alerts.test.yaml")]), end="")
            board = next((d for d in docs if d["kind"] == "ConfigMap" and "tollgate.json" in d["data"]), None)
            if board:
                check_dashboard(json.loads(board["data"]["tollgate.json"]), workdir, families)
            if label == "full" and not (rule and board and custom):
                raise SystemExit("the full values must render the PrometheusRule, ServiceMonitor and dashboard")
        finally:
            shutil.rmtree(workdir)
    print("chart-check: ok")


if __name__ == "__main__":
    main()
