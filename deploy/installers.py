"""Installs what the local stack needs and is missing: Debian packages, Maven jars, MinIO.

Each installer is idempotent: it checks first and does nothing when the thing is already
there, so a second `stack up` on the same machine costs seconds. Every phase is timed and
reported through the ``report`` callback.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from core.settings import Settings

REPO_ROOT = Path(__file__).resolve().parent.parent
MAVEN_DIR = REPO_ROOT / "deploy" / "maven"
# Pinned: `go install` builds exactly this MinIO commit from the Go module proxy.
MINIO_MODULE = "github.com/minio/minio"
MINIO_VERSION = "v0.0.0-20260212201848-7aac2a2c5b7c"

Report = Callable[[str, float, str], None]


class InstallError(RuntimeError):
    """Something the stack needs could not be installed."""


@dataclass(frozen=True)
class Tools:
    """Paths of the binaries and classpaths the services are started with."""

    postgres_bin: Path
    redis_server: Path
    java: Path
    kafka_classpath: str
    spark_classpath_file: Path
    minio: Path


@contextmanager
def timed(report: Report, phase: str) -> Iterator[list[str]]:
    """Times the enclosed block; the block may append a note to the yielded list."""
    notes: list[str] = []
    started = time.perf_counter()
    yield notes
    report(phase, time.perf_counter() - started, "; ".join(notes))


def _run(argv: list[str], *, what: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-20:])
        raise InstallError(f"{what} failed (exit {proc.returncode}): {' '.join(argv)}\n{tail}")
    return proc.stdout


def find_postgres_bin() -> Path | None:
    """The newest PostgreSQL server binary directory from Debian's packages, if any."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    return candidates[-1].parent if candidates else None


# Programs the tests and benches drive, by the Debian package that provides them: the native
# load generator (bench/api.py), the L7 load balancer (deploy/nginx), the headless browser
# of the web page's test and the compose file's validator (deploy/manifests.py).
TOOL_PACKAGES = {"wrk": "wrk", "nginx": "nginx", "chromium": "chromium", "docker-compose": "docker-compose"}


def ensure_debian_packages(*, need_postgres: bool, need_redis: bool, need_maven: bool, report: Report) -> None:
    """apt-get installs PostgreSQL, Redis, Maven and the tools when their binaries are missing."""
    with timed(report, "debian packages") as notes:
        wanted = [package for program, package in TOOL_PACKAGES.items() if shutil.which(program) is None]
        if need_postgres and find_postgres_bin() is None:
            wanted.append("postgresql")
        if need_redis and shutil.which("redis-server") is None:
            wanted.append("redis-server")
        if need_maven and shutil.which("mvn") is None:
            wanted.append("maven")
        if not wanted:
            notes.append("already installed")
            return
        if os.geteuid() != 0:
            raise InstallError(
                f"missing Debian packages {wanted}; run as root or install them: apt-get install {' '.join(wanted)}"
            )
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        _run(["apt-get", "update", "-q"], what="apt-get update", env=env)
        _run(
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", *wanted],
            what="apt-get install",
            env=env,
        )
        notes.append("installed " + ", ".join(wanted))


def _pom_hash(pom: Path) -> str:
    return hashlib.sha256(pom.read_bytes()).hexdigest()[:12]


def _maven_classpath(name: str, *, cache_dir: Path) -> list[Path]:
    """Resolves deploy/maven/<name>/pom.xml into Maven's local repository; returns the jars."""
    pom = MAVEN_DIR / name / "pom.xml"
    out = cache_dir / "maven" / f"{name}-{_pom_hash(pom)}.classpath"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        _run(
            ["mvn", "-q", "-B", "dependency:build-classpath", "-DincludeScope=runtime", f"-Dmdep.outputFile={tmp}"],
            what=f"Maven resolution of {name} jars",
            cwd=pom.parent,
        )
        tmp.replace(out)
    return [Path(p) for p in out.read_text().strip().split(os.pathsep) if p]


