"""``lakehouse kafka topics | consume TOPIC | groups``: Apache Kafka's own tools (TopicCommand,
ConsoleConsumer, ConsumerGroupCommand) against the configured broker (deploy/kafka_tools.py)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from cli.config import load_settings as _settings
from core.settings import Settings

kafka_app = typer.Typer(help="Kafka's own tools: topics, console consumer, consumer groups", no_args_is_help=True)
_err = Console(stderr=True)


def _run(settings: Settings, command: tuple[str, list[str]]) -> None:
    from deploy.kafka_tools import KafkaToolsError, run

    main_class, args = command
    try:
        proc = run(settings, main_class, args)
    except KafkaToolsError as exc:
        _err.print(f"[red]kafka tools:[/red] {exc}")
        raise typer.Exit(2) from exc
    if proc.returncode != 0:
        raise typer.Exit(proc.returncode)


def _topic(settings: Settings, name: str, raw: bool) -> str:
    return name if raw else settings.kafka.topic(name)


@kafka_app.command("topics")
def topics(
    describe: Annotated[
        str | None, typer.Option("--describe", help="Partitions, leaders and configs of this topic")
    ] = None,
    raw: Annotated[bool, typer.Option("--raw", help="Use the name as given (no kafka.topic_prefix)")] = False,
) -> None:
    """List the topics (kafka-topics.sh --list), or describe one."""
    from deploy.kafka_tools import topics_args

    settings = _settings()
    _run(settings, topics_args(describe=_topic(settings, describe, raw) if describe else None))


@kafka_app.command("consume")
def consume(
    topic: Annotated[str, typer.Argument(help="Topic, e.g. documents.failed (kafka.topic_prefix is added)")],
    from_beginning: Annotated[bool, typer.Option("--from-beginning", help="Start at the earliest offset")] = False,
    max_messages: Annotated[int | None, typer.Option("--max", min=1, help="Stop after N messages")] = None,
    timeout_ms: Annotated[
        int | None, typer.Option("--timeout-ms", min=1, help="Stop when no message came for this long")
    ] = None,
    keys: Annotated[bool, typer.Option("--keys", help="Print each message's key too")] = False,
    raw: Annotated[bool, typer.Option("--raw", help="Use the name as given (no kafka.topic_prefix)")] = False,
) -> None:
    """Print a topic's messages (kafka-console-consumer.sh); a throwaway consumer, no platform group touched."""
    from deploy.kafka_tools import consume_args

    settings = _settings()
    command = consume_args(
        _topic(settings, topic, raw),
        from_beginning=from_beginning,
        max_messages=max_messages,
        timeout_ms=timeout_ms,
        print_key=keys,
    )
    _run(settings, command)


@kafka_app.command("groups")
def groups(
    describe: Annotated[
        str | None, typer.Option("--describe", help="Offsets and lag per partition of this consumer group")
    ] = None,
) -> None:
    """List the consumer groups (kafka-consumer-groups.sh --list), or show one group's lag."""
    from deploy.kafka_tools import groups_args

    _run(_settings(), groups_args(describe=describe))


def register(app: typer.Typer) -> None:
    app.add_typer(kafka_app, name="kafka")
