"""The local Airflow 3: api-server, scheduler and dag-processor (and a triggerer if asked) on
loopback, managed like the stack's services.

Each process runs in its own session with a PID + start-time file under ``<state_dir>/pids``
and a log ``<state_dir>/logs/airflow-<role>.log``. Configuration is one generated
``<state_dir>/airflow/airflow.cfg`` (mode 0600): metadata in the stack's PostgreSQL (psycopg 3),
LocalExecutor, SimpleAuthManager with one admin whose password is made once per installation.
``down`` stops every process of each recorded session, so task runners that Airflow puts in
process groups of their own go too.
"""

from __future__ import annotations

import configparser
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from base64 import urlsafe_b64encode
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TextIO
from urllib.parse import quote

from core.secrets import installation_secret
from core.settings import PROJECT_ROOT, Settings
from deploy.installers import Report
from deploy.service import LOOPBACK, ServiceStartError
from deploy.stack import Stack, port_in_use

# Stopped in this order: the scheduler first (its task supervisors still talk to the api-server).
ROLES = ("scheduler", "triggerer", "dag-processor", "api-server")
HEALTH_PATH = "/api/v2/monitor/health"
_OWN_VARIABLES = frozenset({"AIRFLOW_HOME", "AIRFLOW_CONFIG"})
_HEALTH_KEYS = {"scheduler": "scheduler", "dag-processor": "dag_processor", "triggerer": "triggerer"}


# Pools of the project's DAGs: generation (LLM calls) runs one document at a time by default.
POOLS = {"study_generation": (1, "Notes and quiz generation (LLM calls): concurrency limit")}


class AirflowStartError(ServiceStartError):
    """Airflow did not start: port taken, migration failed, a process died or stayed unhealthy."""


@dataclass(frozen=True)
class AirflowLogin:
    url: str
    user: str
    password: str


@dataclass(frozen=True)
class AirflowProcess:
    role: str
    pid: int | None
    members: int
    rss_mb: float
    log: Path


@dataclass(frozen=True)
class AirflowStatus:
    url: str
    processes: list[AirflowProcess]
    health: dict | None
    detail: str

    @property
    def running(self) -> bool:
        return all(p.pid is not None for p in self.processes)

    @property
    def healthy(self) -> bool:
        return self.running and self.detail == "ok"

    @property
    def rss_mb(self) -> float:
        return sum(p.rss_mb for p in self.processes)


