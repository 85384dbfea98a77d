"""The process supervisor of distributed mode (design.md §3): `Cluster`, used by the command line
(`deploy/distributed.py`) and the e2e tests.

Runs the migrations on PostgreSQL, starts the six services as separate processes
(`python -m services.<name>.main`, each on its own loopback port, `EDT_CONSUMERS_<STAGE>` processes per
stage) on RabbitMQ, and nginx in front of them on EDT_HOST:EDT_PORT with the routing of
`deploy/nginx.conf.template` — the same as docker-compose's proxy — so that clients see the whole
contract at one base URL, exactly as in embedded mode.

Layout under the data directory (EDT_DATA_DIR, default ./.edt-import, made absolute):
  run/<instance>.pid, run/nginx.pid   pids (`validator-2` for a stage's second consumer process)
  logs/<instance>.log, logs/nginx.log   each process's stdout and stderr
  nginx/nginx.conf, nginx/logs, nginx/tmp   the rendered proxy configuration and its working files
  blobs/ (EDT_BLOB_DIR unless set)      the blob store shared by every service

Settings read from the environment besides the services' own EDT_*:
  EDT_SERVICE_BASE_PORT  first service port (default EDT_PORT + 100; 0 = any free ports)
  EDT_CONSUMERS_VALIDATOR / _THRESHOLDS / _RECONCILER / _SCHEDULER / _NOTIFIER  processes per stage (1)
  EDT_START_TIMEOUT      seconds to wait for every service and nginx to answer (default 60)
  EDT_NGINX              the nginx binary (default: nginx on PATH, else /usr/sbin/nginx)

A process that dies by itself is started again with backoff (`Cluster.revive`, logged; the command line
calls it twice a second). Tests use `Cluster` (start / stop / kill / restart / revive / base_url / pids);
see tests/e2e/conftest.py. The proxy's
configuration is rendered by `deploy/nginx.py`.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from deploy.nginx import SERVICES, render_nginx_conf
from shared.blobs import generate_key

SCALABLE = ("validator", "thresholds", "reconciler", "scheduler", "notifier")  # EDT_CONSUMERS_<NAME>
NGINX = "nginx"
GATEWAY = "notifier"  # answers the product's /healthz, /readyz, /openapi.json and /docs behind nginx
DEFAULT_DATABASE_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
DEFAULT_BROKER_URL = "amqp://guest:guest@127.0.0.1:5672/"
REPO_ROOT = Path(__file__).resolve().parents[1]
LOG_TAIL_LINES = 40
# A process that died by itself is started again after 1 s, then 2, 4… up to 30 s while it keeps dying
# within a minute of its start; one that ran longer than that starts again after 1 s.
REVIVE_FIRST_S = 1.0
REVIVE_MAX_S = 30.0
REVIVE_STABLE_S = 60.0


class ClusterError(RuntimeError):
    """The cluster could not start (or a process failed); the message names the culprit and its log."""


# --- helpers ----------------------------------------------------------------------------------------

def _env_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ClusterError(f"{name}={raw!r} is not an integer") from None


def _env_float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ClusterError(f"{name}={raw!r} is not a number") from None


def redact(url: str) -> str:
    """A URL without its password, for messages."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_is_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def tcp_reachable(host: str, port: int, timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _kept_secret(path: Path, make: Callable[[], str]) -> str:
    """A secret generated once and kept (mode 600) in the data dir, so that it survives restarts."""
    if path.exists() and (value := path.read_text().strip()):
        return value
    value = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(value + "\n")
    path.chmod(0o600)
    return value


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never via a proxy


