"""Private infrastructure for the fault suite: a PostgreSQL cluster and a RabbitMQ node of our own, on
free ports, in a temporary directory, started by the suite and removed after — so that restarting them
never touches the machine's shared servers. Both fail (never skip) when their binaries are missing."""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from deploy.supervisor import free_port, tcp_reachable


class InfraError(RuntimeError):
    pass


def _wait(predicate: object, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise InfraError(f"{what} after {timeout:g} s")
        time.sleep(0.1)


def _port_closed(port: int) -> bool:
    return not tcp_reachable("127.0.0.1", port, timeout=0.5)


# --- PostgreSQL -----------------------------------------------------------------------------------------

def _pg_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[4]))
    if not found:
        raise InfraError("PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin/pg_ctl): "
                         "apt-get install postgresql")
    return Path(found[-1]).parent


class PrivatePostgres:
    """initdb + pg_ctl on a free port (trust auth, user postgres). Runs as the `postgres` system user
    when we are root (PostgreSQL refuses to run as root)."""

    def __init__(self, root: Path) -> None:
        self.bin = _pg_bin()
        self.root = root
        self.data = root / "pgdata"
        self.sockets = root / "pgsock"
        self.port = free_port()
        self.as_user = "postgres" if os.geteuid() == 0 else None

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *cmd: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        full = list(cmd)
        if self.as_user:
            full = ["runuser", "-u", self.as_user, "--", *full]
        result = subprocess.run(full, capture_output=True, text=True, timeout=timeout, cwd="/")
        if result.returncode != 0:
            raise InfraError(f"{' '.join(cmd)} failed: {result.stderr.strip() or result.stdout.strip()}")
        return result

    def start(self) -> PrivatePostgres:
        self.root.mkdir(parents=True, exist_ok=True)
        if not self.data.exists():
            self.sockets.mkdir(parents=True, exist_ok=True)
            if self.as_user:
                pw = pwd.getpwnam(self.as_user)
                for d in (self.root, self.sockets):
                    os.chown(d, pw.pw_uid, pw.pw_gid)
            self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                      "-E", "UTF8", "--no-sync")
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "postgres.log"), "-w",
                  "-t", "60", "-o", f"-p {self.port} -k {self.sockets} -c listen_addresses=127.0.0.1 "
                  "-c fsync=off -c max_connections=200 -c shared_buffers=64MB", "start")
        return self

    def stop(self, mode: str = "fast") -> None:
        """`immediate` is a crash (no checkpoint), `fast` a clean shutdown dropping every connection."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")
        _wait(lambda: _port_closed(self.port), "PostgreSQL still listening", 30)

    def remove(self) -> None:
        if (self.data / "postmaster.pid").exists():
            try:
                self.stop("immediate")
            except InfraError:
                pass
        shutil.rmtree(self.root, ignore_errors=True)

    def sql(self, query: str, database: str = "postgres") -> list[tuple[str, ...]]:
        """One query through psql (the suite counts rows with it, outside the product)."""
        out = self._run(str(self.bin / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d",
                        database, "-AtX", "-F", "\t", "-c", query, timeout=60).stdout
        return [tuple(line.split("\t")) for line in out.splitlines() if line]

    @contextmanager
    def table_lock(self, database: str, table: str) -> Iterator[None]:
        """An EXCLUSIVE lock on `table`, held by a session of the suite's own until the block ends: reads go on,
        every write to the table waits for it — a stage's write transaction stops there, open."""
        proc = subprocess.Popen([str(self.bin / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                                 "-d", database, "-qAtX", "-v", "ON_ERROR_STOP=1"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True, cwd="/")
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(f"BEGIN; LOCK TABLE {table} IN EXCLUSIVE MODE; SELECT 'locked';\n")
            proc.stdin.flush()
            if proc.stdout.readline().strip() != "locked":
                raise InfraError(f"could not lock {table}")
            yield
        finally:
            proc.communicate("COMMIT;\n", timeout=60)

    def database_url(self, database: str) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"


# --- RabbitMQ -------------------------------------------------------------------------------------------

RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")


class PrivateRabbit:
    """A RabbitMQ node of its own (name, ports, mnesia and log directories, cookie) with the management
    plugin on a free port; guest/guest may connect from loopback."""

    def __init__(self, root: Path) -> None:
        if not (RABBIT_BIN / "rabbitmq-server").exists():
            raise InfraError(f"RabbitMQ not found ({RABBIT_BIN}/rabbitmq-server): apt-get install rabbitmq-server")
        self.root = root
        self.port = free_port()
        self.dist_port = free_port()
        self.management_port = free_port()
        self.node = f"edtfaults{secrets.token_hex(3)}@{socket.gethostname().split('.')[0]}"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    @property
    def management_url(self) -> str:
        return f"http://guest:guest@127.0.0.1:{self.management_port}"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "HOME": str(self.root),  # its own Erlang cookie
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.root / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.root / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.root / "rabbitmq"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.root / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(self.root / "rabbitmq.pid"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.root / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(self.root / "rabbitmq-env.conf"),
        }

    def start(self) -> PrivateRabbit:
        self.root.mkdir(parents=True, exist_ok=True)
        cookie = self.root / ".erlang.cookie"
        if not cookie.exists():
            cookie.write_text(secrets.token_hex(16))
            cookie.chmod(0o400)
            (self.root / "rabbitmq.conf").write_text(
                f"listeners.tcp.default = 127.0.0.1:{self.port}\n"
                f"management.tcp.port = {self.management_port}\n"
                "management.tcp.ip = 127.0.0.1\n"
                "loopback_users = none\n"
                "collect_statistics_interval = 1000\n"
                "management.rates_mode = none\n")
            (self.root / "enabled_plugins").write_text("[rabbitmq_management].\n")
            (self.root / "advanced.config").write_text("[].\n")
            (self.root / "rabbitmq-env.conf").write_text("")
        log = (self.root / "server.out").open("ab")
        self.proc = subprocess.Popen([str(RABBIT_BIN / "rabbitmq-server")], env=self.env(), stdout=log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                     cwd=self.root)
        # await_startup fails at once while the node has not registered with epmd yet: ask again.
        deadline = time.monotonic() + 120
        while True:
            if self.proc.poll() is not None:
                raise InfraError(f"rabbitmq-server exited ({self.proc.returncode}): see {self.root / 'server.out'}")
            try:
                self.ctl("await_startup", "--timeout", "30", timeout=60)
                break
            except InfraError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)
        _wait(lambda: tcp_reachable("127.0.0.1", self.management_port, 0.5), "RabbitMQ management not up", 60)
        return self

    def ctl(self, *args: str, timeout: float = 60) -> str:
        result = subprocess.run([str(RABBIT_BIN / "rabbitmqctl"), "-q", "-n", self.node, *args], env=self.env(),
                                capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise InfraError(f"rabbitmqctl {' '.join(args)} failed: {result.stderr.strip() or result.stdout.strip()}")
        return result.stdout

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            self.ctl("stop", timeout=120)
        except (InfraError, subprocess.TimeoutExpired):
            os.killpg(self.proc.pid, 9)
        self.proc.wait(60)
        self.proc = None
        _wait(lambda: _port_closed(self.port), "RabbitMQ still listening", 30)

    def remove(self) -> None:
        if self.proc is not None:
            try:
                self.stop()
            except Exception:  # noqa: BLE001 - removal goes on whatever happened
                if self.proc is not None:
                    os.killpg(self.proc.pid, 9)
        # epmd may outlive the node: it is shared by every node of the machine, so it is left alone.
        shutil.rmtree(self.root, ignore_errors=True)

    def management(self, method: str, path: str, **kw: object) -> object:
        """One call to the node's management HTTP API (`path` below /api)."""
        import httpx

        r = httpx.request(method, f"http://127.0.0.1:{self.management_port}/api{path}", auth=("guest", "guest"),
                          timeout=30, **kw)  # type: ignore[arg-type]
        if r.status_code >= 300:
            raise InfraError(f"management {method} {path}: {r.status_code} {r.text[:300]}")
        return r.json() if r.content else None

    def queue_figure(self, figure: str, vhost: str = "/") -> dict[str, int]:
        out = self.ctl("list_queues", "-p", vhost, "name", figure)
        return {p[0]: int(p[1]) for p in (line.split() for line in out.splitlines()) if len(p) == 2 and p[1].isdigit()}
