"""The local stack: PostgreSQL, Redis, Kafka (KRaft) and MinIO on loopback, managed by PID.

`Stack.up()` installs what is missing, starts each service that is not already running,
waits for it to be healthy (with a timeout) and runs its one-time set-up (databases, bucket).
`Stack.down()` stops exactly the processes `up()` started, identified by PID *and* process
start time so a recycled PID is never signalled. All state lives under ``stack.state_dir``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from core.settings import Settings
from deploy.installers import Report, Tools, ensure_tools, timed
from deploy.service import LOOPBACK, Service, ServiceStartError, ServiceStatus


def _proc_start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22 (starttime) counts from after the parenthesised command name.
    return stat.rsplit(")", 1)[1].split()[19]


def port_in_use(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


class Stack:
    """Starts and stops the local services described by ``Settings``."""

    def __init__(self, settings: Settings, *, report: Report | None = None) -> None:
        self.settings = settings
        self.state_dir = settings.stack.state_dir.resolve()
        self.report: Report = report or (lambda phase, seconds, note: None)

    # ---- paths -------------------------------------------------------------------------
    def _pid_file(self, name: str) -> Path:
        return self.state_dir / "pids" / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.state_dir / "logs" / f"{name}.log"

    def data_dir(self, name: str) -> Path:
        return self.state_dir / name

    # ---- PID bookkeeping -----------------------------------------------------------------
    def running_pid(self, name: str) -> int | None:
        """PID of our running process for ``name``, or None (stale pid files are removed)."""
        pid_file = self._pid_file(name)
        try:
            pid_text, start_time = pid_file.read_text().split()
        except (OSError, ValueError):
            return None
        pid = int(pid_text)
        if _proc_start_time(pid) != start_time:
            pid_file.unlink(missing_ok=True)
            return None
        return pid

    def _record(self, name: str, pid: int) -> None:
        pid_file = self._pid_file(name)
        pid_file.parent.mkdir(parents=True, exist_ok=True)
        start_time = _proc_start_time(pid)
        pid_file.write_text(f"{pid} {start_time}\n")

    # ---- service definitions -------------------------------------------------------------
    def services(self, tools: Tools | None) -> list[Service]:
        wanted = self.settings.stack.services
        from deploy import services
        from deploy.spark_cluster import spark_cluster_service

        builders = {
            "postgres": services.postgres_service,
            "redis": services.redis_service,
            "kafka": services.kafka_service,
            "objectstore": services.minio_service,
            "redis-cluster": services.redis_cluster_service,
            "spark-cluster": spark_cluster_service,
        }
        return [builders[name](self, tools) for name in wanted]

    def up(self) -> list[ServiceStatus]:
        """Installs what is missing and starts every configured service (idempotent)."""
        tools = ensure_tools(self.settings, self.report)
        with timed(self.report, "services") as notes:
            for service in self.services(tools):
                started = self._start(service)
                notes.append(f"{service.name} {'started' if started else 'already running'}")
        return self.status()

    def start(self, service: Service) -> bool:
        """Starts one service (recorded like the configured ones); False if it was already running."""
        return self._start(service)

    def _start(self, service: Service) -> bool:
        if self.running_pid(service.name) is not None:
            try:
                service.health()
            except Exception:  # noqa: BLE001 - an unhealthy leftover is restarted below
                self.stop(service.name)
            else:
                service.after_start()  # idempotent set-up (databases, migrations, bucket) stays current
                return False
        for port in service.ports:
            if port_in_use(port):
                raise ServiceStartError(
                    f"{service.name}: port {port} on {LOOPBACK} is already in use by another process; "
                    f"stop that process or configure another port (see the README's configuration table)"
                )
        service.prepare()
        log_path = self.log_file(service.name)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting {service.name}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                service.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, **service.env},
                user=service.user,
                cwd=self.state_dir,
            )
        self._record(service.name, proc.pid)
        deadline = time.monotonic() + self.settings.stack.start_timeout_s
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self._pid_file(service.name).unlink(missing_ok=True)
                raise ServiceStartError(
                    f"{service.name} exited with code {proc.returncode} during start-up; "
                    f"last lines of {log_path}:\n{self.tail(service.name)}"
                )
            try:
                service.health()
                break
            except Exception as exc:  # noqa: BLE001 - any failure means "not ready yet"
                last_error = exc
                time.sleep(0.3)
        else:
            self.stop(service.name)
            raise ServiceStartError(
                f"{service.name} did not become healthy within {self.settings.stack.start_timeout_s:.0f} s "
                f"(last probe error: {last_error}); last lines of {log_path}:\n{self.tail(service.name)}"
            )
        service.after_start()
        return True

    def stop(self, name: str, *, timeout_s: float = 30.0) -> bool:
        """Stops our process for ``name`` (its whole process group). True if one was running."""
        pid = self.running_pid(name)
        if pid is None:
            return False
        # The service's own stop signal (PostgreSQL: SIGINT, its "fast" shutdown); a pid file of a
        # service no longer in the settings gets SIGTERM.
        signals = {service.name: service.stop_signal for service in self.services(None)}
        sig = signals.get(name, signal.SIGTERM)
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and _group_alive(pid):
            time.sleep(0.2)
        if _group_alive(pid):
            os.killpg(pid, signal.SIGKILL)
            while _group_alive(pid):
                time.sleep(0.1)
        self._pid_file(name).unlink(missing_ok=True)
        return True

    def down(self) -> list[str]:
        """Stops every service this state dir started, in reverse start order."""
        stopped = []
        pid_dir = self.state_dir / "pids"
        names = [p.stem for p in pid_dir.glob("*.pid")] if pid_dir.exists() else []
        order = ["objectstore", "kafka", "redis", "postgres"]
        for name in sorted(names, key=lambda n: order.index(n) if n in order else -1):
            if self.stop(name):
                stopped.append(name)
        return stopped

    def status(self) -> list[ServiceStatus]:
        result = []
        for service in self.services(None):
            pid = self.running_pid(service.name)
            started = time.perf_counter()
            try:
                service.health()
                healthy, detail = True, "ok"
            except Exception as exc:  # noqa: BLE001 - reported, not raised
                healthy, detail = False, f"{type(exc).__name__}: {exc}"[:120]
            latency = (time.perf_counter() - started) * 1000 if healthy else None
            if pid is None and healthy:
                detail = "healthy, but not started by this stack"
            result.append(ServiceStatus(service.name, pid, service.ports, healthy, latency, detail))
        return result

    def tail(self, name: str, lines: int = 20) -> str:
        path = self.log_file(name)
        if not path.exists():
            return "(no log yet)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie leader still counts as alive for killpg; reap it if it is our child.
    try:
        waited, _ = os.waitpid(pgid, os.WNOHANG)
        if waited == pgid:
            return _group_alive(pgid)
    except ChildProcessError:
        pass
    return _group_has_live_member(pgid)


def _group_has_live_member(pgid: int) -> bool:
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        state, group = fields[0], int(fields[2])
        if group == pgid and state != "Z":
            return True
    return False