_JAR_VERSION = re.compile(r"-\d[\w.+-]*\.jar$")


def _artifact_name(jar: Path) -> str:
    return _JAR_VERSION.sub("", jar.name)


def pyspark_jars_dir() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent / "jars"


def connector_jars(resolved: list[Path], spark_jars: list[Path]) -> list[Path]:
    """Drops jars Spark already ships (any version): two copies of a class on the
    classpath break Spark in ways that are hard to see (Jackson, Hadoop, Scala, Parquet)."""
    shipped = {_artifact_name(j) for j in spark_jars}
    return [j for j in resolved if _artifact_name(j) not in shipped]


def ensure_maven_jars(*, cache_dir: Path, report: Report) -> tuple[str, Path]:
    """Kafka broker classpath and the file listing Spark's connector jars."""
    with timed(report, "maven jars") as notes:
        before = {p.name for p in (cache_dir / "maven").glob("*.classpath")}
        kafka = _maven_classpath("kafka", cache_dir=cache_dir)
        spark_resolved = _maven_classpath("spark", cache_dir=cache_dir)
        spark = connector_jars(spark_resolved, sorted(pyspark_jars_dir().glob("*.jar")))
        spark_file = cache_dir / "maven" / "spark-connectors.list"
        spark_file.write_text("\n".join(str(j) for j in spark) + "\n")
        missing = [j for j in [*kafka, *spark] if not j.exists()]
        if missing:
            raise InstallError(f"resolved jars are missing from Maven's repository: {missing[:3]}")
        after = {p.name for p in (cache_dir / "maven").glob("*.classpath")}
        notes.append("resolved" if after - before else "cached")
        notes.append(f"{len(kafka)} broker jars, {len(spark)} Spark connector jars")
    return os.pathsep.join(str(j) for j in kafka), spark_file


def ensure_minio(*, cache_dir: Path, report: Report) -> Path:
    """Builds the pinned MinIO server with `go install` once per machine."""
    binary = cache_dir / "bin" / f"minio-{MINIO_VERSION}"
    with timed(report, "object store (minio)") as notes:
        if binary.exists():
            notes.append("cached binary")
            return binary
        go = shutil.which("go")
        if go is None:
            raise InstallError("the Go toolchain is needed to build MinIO (`go install`), and `go` is not on PATH")
        gobin = cache_dir / "bin" / "build"
        gobin.mkdir(parents=True, exist_ok=True)
        _run(
            [go, "install", f"{MINIO_MODULE}@{MINIO_VERSION}"],
            what="go install minio",
            env={**os.environ, "GOBIN": str(gobin), "CGO_ENABLED": "0"},
        )
        (gobin / "minio").replace(binary)
        notes.append(f"built {MINIO_VERSION}")
    return binary


def ensure_tools(settings: Settings, report: Report) -> Tools:
    """Everything `stack up` needs, installed if missing."""
    services = set(settings.stack.services)
    cache_dir = settings.stack.cache_dir
    if not settings.stack.install_missing:
        report("install", 0.0, "skipped (stack.install_missing=false)")
    else:
        ensure_debian_packages(
            need_postgres="postgres" in services,
            need_redis=bool({"redis", "redis-cluster"} & services),
            need_maven=True,
            report=report,
        )
    java = shutil.which("java")
    if java is None:
        raise InstallError("java (17 or newer) is needed for Kafka and Spark, and is not on PATH")
    kafka_cp, spark_file = ensure_maven_jars(cache_dir=cache_dir, report=report)
    minio = ensure_minio(cache_dir=cache_dir, report=report) if "objectstore" in services else Path("minio")
    pg_bin = find_postgres_bin()
    redis = shutil.which("redis-server")
    return Tools(
        postgres_bin=pg_bin or Path("/usr/lib/postgresql/15/bin"),
        redis_server=Path(redis or "redis-server"),
        java=Path(java),
        kafka_classpath=kafka_cp,
        spark_classpath_file=spark_file,
        minio=minio,
    )
