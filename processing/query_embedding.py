"""The query embedder of a serving process: the pipeline's int8 ONNX model, never torch.

A query is one short sentence; the API encodes it with the same int8 per-channel ONNX export
the pipeline uses (``processing.embedding``), through onnxruntime + tokenizers only, so an API
instance does not carry the torch runtime (~1 GB resident). Exporting the model needs torch:
when the exported file is missing, ``ensure_query_model`` runs the export in a child process
(once per installation; the file is cached), so the serving process itself never imports it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from core.settings import PROJECT_ROOT, EmbeddingSettings
from processing.embedding import Embedder, onnx_cache_path

QUERY_THREADS = 1  # a query is a few tokens: more threads only add hand-off cost


class QueryModelMissing(RuntimeError):
    """The int8 ONNX model could not be exported (the export needs torch and the `onnx` package)."""


def ensure_query_model(settings: EmbeddingSettings, *, timeout_s: float = 600) -> Path:
    """The int8 ONNX file, exported in a child process if it is not cached yet."""
    target = onnx_cache_path(settings)
    if target.exists():
        return target
    code = (
        "import sys; from core.settings import EmbeddingSettings; "
        "from processing.embedding import ensure_onnx_int8; "
        "print(ensure_onnx_int8(EmbeddingSettings.model_validate_json(sys.argv[1])))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, settings.model_dump_json()],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if done.returncode != 0 or not target.exists():
        raise QueryModelMissing(f"exporting the int8 ONNX model failed: {done.stderr.strip()[-500:]}")
    return target


def query_embedder(settings: EmbeddingSettings, *, threads: int = QUERY_THREADS) -> Embedder:
    """An int8 ONNX Embedder for queries (whatever precision the pipeline embeds with)."""
    import onnxruntime  # noqa: F401 - fail here: Embedder would fall back to torch without them
    import tokenizers  # noqa: F401

    path = ensure_query_model(settings)
    embedder = Embedder(settings.model_copy(update={"precision": "int8"}), threads=threads, onnx_model=path)
    if embedder.precision != "int8":  # onnxruntime or tokenizers missing: refuse to load torch here
        raise QueryModelMissing("onnxruntime and tokenizers are needed for the query embedder")
    return embedder
