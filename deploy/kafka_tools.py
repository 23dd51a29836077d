"""Apache Kafka's own command-line tools (``kafka-tools`` 4.4.0, resolved with the broker from
deploy/maven/kafka/pom.xml) run on the broker's classpath against ``settings.kafka.servers``:
``TopicCommand`` (kafka-topics.sh), ``ConsoleConsumer`` (kafka-console-consumer.sh) and
``ConsumerGroupCommand`` (kafka-consumer-groups.sh)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from core.settings import Settings

TOPIC_COMMAND = "org.apache.kafka.tools.TopicCommand"
CONSOLE_CONSUMER = "org.apache.kafka.tools.consumer.ConsoleConsumer"
CONSUMER_GROUP_COMMAND = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand"

# The tools log warnings to stderr only; their answers go to stdout.
_LOG4J = """\
status = warn
appender.err.type = Console
appender.err.name = STDERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.err.ref = STDERR
"""


class KafkaToolsError(RuntimeError):
    """Kafka's tools cannot run here (no java, jars not resolved); the message says what to do."""


def tools_classpath(settings: Settings) -> str:
    """The broker's classpath (with kafka-tools), resolved by Maven once and cached like `stack up`'s."""
    from deploy.installers import InstallError, _maven_classpath

    try:
        jars = _maven_classpath("kafka", cache_dir=settings.stack.cache_dir)
    except InstallError as exc:
        raise KafkaToolsError(f"cannot resolve Kafka's jars (run `lakehouse stack up` once): {exc}") from exc
    if not any(jar.name.startswith("kafka-tools-") for jar in jars):
        raise KafkaToolsError("kafka-tools is not on the broker classpath; see deploy/maven/kafka/pom.xml")
    return ":".join(str(jar) for jar in jars)


def tool_argv(settings: Settings, main_class: str, args: list[str]) -> list[str]:
    """``java ... <main_class> --bootstrap-server <servers> <args>``: a small, quick-starting JVM."""
    java = shutil.which("java")
    if java is None:
        raise KafkaToolsError("java (17 or newer) is needed for Kafka's tools, and is not on PATH")
    log4j = Path(settings.stack.cache_dir) / "kafka-tools-log4j2.properties"
    if not log4j.exists() or log4j.read_text() != _LOG4J:
        log4j.parent.mkdir(parents=True, exist_ok=True)
        log4j.write_text(_LOG4J)
    jvm = ["-Xmx128m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", f"-Dlog4j2.configurationFile={log4j}"]
    return [
        java,
        *jvm,
        "-cp",
        tools_classpath(settings),
        main_class,
        "--bootstrap-server",
        settings.kafka.servers,
        *args,
    ]


def topics_args(*, describe: str | None = None) -> tuple[str, list[str]]:
    return TOPIC_COMMAND, (["--describe", "--topic", describe] if describe else ["--list"])


def consume_args(
    topic: str, *, from_beginning: bool, max_messages: int | None, timeout_ms: int | None, print_key: bool
) -> tuple[str, list[str]]:
    args = ["--topic", topic]
    if from_beginning:
        args.append("--from-beginning")
    if max_messages is not None:
        args += ["--max-messages", str(max_messages)]
    if timeout_ms is not None:
        args += ["--timeout-ms", str(timeout_ms)]
    if print_key:
        args += ["--formatter-property", "print.key=true"]
    return CONSOLE_CONSUMER, args


def groups_args(*, describe: str | None = None) -> tuple[str, list[str]]:
    return CONSUMER_GROUP_COMMAND, (["--describe", "--group", describe] if describe else ["--list"])


def run(
    settings: Settings, main_class: str, args: list[str], *, capture: bool = False, timeout_s: float | None = None
) -> subprocess.CompletedProcess[str]:
    """Runs one tool; output goes to this process's stdout/stderr unless ``capture``."""
    return subprocess.run(
        tool_argv(settings, main_class, args),
        stdin=subprocess.DEVNULL,
        capture_output=capture,
        text=True,
        check=False,
        timeout=timeout_s,
    )
