"""``embedding.precision=auto``: the precision is chosen by a short measurement, not by CPU flags.

Every precision this process can run (fp32, int8 ONNX Runtime, bf16 autocast) encodes the same
fixed sample of chunk-sized text; those whose vectors keep a mean cosine >= ``MIN_COSINE`` with
fp32's are eligible, and the fastest of them wins. Flags did not predict the winner: on an AMD
EPYC with avx512_bf16 (no AMX) bf16 ran anywhere from 14.7 to 100.7 chunks/s across sessions
while int8 ran 65-185.

The result is cached as JSON in the per-machine model cache (``embedding.cache_dir``), keyed by
what decides it: CPU model and the SIMD flags that matter, torch / onnxruntime / model package
versions, threads, batch size and this module's sample version. It is therefore measured once
per CPU model and software stack; every later process (each Spark Python worker, the API) reads
the file. A file lock makes concurrent first callers measure once. The ingestion stream's
driver resolves it in ``prepare()`` before any worker loads the model.

This module takes the encoder as a factory (``processing.embedding.Embedder``), so it does not
import the embedding module that calls it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import platform
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np

    from core.settings import EmbeddingSettings

log = logging.getLogger(__name__)

CALIBRATION_VERSION = 1  # bump when the sample or the procedure changes: old files are ignored
MIN_COSINE = 0.99
SAMPLE_CHUNKS = 96
ROUNDS = 2  # interleaved; the best round counts (a noisy neighbour slows every precision alike)
BUDGET_S = 5.0  # per precision and round: an emulated precision stops early, its rate is known
PRECISIONS = ("fp32", "int8", "bf16")  # fp32 first: it is the reference
RELEVANT_FLAGS = (
    *("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni"),
    *("amx_bf16", "amx_int8", "amx_tile"),
)


class Encoder(Protocol):
    @property
    def precision(self) -> str: ...

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


@dataclass(frozen=True)
class Calibration:
    chosen: str
    speeds: dict[str, float]  # chunks/s of each precision measured
    cosines: dict[str, float]  # mean cosine vs fp32 on the sample
    key: dict[str, Any]
    measured_at: str
    seconds: float  # how long the measurement took
    from_cache: bool = field(default=False, compare=False)


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "absent"


def calibration_key(settings: EmbeddingSettings, *, sample: int = SAMPLE_CHUNKS) -> dict[str, Any]:
    """What the choice depends on; a change of any of it means measuring again."""
    flags = cpu_flags()
    return {
        "version": CALIBRATION_VERSION,
        "cpu_model": cpu_model(),
        "cpu_flags": [f for f in RELEVANT_FLAGS if f in flags],
        "torch": _version("torch"),
        "onnxruntime": _version("onnxruntime"),
        "model_package": f"{settings.model_package}=={_version(settings.model_package.replace('_', '-'))}",
        "threads": settings.threads,
        "batch_size": settings.batch_size,
        "sample": sample,
    }


def cache_path(settings: EmbeddingSettings, *, cache_dir: Path | None = None, sample: int = SAMPLE_CHUNKS) -> Path:
    key = json.dumps(calibration_key(settings, sample=sample), sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return (cache_dir or settings.cache_dir) / f"precision-calibration-{digest}.json"


def sample_texts(count: int = SAMPLE_CHUNKS, *, chars: int = 1000) -> list[str]:
    """A fixed sample of chunk-sized texts (the demo book's pages cut like the splitter cuts them)."""
    from processing.samples import page_text

    texts: list[str] = []
    page = 1
    while len(texts) < count:
        current: list[str] = []
        for word in page_text(page).split():
            if sum(map(len, current)) + len(current) + len(word) > chars:
                texts.append(" ".join(current))
                current = []
            current.append(word)
        page += 1
    return texts[:count]


_MEMO: dict[Path, Calibration] = {}
_MEMO_LOCK = threading.Lock()


def calibrate(
    settings: EmbeddingSettings,
    make_encoder: Callable[[EmbeddingSettings], Encoder],
    *,
    cache_dir: Path | None = None,
    sample: int = SAMPLE_CHUNKS,
) -> Calibration:
    """The calibrated precision for this machine: from this process's memo, else the cache file,
    else measured now (and cached). ``make_encoder`` builds an encoder for explicit settings."""
    path = cache_path(settings, cache_dir=cache_dir, sample=sample)
    with _MEMO_LOCK:
        if path in _MEMO:
            return _MEMO[path]
        result = _read(path)
        if result is None:
            with _file_lock(path):  # another process may be measuring: wait, then read its result
                result = _read(path)
                if result is None:
                    result = measure(settings, make_encoder, sample=sample)
                    _write(path, result)
        _MEMO[path] = result
    return result


def measure(
    settings: EmbeddingSettings, make_encoder: Callable[[EmbeddingSettings], Encoder], *, sample: int = SAMPLE_CHUNKS
) -> Calibration:
    """Encodes the sample with every precision available here; picks the fastest close to fp32."""
    import numpy as np

    began = time.perf_counter()
    texts = sample_texts(sample)
    encoders: dict[str, Encoder] = {}
    for precision in PRECISIONS:
        try:
            encoder = make_encoder(settings.model_copy(update={"precision": precision}))
        except Exception as exc:  # noqa: BLE001 - a precision this machine cannot run is not a candidate
            log.warning("calibration: %s unavailable (%s: %s)", precision, type(exc).__name__, exc)
            continue
        if encoder.precision != precision:  # e.g. int8 without the export dependencies
            continue
        encoder.encode(texts[:4])  # first-call allocations, untimed
        encoders[precision] = encoder
    rates: dict[str, float] = {}
    vectors: dict[str, np.ndarray] = {}
    for _ in range(ROUNDS):
        for precision, encoder in encoders.items():
            done, seconds, parts = 0, 0.0, []
            for begin in range(0, len(texts), 16):
                started = time.perf_counter()
                parts.append(encoder.encode(texts[begin : begin + 16]))
                seconds += time.perf_counter() - started
                done += len(parts[-1])
                if seconds > BUDGET_S:
                    break
            rates[precision] = max(rates.get(precision, 0.0), done / seconds)
            if len(vectors.get(precision, ())) < done:
                vectors[precision] = np.concatenate(parts)
    reference = vectors["fp32"]
    cosines = {}
    for precision, found in vectors.items():
        n = min(len(found), len(reference))
        cosines[precision] = float(np.mean(np.sum(found[:n] * reference[:n], axis=1)))
    eligible = [p for p in rates if cosines[p] >= MIN_COSINE]
    chosen = max(eligible, key=lambda p: rates[p])
    result = Calibration(
        chosen=chosen,
        speeds={p: round(r, 2) for p, r in rates.items()},
        cosines={p: round(c, 5) for p, c in cosines.items()},
        key=calibration_key(settings, sample=sample),
        measured_at=datetime.now(UTC).isoformat(timespec="seconds"),
        seconds=round(time.perf_counter() - began, 2),
    )
    log.info(
        "embedding precision calibrated: %s (chunks/s %s; cosine vs fp32 %s; %d threads; %.1f s)",
        chosen, result.speeds, result.cosines, settings.threads, result.seconds,
    )  # fmt: skip
    return result


def _read(path: Path) -> Calibration | None:
    try:
        raw = json.loads(path.read_text())
        result = Calibration(**{**raw, "from_cache": True})
    except (OSError, ValueError, TypeError):
        return None
    log.info("embedding precision %s, calibrated %s (chunks/s %s) [%s]", result.chosen, result.measured_at,
             result.speeds, path)  # fmt: skip
    return result


def _write(path: Path, result: Calibration) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    body = {k: v for k, v in asdict(result).items() if k != "from_cache"}
    tmp.write_text(json.dumps(body, indent=2, sort_keys=True))
    os.replace(tmp, path)  # atomic: a reader never sees half a file


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
