"""`tls`: every real API is HTTPS, so the upstream serves TLS with a test CA and each proxy
originates TLS to it: nginx (`proxy_pass https://`, verified, sessions reused, kept alive),
HAProxy (`ssl verify required`), Envoy (UpstreamTlsContext) and Tollgate's forward mode
(absolute-form `https://` targets, `upstream.extra_ca_file`)."""

import os
import subprocess

from .common import CALLER_KEY, TOKEN, Fleet, build_release, free_port, install
from .load import measure, report, warm_up
from .peers import TLS_NAME, peer_envoy, peer_haproxy, peer_nginx, start_tollgate, tollgate_config, upstream_nginx


def make_ca(fleet, name):
    """A P-256 CA: (certificate, key) files."""
    cert, key = os.path.join(fleet.dir, f"{name}.pem"), os.path.join(fleet.dir, f"{name}.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", key, "-out", cert, "-days", "2", "-subj", f"/CN=Tollgate bench {name}",
                    "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
                   check=True, capture_output=True)
    os.chmod(key, 0o644)  # nginx and Squid workers run as another user; the key is a throwaway
    return cert, key


def make_leaf(fleet, ca):
    """A P-256 server certificate for TLS_NAME, 127.0.0.1 and ::1, signed by `ca`."""
    cert, key, csr = (os.path.join(fleet.dir, f"upstream-tls.{ext}") for ext in ["pem", "key", "csr"])
    ext = fleet.write("upstream-tls.ext", f"subjectAltName=DNS:{TLS_NAME},IP:127.0.0.1,IP:::1\n"
                                          "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
    subprocess.run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", key, "-out", csr, "-subj", f"/CN={TLS_NAME}"], check=True, capture_output=True)
    subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
                    "-out", cert, "-days", "2", "-extfile", ext], check=True, capture_output=True)
    os.chmod(key, 0o644)
    return cert, key


def tls_upstream(fleet):
    """The HTTPS upstream: (port, CA file the peers verify it with)."""
    ca = make_ca(fleet, "upstream-ca")
    up = free_port()
    upstream_nginx(fleet, up, tls=make_leaf(fleet, ca))
    return up, ca[0]


def tollgate_tls(fleet, binary, name, up, ca):
    """Tollgate (memory store) whose connector's upstream is the HTTPS one: (port, admin port, process)."""
    port, admin = free_port(), free_port()
    config = tollgate_config(fleet, name, port, admin, up, origin=f"https://{TLS_NAME}:{up}",
                             extra=f"upstream: {{ extra_ca_file: {ca} }}")
    return port, admin, start_tollgate(fleet, binary, name, config, port)


def run_tls(args):
    envoy = install()
    binary = build_release()
    fleet = Fleet()
    try:
        up, ca = tls_upstream(fleet)
        ports = {name: free_port() for name in ["nginx", "haproxy", "envoy"]}
        procs = {
            "nginx": peer_nginx(fleet, ports["nginx"], up, ca=ca),
            "haproxy": peer_haproxy(fleet, ports["haproxy"], up, ca=ca),
            "envoy": peer_envoy(fleet, envoy, ports["envoy"], up, ca=ca),
        }
        ports["tollgate"], _, procs["tollgate"] = tollgate_tls(fleet, binary, "tollgate", up, ca)
        origin = f"https://{TLS_NAME}:{up}"
        targets = [("direct", up, "Authorization", f"Bearer {TOKEN}", "/{size}", origin)]
        for name in ["nginx", "haproxy", "envoy", "tollgate"]:
            targets.append((name, ports[name], "Proxy-Authorization", f"Bearer {CALLER_KEY}", f"{origin}/{{size}}"))
        warm_up(fleet, targets)
        print("TLS upstream (HTTPS with a test CA, ECDSA P-256; each proxy verifies it and keeps connections "
              "alive); requests in absolute form `https://...` to the proxies.\n")
        report(measure(fleet, targets, procs, args), targets, args, ours=["tollgate"])
    finally:
        fleet.stop()