def http_status(url: str, timeout: float = 2.0) -> int | None:
    """The HTTP status of GET url, None when nothing answers."""
    try:
        with _OPENER.open(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (OSError, ValueError):
        return None


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            data = f.read().decode("utf-8", "replace")
    except OSError:
        return "(no log)"
    return "\n".join(data.splitlines()[-lines:]) or "(empty log)"


def find_nginx(env: Mapping[str, str]) -> str:
    candidate = env.get("EDT_NGINX") or shutil.which("nginx") or "/usr/sbin/nginx"
    if not (os.path.isfile(candidate) and os.access(candidate, os.X_OK)):
        raise ClusterError("nginx not found: install it (as root: apt-get update && apt-get install -y nginx-light) "
                           "or point EDT_NGINX at the binary")
    return candidate


def _set_parent_death_signal() -> None:
    """Child side of Popen: get SIGTERM when the parent dies, so an aborted test run leaks no process."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG


# --- configuration ----------------------------------------------------------------------------------

@dataclass
class ClusterConfig:
    database_url: str
    broker_url: str
    host: str
    port: int
    base_port: int  # 0: any free ports
    data_dir: Path
    blob_dir: Path
    max_upload_mb: int
    consumers: dict[str, int]
    admin_token: str
    admin_token_generated: bool
    start_timeout: float
    nginx: str
    env: dict[str, str]  # the children's environment (without EDT_SERVICE_PORT)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ClusterConfig:
        data_dir = Path(env.get("EDT_DATA_DIR") or ".edt-import").expanduser().resolve()
        blob_dir = Path(env.get("EDT_BLOB_DIR") or data_dir / "blobs").expanduser().resolve()
        host = env.get("EDT_HOST") or "127.0.0.1"
        port = _env_int(env, "EDT_PORT", 8000)
        if port == 0:
            port = free_port("127.0.0.1" if host in ("0.0.0.0", "::", "") else host)
        base_port = _env_int(env, "EDT_SERVICE_BASE_PORT", port + 100)
        consumers = {}
        for service in SCALABLE:
            n = _env_int(env, f"EDT_CONSUMERS_{service.upper()}", 1)
            if n < 1:
                raise ClusterError(f"EDT_CONSUMERS_{service.upper()} must be at least 1 (got {n})")
            consumers[service] = n
        consumers["dropzone"] = 1
        admin_token = env.get("EDT_ADMIN_TOKEN", "")
        generated = False
        if not admin_token:
            # Every process must share one admin token: keep a generated one across runs.
            token_file = data_dir / "admin-token"
            if token_file.exists():
                admin_token = token_file.read_text().strip()
            if not admin_token:
                admin_token = "edt-admin-" + secrets.token_urlsafe(18)
                data_dir.mkdir(parents=True, exist_ok=True)
                token_file.write_text(admin_token + "\n")
                token_file.chmod(0o600)
            generated = True
        # Every process seals and opens the same blobs and WebDAV files: keep a generated key across runs.
        blob_key = env.get("EDT_BLOB_KEY", "") or _kept_secret(data_dir / "blob-key", generate_key)
        public_host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        children = {
            **env,
            "EDT_DATABASE_URL": env.get("EDT_DATABASE_URL") or DEFAULT_DATABASE_URL,
            "EDT_BROKER_URL": env.get("EDT_BROKER_URL") or DEFAULT_BROKER_URL,
            "EDT_DATA_DIR": str(data_dir),
            "EDT_BLOB_DIR": str(blob_dir),
            "EDT_ADMIN_TOKEN": admin_token,
            "EDT_BLOB_KEY": blob_key,
            "EDT_PUBLIC_URL": env.get("EDT_PUBLIC_URL") or f"http://{_hostport(public_host, port)}",
            "EDT_PORT": str(port),
            "EDT_HOST": "127.0.0.1",  # services listen on loopback; only nginx faces clients
            "PYTHONUNBUFFERED": "1",
        }
        for key in [k for k in children if k.startswith("EDT_CONSUMERS_") or k in ("EDT_SERVICE_PORT",
                                                                                  "EDT_SERVICE_URLS")]:
            children.pop(key)
        return cls(database_url=children["EDT_DATABASE_URL"], broker_url=children["EDT_BROKER_URL"], host=host,
                   port=port, base_port=base_port, data_dir=data_dir, blob_dir=blob_dir,
                   max_upload_mb=_env_int(env, "EDT_MAX_UPLOAD_MB", 100), consumers=consumers,
                   admin_token=admin_token, admin_token_generated=generated,
                   start_timeout=_env_float(env, "EDT_START_TIMEOUT", 60.0), nginx=find_nginx(env), env=children)


@dataclass
class Instance:
    """One process of the cluster: a service instance ("validator", "validator-2") or nginx."""

    name: str
    service: str
    port: int
    log: Path
    pid_file: Path
    proc: subprocess.Popen[bytes] | None = None
    expected_exit: bool = field(default=False)
    # Restarts after a death nobody asked for (`Cluster.revive`): when it last started, how many times in a
    # row it died young, and when it is due to start again.
    started_at: float = 0.0
    early_deaths: int = 0
    revive_at: float | None = None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


# --- the cluster ------------------------------------------------------------------------------------

class Cluster:
    """The distributed deployment as child processes of this one.

    `Cluster(env).start()` → every service ready behind nginx at `.base_url`; `.stop()` stops it all.
    `kill(name)` ends one process abruptly (SIGKILL; `name` is an instance name like "validator",
    "validator-2" or "nginx"), `restart(name)` starts it again on the same port and waits until it answers.
    The environment is os.environ, then the constructor's `env`, then `start(env)`'s overrides."""

    def __init__(self, env: Mapping[str, str] | None = None, *, python: str = sys.executable,
                 stop_grace: float = 8.0, echo: Callable[[str], None] | None = None) -> None:
        self._env = dict(env or {})
        self.python = python
        self.stop_grace = stop_grace
        self.echo = echo or (lambda _msg: None)
        self.config: ClusterConfig | None = None
        self.instances: dict[str, Instance] = {}
        self._lock = threading.RLock()
        self._last_ports: dict[str, int] = {}

    # -- public API --------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        cfg = self._cfg
        host = "127.0.0.1" if cfg.host in ("0.0.0.0", "::", "") else cfg.host
        return f"http://{_hostport(host, cfg.port)}"

    @property
    def admin_token(self) -> str:
        return self._cfg.admin_token

    @property
    def pids(self) -> dict[str, int]:
        """Instance name → pid of every running process (nginx included)."""
        return {name: inst.proc.pid for name, inst in self.instances.items() if inst.alive and inst.proc}

    @property
    def ports(self) -> dict[str, int]:
        return {name: inst.port for name, inst in self.instances.items()}

    def service_urls(self) -> dict[str, list[str]]:
        """Every instance's direct URL, by service: what the gateway (the notifier) answers for."""
        out: dict[str, list[str]] = {s: [] for s in SERVICES}
        for inst in self.instances.values():
            if inst.service in out:
                out[inst.service].append(f"http://127.0.0.1:{inst.port}")
        return out

    def service_url(self, name: str) -> str:
        """Direct URL of one instance, bypassing nginx."""
        return f"http://127.0.0.1:{self._instance(name).port}"

    def names(self, service: str | None = None) -> list[str]:
        """Instance names, all or one service's ("validator", "validator-2", …)."""
        return [n for n, i in self.instances.items() if service is None or i.service == service]

    def log_path(self, name: str) -> Path:
        return self._instance(name).log

    def log_tail(self, name: str, lines: int = LOG_TAIL_LINES) -> str:
        return log_tail(self._instance(name).log, lines)

    def start(self, env: Mapping[str, str] | None = None) -> Cluster:
        with self._lock:
            if self.instances:
                raise ClusterError("cluster already started")
            merged = {**os.environ, **self._env, **(env or {})}
            previous = self.config
            cfg = self.config = ClusterConfig.from_env(merged)
            if previous is not None and merged.get("EDT_PORT", "").strip() == "0":
                cfg.port = previous.port  # started again after stop(): keep the base URL (free ports mode)
            try:
                self._prepare(cfg)
                self._check_broker(cfg)
                self._migrate(cfg)
                self._plan(cfg)
                self._write_nginx_conf(cfg)
                self._check_nginx_conf(cfg)
                for inst in self.instances.values():
                    self._spawn(inst)
                deadline = time.monotonic() + cfg.start_timeout
                self._wait_ready(list(self.instances.values()), deadline)
            except BaseException:
                self.stop()
                raise
            return self

    def stop(self) -> None:
        """SIGTERM to every process (nginx first), SIGKILL to whatever still runs after `stop_grace`."""
        with self._lock:
            order = sorted(self.instances.values(), key=lambda i: i.service != NGINX)
            for inst in order:
                inst.expected_exit = True
                if inst.alive:
                    self._signal(inst, signal.SIGTERM, group=False)
                    self._signal(inst, signal.SIGCONT, group=False)  # in case a test SIGSTOPped it
            self._reap(order, self.stop_grace)
            for inst in order:
                with contextlib.suppress(OSError):
                    inst.pid_file.unlink()
            self.instances.clear()

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """End one process abruptly (a crash, by default) and wait until it is gone."""
        with self._lock:
            inst = self._instance(name)
            inst.expected_exit = True
            if inst.alive:
                self._signal(inst, sig, group=True)
                self._reap([inst], self.stop_grace)
            with contextlib.suppress(OSError):
                inst.pid_file.unlink()

    def restart(self, name: str) -> int:
        """Stop `name` (gracefully, if it runs), start it again on its port, wait until it answers;
        returns the new pid."""
        with self._lock:
            inst = self._instance(name)
            inst.expected_exit = True
            if inst.alive:
                self._signal(inst, signal.SIGTERM, group=False)
                self._signal(inst, signal.SIGCONT, group=False)
                self._reap([inst], self.stop_grace)
            self._spawn(inst)
            self._wait_ready([inst], time.monotonic() + self._cfg.start_timeout)
            assert inst.proc is not None
            return inst.proc.pid

    def revive(self, now: float | None = None) -> list[str]:
        """Start again every process that ended without being asked to, each after its backoff (1 s,
        doubling up to 30 s while it keeps dying young), saying so through `echo` and in its log. Returns
        the instances started by this call. `make run-distributed` calls it twice a second."""
        started: list[str] = []
        with self._lock:
            now = time.monotonic() if now is None else now
            for inst in self.instances.values():
                if inst.expected_exit or inst.proc is None or inst.proc.poll() is None:
                    continue
                if inst.revive_at is None:
                    young = now - inst.started_at < REVIVE_STABLE_S
                    inst.early_deaths = inst.early_deaths + 1 if young else 1
                    delay = min(REVIVE_MAX_S, REVIVE_FIRST_S * 2 ** (inst.early_deaths - 1))
                    inst.revive_at = now + delay
                    self._note(inst, f"{inst.name} (pid {inst.proc.pid}) exited with code {inst.proc.returncode}; "
                                     f"restarting it in {delay:g} s")
                elif now >= inst.revive_at:
                    inst.revive_at = None
                    self._spawn(inst)
                    assert inst.proc is not None
                    self._note(inst, f"{inst.name} restarted (pid {inst.proc.pid}, restart {inst.early_deaths} "
                                     "in a row)")
                    started.append(inst.name)
        return started

    def supervise(self, stop: threading.Event, poll_s: float = 0.5) -> None:
        """`revive` every `poll_s` until `stop` is set (a thread of the tests, the command line's loop)."""
        while not stop.wait(poll_s):
            self.revive()

    def _note(self, inst: Instance, message: str) -> None:
        self.echo(message)
        with contextlib.suppress(OSError), inst.log.open("ab") as log:
            log.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} supervisor: {message}\n".encode())

    def check(self) -> None:
        """Raise ClusterError if a process ended without being asked to."""
        for inst in self.instances.values():
            if not inst.expected_exit and inst.proc is not None and inst.proc.poll() is not None:
                raise ClusterError(self._died_message(inst, "exited unexpectedly"))

    def __enter__(self) -> Cluster:
        return self if self.instances else self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- steps -------------------------------------------------------------------------------------

    @property
    def _cfg(self) -> ClusterConfig:
        if self.config is None:
            raise ClusterError("cluster not started")
        return self.config

    @property
    def run_dir(self) -> Path:
        return self._cfg.data_dir / "run"

    @property
    def logs_dir(self) -> Path:
        return self._cfg.data_dir / "logs"

    @property
    def nginx_dir(self) -> Path:
        return self._cfg.data_dir / "nginx"

    def _instance(self, name: str) -> Instance:
        try:
            return self.instances[name]
        except KeyError:
            raise ClusterError(f"no process named {name!r} (known: {', '.join(self.instances) or 'none'})") from None

    def _prepare(self, cfg: ClusterConfig) -> None:
        for d in (cfg.data_dir, cfg.blob_dir, self.run_dir, self.logs_dir, self.nginx_dir / "logs",
                  self.nginx_dir / "tmp"):
            d.mkdir(parents=True, exist_ok=True)
        # A previous run still alive would fight for ports and pid files.
        for pid_file in self.run_dir.glob("*.pid"):
            try:
                pid = int(pid_file.read_text().strip())
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except (OSError, ValueError):
                pid_file.unlink(missing_ok=True)
                continue
            if "services." in cmdline or "nginx" in cmdline:
                raise ClusterError(f"another distributed run is still active: {pid_file.stem} has pid {pid} "
                                   f"({pid_file}); stop it first (kill {pid}) or use another EDT_DATA_DIR")
            pid_file.unlink(missing_ok=True)

    def _check_broker(self, cfg: ClusterConfig) -> None:
        url = urllib.parse.urlsplit(cfg.broker_url)
        if url.scheme not in ("amqp", "amqps"):
            raise ClusterError(f"distributed mode needs RabbitMQ: EDT_BROKER_URL={redact(cfg.broker_url)}")
        host, port = url.hostname or "127.0.0.1", url.port or (5671 if url.scheme == "amqps" else 5672)
        if not tcp_reachable(host, port):
            raise ClusterError(f"RabbitMQ unreachable at {host}:{port} (EDT_BROKER_URL={redact(cfg.broker_url)})")

    def _migrate(self, cfg: ClusterConfig) -> None:
        if cfg.database_url.startswith("sqlite"):
            raise ClusterError("distributed mode needs PostgreSQL: several processes share the database "
                               f"(EDT_DATABASE_URL={cfg.database_url})")
        self.echo(f"migrating {redact(cfg.database_url)}")
        try:
            result = subprocess.run([self.python, "-m", "deploy.migrate", cfg.database_url], cwd=REPO_ROOT,
                                    env=cfg.env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                    timeout=max(120.0, cfg.start_timeout))
        except subprocess.TimeoutExpired:
            raise ClusterError(f"migrations on {redact(cfg.database_url)} timed out") from None
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).splitlines()[-LOG_TAIL_LINES:])
            raise ClusterError(f"migrations failed on {redact(cfg.database_url)} (is PostgreSQL up?):\n{tail}")

    def _plan(self, cfg: ClusterConfig) -> None:
        names: list[tuple[str, str]] = [(s, s) for s in SERVICES]
        for service in SERVICES:
            names += [(f"{service}-{n}", service) for n in range(2, cfg.consumers.get(service, 1) + 1)]
        taken: set[int] = {cfg.port}
        for i, (name, service) in enumerate(names):
            if cfg.base_port == 0:
                port = self._last_ports.get(name) or free_port()  # a restarted cluster keeps its ports
                while port in taken or not port_is_free("127.0.0.1", port):
                    port = free_port()
            else:
                port = cfg.base_port + i
                if port in taken or not port_is_free("127.0.0.1", port):
                    raise ClusterError(f"port {port} for {name} is in use (EDT_SERVICE_BASE_PORT={cfg.base_port}); "
                                       "pick another base port or stop what listens there")
            taken.add(port)
            self._last_ports[name] = port
            self.instances[name] = Instance(name, service, port, self.logs_dir / f"{name}.log",
                                            self.run_dir / f"{name}.pid")
        if not port_is_free("127.0.0.1" if cfg.host in ("0.0.0.0", "") else cfg.host, cfg.port):
            raise ClusterError(f"port {cfg.port} for nginx (EDT_HOST:EDT_PORT) is in use")
        self.instances[NGINX] = Instance(NGINX, NGINX, cfg.port, self.logs_dir / "nginx.log",
                                         self.run_dir / "nginx.pid")

    def _write_nginx_conf(self, cfg: ClusterConfig) -> None:
        servers: dict[str, list[str]] = {s: [] for s in SERVICES}
        extra: dict[str, str] = {}
        for inst in self.instances.values():
            if inst.service in servers:
                servers[inst.service].append(f"127.0.0.1:{inst.port}")
                if inst.name != inst.service:
                    extra[inst.name] = f"127.0.0.1:{inst.port}"
        conf = render_nginx_conf(
            listen=_hostport(cfg.host, cfg.port), servers=servers, max_upload_mb=cfg.max_upload_mb,
            pid_file=str(self.nginx_dir / "nginx.pid"), error_log=str(self.nginx_dir / "logs" / "error.log"),
            access_log=str(self.nginx_dir / "logs" / "access.log"), temp_dir=str(self.nginx_dir / "tmp"),
            # As root, nginx would run its workers as `nobody`, who cannot enter private directories
            # (pytest's tmp dirs are 0700): keep them as root, they only proxy loopback traffic.
            user="root" if os.geteuid() == 0 else None, instance_metrics=extra)
        (self.nginx_dir / "nginx.conf").write_text(conf, encoding="utf-8")

    def _nginx_cmd(self, *extra: str) -> list[str]:
        return [self._cfg.nginx, "-p", str(self.nginx_dir), "-c", str(self.nginx_dir / "nginx.conf"),
                "-e", str(self.nginx_dir / "logs" / "error.log"), *extra]

    def _check_nginx_conf(self, cfg: ClusterConfig) -> None:
        result = subprocess.run(self._nginx_cmd("-t", "-q"), stdin=subprocess.DEVNULL, capture_output=True,
                                text=True, timeout=30)
        if result.returncode != 0:
            raise ClusterError(f"nginx rejected {self.nginx_dir / 'nginx.conf'}:\n{result.stderr.strip()}")

    def _spawn(self, inst: Instance) -> None:
        cfg = self._cfg
        if inst.service == NGINX:
            cmd = self._nginx_cmd("-g", "daemon off;")
            env = dict(cfg.env)
        else:
            cmd = [self.python, "-m", f"services.{inst.service}.main"]
            env = {**cfg.env, "EDT_SERVICE_PORT": str(inst.port), "EDT_INSTANCE": inst.name}
            if inst.service == GATEWAY:
                env["EDT_SERVICE_URLS"] = json.dumps(self.service_urls())
        inst.log.parent.mkdir(parents=True, exist_ok=True)
        with inst.log.open("ab") as log:
            log.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} starting {inst.name}: {' '.join(cmd)}\n".encode())
            log.flush()
            preexec = _set_parent_death_signal if threading.current_thread() is threading.main_thread() else None
            inst.proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=preexec)
        inst.expected_exit = False
        inst.started_at = time.monotonic()
        inst.revive_at = None
        inst.pid_file.write_text(f"{inst.proc.pid}\n")

    def _probe_url(self, inst: Instance) -> str:
        if inst.service == NGINX:
            return f"{self.base_url}/healthz"
        return f"http://127.0.0.1:{inst.port}/readyz"

    def _wait_ready(self, instances: list[Instance], deadline: float) -> None:
        pending = list(instances)
        last: dict[str, int | None] = {}
        while pending:
            for inst in list(pending):
                if inst.proc is None or inst.proc.poll() is not None:
                    raise ClusterError(self._died_message(inst, "exited during startup"))
                if inst.service == NGINX and any(i.service != NGINX for i in pending):
                    continue  # probed through the notifier: wait for the services first
                status = http_status(self._probe_url(inst))
                last[inst.name] = status
                if status == 200:
                    pending.remove(inst)
            if not pending:
                return
            if time.monotonic() > deadline:
                details = "\n\n".join(
                    f"{inst.name} (pid {inst.proc.pid if inst.proc else '?'}, port {inst.port}, "
                    f"{self._probe_url(inst)} → {last.get(inst.name) or 'no answer'}); last lines of {inst.log}:\n"
                    f"{log_tail(inst.log)}" for inst in pending)
                raise ClusterError(f"not ready after {self._cfg.start_timeout:g}s: "
                                   f"{', '.join(i.name for i in pending)}\n\n{details}")
            time.sleep(0.2)

    def _died_message(self, inst: Instance, what: str) -> str:
        code = inst.proc.returncode if inst.proc else None
        extra = ""
        if inst.service == NGINX:
            extra = f"\nnginx error log {self.nginx_dir / 'logs' / 'error.log'}:\n" + log_tail(
                self.nginx_dir / "logs" / "error.log", 10)
        return f"{inst.name} {what} (exit code {code}); last lines of {inst.log}:\n{log_tail(inst.log)}{extra}"

    def _signal(self, inst: Instance, sig: int, *, group: bool) -> None:
        assert inst.proc is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if group:
                os.killpg(inst.proc.pid, sig)  # each child leads its own session (nginx workers included)
            else:
                inst.proc.send_signal(sig)

    def _reap(self, instances: Sequence[Instance], grace: float) -> None:
        deadline = time.monotonic() + grace
        for inst in instances:
            if inst.proc is None:
                continue
            try:
                inst.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.echo(f"{inst.name} (pid {inst.proc.pid}) ignored SIGTERM for {grace:g}s: SIGKILL")
                self._signal(inst, signal.SIGKILL, group=True)
                inst.proc.wait()
