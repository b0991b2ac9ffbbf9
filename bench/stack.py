"""The production stack of one machine, started by a bench for itself:
PostgreSQL (a throwaway cluster of its own, run as the postgres user, with
PostgreSQL's defaults: autovacuum on, as a deployment's server has it),
Redis (its own server, as docker-compose starts it), gunicorn behind a
reverse proxy (nginx, where docker-compose has Caddy), and what a
deployment runs beside them: a Celery worker and Celery beat (the activity
flush, the release of expired leases, the fold of the report days' queued
sessions...).

Its own servers keep a bench's figures apart from whatever else the machine's
shared PostgreSQL and Redis serve (their statistics, checkpoints, settings),
and let a bench choose their settings without touching anyone else's.
The CPU is still shared: `Usage` tells the stack's share from the rest.
"""

import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
# The server binaries of the newest PostgreSQL installed (Debian keeps them per version).
PG_BINS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda path: int(path.parent.name))
PG_BIN = PG_BINS[-1] if PG_BINS else Path("/nonexistent")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _as_postgres(*command) -> None:
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    result = subprocess.run([*prefix, *map(str, command)], capture_output=True, text=True, timeout=120)
    if result.returncode:
        raise RuntimeError(f"{command[0]} failed: {result.stderr}")


class Postgres:
    """A throwaway cluster on a loopback port: `settings` are its -c options
    (e.g. {"autovacuum": "off"}); everything else is PostgreSQL's default."""

    def __init__(self, database: str, settings: dict[str, str] | None = None):
        if not (PG_BIN / "initdb").exists():
            sys.exit("PostgreSQL's server binaries are needed (apt-get install -y postgresql)")
        self.dir = Path(tempfile.mkdtemp(prefix="emailtrack-bench-pg-"))
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        self.data = self.dir / "data"
        self.log = self.dir / "log"
        self.port = free_port()
        self.database = database
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/{database}"
        # Checkpoints and autovacuum runs in the log, for a bench to point at.
        self.settings = {"log_checkpoints": "on", "log_autovacuum_min_duration": "0", **(settings or {})}

    def start(self) -> "Postgres":
        _as_postgres(PG_BIN / "initdb", "-D", self.data, "-A", "trust", "-U", "postgres", "--no-sync")
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1"
        options += "".join(f" -c {name}={value}" for name, value in self.settings.items())
        _as_postgres(PG_BIN / "pg_ctl", "-D", self.data, "-l", self.log, "-o", options, "-w", "start")
        _as_postgres(PG_BIN / "createdb", "-h", "127.0.0.1", "-p", self.port, "-U", "postgres", self.database)
        return self

    def postmaster_pid(self) -> int:
        return int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])

    def stop(self) -> None:
        try:
            _as_postgres(PG_BIN / "pg_ctl", "-D", self.data, "stop", "-m", "fast")
        except (RuntimeError, subprocess.TimeoutExpired):
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


class Redis:
    """A Redis server of its own, as docker-compose runs it (no persistence)."""

    def __init__(self):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = None

    def start(self) -> "Redis":
        command = ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no"]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        stop(self.process)


def gunicorn(env: dict, port: int, workers: int) -> subprocess.Popen:
    """gunicorn on config.wsgi, sync workers as the image runs them (but no
    --max-requests: a soak watches the same workers' memory)."""
    command = [str(BIN / "gunicorn"), "config.wsgi:application", "-b", f"127.0.0.1:{port}", "-w", str(workers)]
    process = subprocess.Popen([*command, "--log-level", "warning"], cwd=ROOT, env=env)
    for _ in range(200):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/ping", timeout=1)
            return process
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("gunicorn did not answer")


NGINX = """
worker_processes 1;
pid {dir}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_requests 1000000;
    upstream app {{ server 127.0.0.1:{upstream}; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://app;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $remote_addr;
        }}
    }}
}}
"""


class Proxy:
    """nginx in front of gunicorn, as a deployment has a reverse proxy there
    (Caddy in docker-compose): it keeps the clients' connections open and
    hands gunicorn's sync workers only whole requests. Without it, a client
    that connects and waits before sending (a paced load generator) holds a
    worker for the wait: gunicorn's docs ask for a buffering proxy in front of
    sync workers for the same reason."""

    def __init__(self, upstream: int):
        self.dir = Path(tempfile.mkdtemp(prefix="emailtrack-bench-proxy-"))
        self.dir.chmod(0o777)  # nginx's workers run as nobody
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        (self.dir / "nginx.conf").write_text(NGINX.format(dir=self.dir, upstream=upstream, port=self.port))
        self.process = None

    def start(self) -> "Proxy":
        if not shutil.which("nginx"):
            sys.exit("nginx is needed: apt-get install -y nginx-light")
        conf, log = self.dir / "nginx.conf", self.dir / "error.log"
        command = ["nginx", "-p", str(self.dir), "-c", str(conf), "-e", str(log), "-g", "daemon off;"]
        self.process = subprocess.Popen(command)
        for _ in range(100):
            try:
                urllib.request.urlopen(self.url + "/api/v1/ping", timeout=1)
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"nginx did not answer: {log.read_text() if log.exists() else ''}")

    def stop(self) -> None:
        stop(self.process)
        shutil.rmtree(self.dir, ignore_errors=True)


def celery(env: dict, concurrency: int = 2) -> list[subprocess.Popen]:
    """A Celery worker and Celery beat, as docker-compose runs them."""
    celery_bin = str(BIN / "celery")
    worker = [celery_bin, "-A", "config", "worker", "-l", "warning", "--concurrency", str(concurrency)]
    beat = [celery_bin, "-A", "config", "beat", "-l", "warning"]
    return [subprocess.Popen(command, cwd=ROOT, env=env) for command in (worker, beat)]


def stop(process: subprocess.Popen | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid`."""
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry))
    return found


def rss_mib(pid: int) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
    return None


def _ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


def _machine() -> tuple[int, int]:
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields), fields[3] + fields[4]


class Usage:
    """CPU seconds used between two readings by each part of the stack (a
    part: its processes and their children), by the load generator (the
    bench's own finished child processes) and by everything else on the
    machine, and the machine's idle share. Short-lived processes of a part
    that ended between the readings are not counted."""

    TICK = os.sysconf("SC_CLK_TCK")

    def __init__(self, parts: dict[str, list[int]]):
        self.parts = parts
        self.last = self._read()

    def _read(self) -> dict:
        reading = {}
        for name, roots in self.parts.items():
            pids = {pid for root in roots for pid in [root, *children(root)]}
            reading[name] = {pid: _ticks(pid) for pid in pids}
        reading["load generator"] = resource.getrusage(resource.RUSAGE_CHILDREN)
        reading["machine"] = _machine()
        return reading

    def take(self) -> dict[str, float]:
        now, last = self._read(), self.last
        self.last = now
        used = {}
        for name in self.parts:
            used[name] = sum(t - last[name].get(pid, 0) for pid, t in now[name].items()) / self.TICK
        a, b = now["load generator"], last["load generator"]
        used["load generator"] = (a.ru_utime + a.ru_stime) - (b.ru_utime + b.ru_stime)
        (total, idle), (total0, idle0) = now["machine"], last["machine"]
        busy = (total - total0 - (idle - idle0)) / self.TICK
        used["others"] = max(0.0, busy - sum(used.values()))
        used["idle share"] = (idle - idle0) / max(1, total - total0)
        return used