class LocalAirflow:
    """Starts, probes and stops the local Airflow described by ``settings.airflow``."""

    def __init__(self, settings: Settings, *, report: Report | None = None) -> None:
        self.settings = settings
        self.stack = Stack(settings)
        self.home = self.stack.state_dir / "airflow"
        self.url = f"http://{LOOPBACK}:{settings.airflow.port}"
        self.report: Report = report or (lambda phase, seconds, note: None)

    # ---- configuration -------------------------------------------------------------------
    def roles(self) -> list[str]:
        return [r for r in ROLES if r != "triggerer" or self.settings.airflow.triggerer]

    @staticmethod
    def process_name(role: str) -> str:
        return f"airflow-{role}"

    def login(self) -> AirflowLogin:
        """The admin login: a fixed user name and this installation's random password."""
        password = installation_secret(self.stack.state_dir, "airflow_admin_password", nbytes=24)
        return AirflowLogin(self.url, self.settings.airflow.admin_user, password)

    def database_url(self, *, driver: str = "psycopg") -> str:
        pg = self.settings.postgres
        password = quote(pg.password.get_secret_value(), safe="")
        return f"postgresql+{driver}://{quote(pg.user, safe='')}:{password}@{pg.host}:{pg.port}/{pg.airflow_db}"

    def config(self) -> dict[str, dict[str, str]]:
        """Every setting Airflow reads from the generated airflow.cfg."""
        af = self.settings.airflow
        state = self.stack.state_dir

        def secret(name: str) -> str:
            return installation_secret(state, name)

        # Fernet wants 32 url-safe base64 bytes: derived from a per-installation secret.
        fernet = urlsafe_b64encode(hashlib.sha256(secret("airflow_fernet_seed").encode()).digest()).decode()
        return {
            "core": {
                "dags_folder": str(af.dags_folder.resolve()),
                "executor": "LocalExecutor",
                "parallelism": str(af.parallelism),
                "max_active_tasks_per_dag": str(af.parallelism),
                "load_examples": "False",
                # The project's DAGs run on their schedules and assets as soon as they are parsed.
                "dags_are_paused_at_creation": "False",
                "auth_manager": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
                "simple_auth_manager_users": f"{af.admin_user}:admin",
                "simple_auth_manager_passwords_file": str(self.passwords_file),
                "fernet_key": fernet,
                "execution_api_server_url": f"{self.url}/execution/",
            },
            "database": {
                "sql_alchemy_conn": self.database_url(),
                "sql_alchemy_conn_async": self.database_url(driver="psycopg_async"),
                "sql_alchemy_pool_size": "2",
                "sql_alchemy_max_overflow": "4",
            },
            "api": {
                "host": LOOPBACK,
                "port": str(af.port),
                "workers": "1",
                "base_url": self.url,
                "secret_key": secret("airflow_api_secret_key"),
                "expose_config": "False",
            },
            "api_auth": {"jwt_secret": secret("airflow_jwt_secret")},
            "dag_processor": {"parsing_processes": "1", "refresh_interval": "60"},
            "logging": {"base_log_folder": str(self.home / "logs"), "colored_console_log": "False"},
        }

    @property
    def config_file(self) -> Path:
        return self.home / "airflow.cfg"

    @property
    def passwords_file(self) -> Path:
        return self.stack.state_dir / "secrets" / "airflow_passwords.json"

    def write_config(self) -> None:
        """Writes airflow.cfg and SimpleAuthManager's passwords file (both mode 0600)."""
        self.home.mkdir(parents=True, exist_ok=True)
        parser = configparser.ConfigParser(interpolation=None)
        for section, options in self.config().items():
            # Airflow's parser interpolates: a literal % (a quoted password) must be doubled.
            parser[section] = {key: value.replace("%", "%%") for key, value in options.items()}
        login = self.login()
        _write_private(self.passwords_file, json.dumps({login.user: login.password}) + "\n")
        with _open_private(self.config_file) as handle:
            parser.write(handle)

    def environment(self) -> dict[str, str]:
        """The processes' environment: ours (LAKEHOUSE_* included) without inherited Airflow configuration."""
        # Inherited AIRFLOW__* overrides would silently win over airflow.cfg; connections and variables
        # given as AIRFLOW_CONN_* / AIRFLOW_VAR_* pass through.
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW__") and k not in _OWN_VARIABLES}
        python_path = [str(PROJECT_ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
        env.update(
            AIRFLOW_HOME=str(self.home),
            AIRFLOW_CONFIG=str(self.config_file),
            PYTHONPATH=os.pathsep.join(dict.fromkeys(python_path)),
            LAKEHOUSE_STACK__STATE_DIR=str(self.stack.state_dir),
            PYTHONUNBUFFERED="1",
        )
        return env

    def argv(self, role: str) -> list[str]:
        airflow = [sys.executable, "-m", "airflow", role]
        if role == "api-server":
            return [*airflow, "--host", LOOPBACK, "--port", str(self.settings.airflow.port), "--workers", "1"]
        if role in {"scheduler", "triggerer"}:
            return [*airflow, "--skip-serve-logs"]  # the api-server reads task logs from the shared folder
        return airflow

    # ---- lifecycle -----------------------------------------------------------------------
    def up(self) -> AirflowStatus:
        """Starts whichever process is not running and waits until all are healthy (idempotent)."""
        missing = [role for role in self.roles() if self.stack.running_pid(self.process_name(role)) is None]
        if not missing:
            status = self.status()
            if status.healthy:
                self.report("airflow", 0.0, "already running")
                return status
        if "api-server" in missing and port_in_use(self.settings.airflow.port):
            raise AirflowStartError(
                f"airflow: port {self.settings.airflow.port} on {LOOPBACK} is already in use by another process; "
                "stop it or set LAKEHOUSE_AIRFLOW__PORT"
            )
        started_at = datetime.now(UTC)
        t0 = time.perf_counter()
        if missing:
            self._check_database()
        self.write_config()
        if missing:
            note = "migrated" if self.migrate() else "already at this Airflow's schema"
            self.report("airflow db migrate", time.perf_counter() - t0, f"{self.database_url().split('@')[-1]}: {note}")
        t1 = time.perf_counter()
        procs = {role: self._spawn(role) for role in missing}
        try:
            self._wait_healthy(procs, since=started_at)
        except BaseException:
            for role in procs:
                self._stop(self.process_name(role))
            raise
        self.report("airflow processes", time.perf_counter() - t1, "started " + ", ".join(missing or ["nothing"]))
        self._ensure_pools()
        return self.status()

    def _ensure_pools(self) -> None:
        """The pools the project's DAGs use: a task in a pool that does not exist never runs."""
        from orchestration.airflow_api import AirflowClient

        login = self.login()
        with AirflowClient(login.url, username=login.user, password=login.password) as client:
            for name, (slots, description) in POOLS.items():
                client.ensure_pool(name, slots=slots, description=description)

    def _check_database(self) -> None:
        """Fails fast with the reason when the metadata database cannot be reached."""
        import psycopg

        pg = self.settings.postgres
        try:
            psycopg.connect(pg.dsn(pg.airflow_db), connect_timeout=5).close()
        except psycopg.Error as exc:
            raise AirflowStartError(
                f"airflow: cannot reach its metadata database {pg.host}:{pg.port}/{pg.airflow_db} "
                f"(`lakehouse stack up` creates it): {str(exc).strip()}"
            ) from exc

    def _schema_stamp(self) -> str | None:
        """Airflow's version and the database's alembic revision, or None if the schema is not there."""
        from importlib.metadata import version

        import psycopg

        pg = self.settings.postgres
        try:
            with psycopg.connect(pg.dsn(pg.airflow_db), connect_timeout=5) as conn:
                row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        except psycopg.Error:
            return None
        return f"{version('apache-airflow-core')} {pg.host}:{pg.port}/{pg.airflow_db} {row[0]}" if row else None

    def migrate(self) -> bool:
        """``airflow db migrate``: creates or upgrades the metadata schema. Skipped (False) when the
        database is at the revision this Airflow version last migrated it to (saves ~6 s per start)."""
        stamp_file = self.home / "migrated"
        stamp = self._schema_stamp()
        if stamp is not None and stamp_file.exists() and stamp_file.read_text().strip() == stamp:
            return False
        log_path = self.stack.log_file("airflow-migrate")
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} airflow db migrate\n".encode())
            log.flush()
            try:
                proc = subprocess.run(
                    [sys.executable, "-m", "airflow", "db", "migrate"],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=self.environment(),
                    cwd=self.home,
                    timeout=self.settings.airflow.start_timeout_s,
                    check=False,
                )
            except subprocess.TimeoutExpired as exc:
                raise AirflowStartError(
                    f"airflow db migrate timed out; last lines of {log_path}:\n{self.stack.tail('airflow-migrate')}"
                ) from exc
        if proc.returncode != 0:
            raise AirflowStartError(
                f"airflow db migrate exited with code {proc.returncode}; last lines of {log_path}:\n"
                f"{self.stack.tail('airflow-migrate')}"
            )
        stamp_file.write_text(f"{self._schema_stamp()}\n")
        return True

    def _spawn(self, role: str) -> subprocess.Popen[bytes]:
        name = self.process_name(role)
        log_path = self.stack.log_file(name)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting {name}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                self.argv(role),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=self.environment(),
                cwd=self.home,
            )
        self.stack._record(name, proc.pid)  # same PID + start-time files as the stack's services
        return proc

    def _wait_healthy(self, procs: dict[str, subprocess.Popen[bytes]], *, since: datetime) -> None:
        deadline = time.monotonic() + self.settings.airflow.start_timeout_s
        problem = "no answer yet"
        while time.monotonic() < deadline:
            for role, proc in procs.items():
                if proc.poll() is not None:
                    name = self.process_name(role)
                    raise AirflowStartError(
                        f"{name} exited with code {proc.returncode} during start-up; last lines of "
                        f"{self.stack.log_file(name)}:\n{self.stack.tail(name)}"
                    )
            problem = self._health_problem(since=since - timedelta(seconds=2), fresh=set(procs))
            if problem == "ok":
                return
            time.sleep(1.0)
        raise AirflowStartError(
            f"airflow did not become healthy within {self.settings.airflow.start_timeout_s:.0f} s ({problem}); "
            f"logs: {self.stack.log_file('airflow-*')}"
        )

    def health(self) -> dict:
        """The api-server's health document (no login needed)."""
        import httpx

        response = httpx.get(self.url + HEALTH_PATH, timeout=3.0)
        response.raise_for_status()
        return dict(response.json())

    def _health_problem(self, *, since: datetime | None = None, fresh: Collection[str] = ()) -> str:
        """`ok`, or what is not healthy yet. Roles in ``fresh`` need a heartbeat newer than ``since``."""
        try:
            health = self.health()
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
            return f"api-server: {type(exc).__name__}: {exc}"[:160]
        if health.get("metadatabase", {}).get("status") != "healthy":
            return "metadatabase unhealthy"
        for role in self.roles():
            key = _HEALTH_KEYS.get(role)
            if key is None:
                continue
            part = health.get(key) or {}
            if part.get("status") != "healthy":
                return f"{role}: {part.get('status') or 'no heartbeat yet'}"
            beat = part.get(f"latest_{key}_heartbeat")
            if role in fresh and since is not None and (not beat or datetime.fromisoformat(beat) < since):
                return f"{role}: no heartbeat from the new process yet"
        return "ok"

    def status(self) -> AirflowStatus:
        """Each process (PID, members of its session, RSS) and the api-server's health."""
        processes = []
        for role in self.roles():
            name = self.process_name(role)
            pid = self.stack.running_pid(name)
            members = session_members(pid) if pid else []
            processes.append(
                AirflowProcess(role, pid, len(members), sum(map(_rss_mb, members)), self.stack.log_file(name))
            )
        try:
            health: dict | None = self.health()
        except Exception:  # noqa: BLE001 - reported as detail
            health = None
        detail = self._health_problem() if health is not None else "api-server does not answer"
        return AirflowStatus(self.url, processes, health, detail)

    def down(self) -> list[str]:
        """Stops exactly the processes ``up`` recorded (every member of their sessions)."""
        stopped = []
        for role in ROLES:  # triggerer included: it may have been enabled when `up` ran
            if self._stop(self.process_name(role)):
                stopped.append(self.process_name(role))
        return stopped

    def recorded_sessions(self) -> list[int]:
        """Session ids (leader PIDs) of the running processes this state dir recorded."""
        return [pid for role in ROLES if (pid := self.stack.running_pid(self.process_name(role)))]

    def _stop(self, name: str, *, timeout_s: float = 30.0) -> bool:
        pid = self.stack.running_pid(name)
        if pid is None:
            return False
        _signal_session(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and session_members(pid):
            _reap(pid)
            time.sleep(0.2)
        if session_members(pid):
            _signal_session(pid, signal.SIGKILL)
            while session_members(pid):
                _reap(pid)
                time.sleep(0.1)
        _reap(pid)
        self.stack._pid_file(name).unlink(missing_ok=True)
        return True


# ---- processes ---------------------------------------------------------------------------


def session_members(sid: int) -> list[int]:
    """Live (non-zombie) processes of session ``sid``."""
    members = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            members.append(int(proc.name))
    return members


def _signal_session(sid: int, sig: int) -> None:
    # The leader's group first (graceful shutdown of the daemon), then any other group of the session.
    groups = {sid}
    for pid in session_members(sid):
        try:
            groups.add(os.getpgid(pid))
        except ProcessLookupError:
            continue
    for pgid in sorted(groups, key=lambda g: g != sid):
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def pss_mb(pids: list[int]) -> float:
    """Proportional set size of ``pids`` (shared pages counted once overall): the honest RAM total."""
    total = 0.0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1]) / 1024
        except OSError:
            continue
    return total


def _open_private(path: Path) -> TextIO:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, "w")


def _write_private(path: Path, text: str) -> None:
    with _open_private(path) as handle:
        handle.write(text)
