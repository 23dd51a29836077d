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
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from core.settings import Settings
from deploy.installers import Report, Tools, ensure_tools, timed

LOOPBACK = "127.0.0.1"


class ServiceStartError(RuntimeError):
    """A service did not start or did not become healthy; the message names it."""


@dataclass
class Service:
    """How to start, probe and set up one service."""

    name: str
    ports: tuple[int, ...]
    argv: list[str]
    health: Callable[[], None]
    prepare: Callable[[], None] = lambda: None
    after_start: Callable[[], None] = lambda: None
    env: dict[str, str] = field(default_factory=dict)
    user: str | None = None
    stop_signal: int = signal.SIGTERM


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    pid: int | None
    ports: tuple[int, ...]
    healthy: bool
    latency_ms: float | None
    detail: str


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

    def _data_dir(self, name: str) -> Path:
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
        builders = {
            "postgres": self._postgres,
            "redis": self._redis,
            "kafka": self._kafka,
            "objectstore": self._minio,
            "redis-cluster": self._redis_cluster,
        }
        return [builders[name](tools) for name in wanted]

    def _postgres(self, tools: Tools | None) -> Service:
        from deploy import pg_setup

        pg = self.settings.postgres
        data = self._data_dir("postgres") / "data"
        sockets = self._data_dir("postgres") / "run"
        bin_dir = tools.postgres_bin if tools else Path("/usr/lib/postgresql/15/bin")
        return Service(
            name="postgres",
            ports=(pg.port,),
            argv=[
                str(bin_dir / "postgres"),
                "-D",
                str(data),
                "-p",
                str(pg.port),
                "-c",
                f"listen_addresses={LOOPBACK}",
                "-c",
                f"unix_socket_directories={sockets}",
                "-c",
                "max_connections=200",
                "-c",
                "shared_buffers=64MB",
                "-c",
                "fsync=off" if self.settings.environment != "production" else "fsync=on",
            ],
            user="postgres",
            stop_signal=signal.SIGINT,  # "fast" shutdown: roll back open transactions, exit
            prepare=lambda: pg_setup.init_cluster(bin_dir=bin_dir, data_dir=data, socket_dir=sockets),
            health=lambda: pg_setup.ping(socket_dir=sockets, port=pg.port),
            after_start=lambda: pg_setup.create_role_and_databases(pg, socket_dir=sockets, migrate=True),
        )

    def _redis(self, tools: Tools | None) -> Service:
        rs = self.settings.redis
        data = self._data_dir("redis")

        def health() -> None:
            import redis

            client = redis.Redis(host=rs.host, port=rs.port, socket_timeout=1)
            try:
                client.ping()
            finally:
                client.close()

        return Service(
            name="redis",
            ports=(rs.port,),
            argv=[
                str(tools.redis_server if tools else "redis-server"),
                "--bind",
                LOOPBACK,
                "--port",
                str(rs.port),
                "--dir",
                str(data),
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--maxmemory",
                "256mb",
            ],
            prepare=lambda: data.mkdir(parents=True, exist_ok=True),
            health=health,
        )

    def _redis_cluster(self, tools: Tools | None) -> Service:
        """Optional: a 3-primary Redis Cluster on loopback (for testing the cluster code path).

        One shell supervises the nodes, so the service is one process group like the others.
        The cluster bus of node ``p`` listens on ``p + 100`` (the default ``p + 10000`` would
        not fit in the port range for the default ports). Every start makes a fresh cluster.
        """
        import shlex
        import shutil

        ports = self.settings.redis.cluster_ports
        home = self._data_dir("redis-cluster")
        server = str(tools.redis_server if tools else "redis-server")

        def node(port: int) -> list[str]:
            return [
                server,
                "--bind",
                LOOPBACK,
                "--port",
                str(port),
                "--cluster-enabled",
                "yes",
                "--cluster-port",
                str(port + 100),
                "--cluster-config-file",
                f"nodes-{port}.conf",
                "--cluster-node-timeout",
                "2000",
                "--dir",
                str(home / str(port)),
                "--save",
                "",
                "--appendonly",
                "no",
                "--maxmemory",
                "64mb",
            ]

        def prepare() -> None:
            for port in ports:
                (home / str(port)).mkdir(parents=True, exist_ok=True)
                (home / str(port) / f"nodes-{port}.conf").unlink(missing_ok=True)

        def health() -> None:
            import redis

            for port in ports:
                client = redis.Redis(host=LOOPBACK, port=port, socket_timeout=1)
                try:
                    client.ping()
                finally:
                    client.close()

        def create_cluster() -> None:
            import redis

            client = redis.Redis(host=LOOPBACK, port=ports[0], socket_timeout=2, decode_responses=True)
            try:
                if client.cluster("INFO").get("cluster_state") != "ok":
                    cli = shutil.which("redis-cli") or str(Path(server).with_name("redis-cli"))
                    nodes = [f"{LOOPBACK}:{port}" for port in ports]
                    proc = subprocess.run(
                        [cli, "--cluster", "create", *nodes, "--cluster-replicas", "0", "--cluster-yes"],
                        capture_output=True,
                        text=True,
                        check=False,
                        timeout=60,
                    )
                    if proc.returncode != 0:
                        raise ServiceStartError(f"redis-cluster: cluster create failed:\n{proc.stdout}{proc.stderr}")
                deadline = time.monotonic() + self.settings.stack.start_timeout_s
                while time.monotonic() < deadline:
                    states = []
                    for port in ports:
                        probe = redis.Redis(host=LOOPBACK, port=port, socket_timeout=2, decode_responses=True)
                        try:
                            states.append(probe.cluster("INFO").get("cluster_state"))
                        finally:
                            probe.close()
                    if all(state == "ok" for state in states):
                        return
                    time.sleep(0.2)
                raise ServiceStartError("redis-cluster: the cluster did not reach state ok")
            finally:
                client.close()

        script = " & ".join(shlex.join(node(port)) for port in ports) + " & wait"
        return Service(
            name="redis-cluster",
            ports=(*ports, *(port + 100 for port in ports)),
            argv=["/bin/sh", "-c", script],
            prepare=prepare,
            health=health,
            after_start=create_cluster,
        )

    def _kafka(self, tools: Tools | None) -> Service:
        ks = self.settings.kafka
        home = self._data_dir("kafka")
        config = home / "server.properties"
        log4j = home / "log4j2.properties"
        classpath = tools.kafka_classpath if tools else ""
        java = str(tools.java if tools else "java")
        jvm = [
            f"-Xmx{ks.heap}",
            "-Xms64m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            f"-Dlog4j2.configurationFile={log4j}",
            "-Djava.awt.headless=true",
        ]

        def prepare() -> None:
            home.mkdir(parents=True, exist_ok=True)
            config.write_text(_kafka_properties(ks.port, ks.controller_port, home / "data"))
            log4j.write_text(_KAFKA_LOG4J)
            if not (home / "data" / "meta.properties").exists():
                cluster_id = _kafka_cluster_id()
                proc = subprocess.run(
                    [
                        java,
                        *jvm,
                        "-cp",
                        classpath,
                        "kafka.tools.StorageTool",
                        "format",
                        "-t",
                        cluster_id,
                        "-c",
                        str(config),
                        "--ignore-formatted",
                    ],
                    capture_output=True,
                    text=True,
                    check=False,
                )
                if proc.returncode != 0:
                    raise ServiceStartError(f"kafka: formatting KRaft storage failed:\n{proc.stdout}{proc.stderr}")

        def health() -> None:
            from kafka import KafkaAdminClient

            admin = KafkaAdminClient(bootstrap_servers=f"{LOOPBACK}:{ks.port}", request_timeout_ms=3000)
            try:
                admin.list_topics()
            finally:
                admin.close()

        return Service(
            name="kafka",
            ports=(ks.port, ks.controller_port),
            argv=[java, *jvm, "-cp", classpath, "kafka.Kafka", str(config)],
            prepare=prepare,
            health=health,
        )

    def _minio(self, tools: Tools | None) -> Service:
        os_ = self.settings.object_store
        data = self._data_dir("minio") / "data"

        def health() -> None:
            import urllib.request

            with urllib.request.urlopen(f"http://{LOOPBACK}:{os_.port}/minio/health/ready", timeout=2) as resp:
                if resp.status != 200:
                    raise ConnectionError(f"minio ready probe answered {resp.status}")

        def create_bucket() -> None:
            from lake.store import s3_client

            client = s3_client(os_)
            existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
            if os_.bucket not in existing:
                client.create_bucket(Bucket=os_.bucket)

        return Service(
            name="objectstore",
            ports=(os_.port, os_.port + 1),
            argv=[
                str(tools.minio if tools else "minio"),
                "server",
                str(data),
                "--address",
                f"{LOOPBACK}:{os_.port}",
                "--console-address",
                f"{LOOPBACK}:{os_.port + 1}",
                "--quiet",
            ],
            env={
                "MINIO_ROOT_USER": os_.access_key,
                "MINIO_ROOT_PASSWORD": os_.secret_key.get_secret_value(),
                "MINIO_BROWSER": "off",
                "GOMAXPROCS": "2",
            },
            prepare=lambda: data.mkdir(parents=True, exist_ok=True),
            health=health,
            after_start=create_bucket,
        )

    # ---- lifecycle -------------------------------------------------------------------------
    def up(self) -> list[ServiceStatus]:
        """Installs what is missing and starts every configured service (idempotent)."""
        tools = ensure_tools(self.settings, self.report)
        with timed(self.report, "services") as notes:
            for service in self.services(tools):
                started = self._start(service)
                notes.append(f"{service.name} {'started' if started else 'already running'}")
        return self.status()

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


def _kafka_cluster_id() -> str:
    import base64

    # Kafka's own format (22 url-safe base64 chars); a leading "-" would read as an option.
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _kafka_properties(port: int, controller_port: int, data_dir: Path) -> str:
    return f"""\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@{LOOPBACK}:{controller_port}
listeners=PLAINTEXT://{LOOPBACK}:{port},CONTROLLER://{LOOPBACK}:{controller_port}
advertised.listeners=PLAINTEXT://{LOOPBACK}:{port}
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs={data_dir}
num.partitions=2
num.network.threads=2
num.io.threads=2
background.threads=2
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
log.retention.hours=168
"""


_KAFKA_LOG4J = """\
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.stdout.ref = STDOUT
logger.kafka.name = kafka
logger.kafka.level = info
logger.state.name = state.change.logger
logger.state.level = warn
"""
