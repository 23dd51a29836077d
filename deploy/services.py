"""How to start, probe and set up each service of the local stack (PostgreSQL, Redis, Redis
Cluster, Kafka in KRaft mode, MinIO): one builder per service, used by ``deploy.stack.Stack``."""

from __future__ import annotations

import signal
import subprocess
import time
import uuid
from pathlib import Path

from deploy.installers import Tools
from deploy.service import LOOPBACK, Service, ServiceStartError, StackPlaces


def postgres_service(stack: StackPlaces, tools: Tools | None) -> Service:
    from deploy import pg_setup

    pg = stack.settings.postgres
    data = stack.data_dir("postgres") / "data"
    sockets = stack.data_dir("postgres") / "run"
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
            "fsync=off" if stack.settings.environment != "production" else "fsync=on",
        ],
        user="postgres",
        stop_signal=signal.SIGINT,  # "fast" shutdown: roll back open transactions, exit
        prepare=lambda: pg_setup.init_cluster(bin_dir=bin_dir, data_dir=data, socket_dir=sockets),
        health=lambda: pg_setup.ping(socket_dir=sockets, port=pg.port),
        after_start=lambda: pg_setup.create_role_and_databases(pg, socket_dir=sockets, migrate=True),
    )


def redis_service(stack: StackPlaces, tools: Tools | None) -> Service:
    rs = stack.settings.redis
    data = stack.data_dir("redis")

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


def redis_cluster_service(stack: StackPlaces, tools: Tools | None) -> Service:
    """Optional: a 3-primary Redis Cluster on loopback (for testing the cluster code path).

    One shell supervises the nodes, so the service is one process group like the others.
    The cluster bus of node ``p`` listens on ``p + 100`` (the default ``p + 10000`` would
    not fit in the port range for the default ports). Every start makes a fresh cluster.
    """
    import shlex
    import shutil

    ports = stack.settings.redis.cluster_ports
    home = stack.data_dir("redis-cluster")
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
            deadline = time.monotonic() + stack.settings.stack.start_timeout_s
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


def kafka_service(stack: StackPlaces, tools: Tools | None) -> Service:
    ks = stack.settings.kafka
    home = stack.data_dir("kafka")
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


def minio_service(stack: StackPlaces, tools: Tools | None) -> Service:
    os_ = stack.settings.object_store
    data = stack.data_dir("minio") / "data"

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
