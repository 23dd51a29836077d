"""The real bundled model, on a handful of sentences."""

import numpy as np
import pytest

from core.settings import EmbeddingSettings
from processing import embedding
from processing.embedding import DIMENSION, get_embedder

SENTENCES = [
    "Delta Lake keeps a transaction log next to the Parquet files.",
    "Kafka partitions are ordered logs of records.",
    "The quiz asks about exactly-once stream processing.",
    "Students upload course PDFs and search them by meaning.",
    "A narwhal is a whale with a long tusk.",
]


@pytest.fixture(scope="module")
def fp32():
    return get_embedder(EmbeddingSettings(precision="fp32")).encode(SENTENCES)


def test_encode_returns_unit_384_d_float32_vectors(fp32):
    assert fp32.shape == (len(SENTENCES), DIMENSION) and fp32.dtype == np.float32
    assert np.allclose(np.linalg.norm(fp32, axis=1), 1.0, atol=1e-5)


def test_encode_puts_related_sentences_closer(fp32):
    query = get_embedder(EmbeddingSettings(precision="fp32")).encode(["How are Kafka topics split into ordered logs?"])[
        0
    ]
    assert int(np.argmax(fp32 @ query)) == 1


@pytest.mark.parametrize("precision", ["int8", "bf16"])
def test_encode_at_lower_precision_stays_close_to_fp32(fp32, precision):
    embedder = get_embedder(EmbeddingSettings(precision=precision))
    assert embedder.precision == precision  # no silent fallback to fp32
    vectors = embedder.encode(SENTENCES)
    cosine = np.sum(vectors * fp32, axis=1)
    assert vectors.shape == fp32.shape
    assert cosine.mean() >= 0.99, cosine


def _loaded_embedders() -> int:
    """How many models this process has loaded."""
    return len(embedding._CACHE)


def test_get_embedder_loads_the_model_once_per_process():
    settings = EmbeddingSettings(precision="int8")
    first = get_embedder(settings)
    count = _loaded_embedders()
    assert get_embedder(EmbeddingSettings(precision="int8")) is first
    assert _loaded_embedders() == count


def test_encode_of_nothing_is_an_empty_matrix():
    assert get_embedder(EmbeddingSettings(precision="int8")).encode([]).shape == (0, DIMENSION)


def test_explicit_precision_is_used_as_given():
    from processing.embedding import resolve_precision

    for precision in ("fp32", "bf16", "int8"):
        assert resolve_precision(precision) == precision


def test_int8_vectors_do_not_depend_on_batch_size_or_padding():
    # The ONNX graph is traced from one small sample: it must still take any batch and length.
    texts = [*SENTENCES, " ".join(SENTENCES * 6)]  # the last one pads the others in its batch
    settings = EmbeddingSettings(precision="int8")
    one_by_one = get_embedder(settings.model_copy(update={"batch_size": 1})).encode(texts)
    all_at_once = get_embedder(settings.model_copy(update={"batch_size": len(texts)})).encode(texts)
    # Not bit-equal: dynamic quantisation scales activations per batch, so batch-mates (and their
    # padding) move a vector slightly (cosine ~0.99 measured). A graph that baked in the sample's
    # shape would be far off.
    cosine = np.sum(one_by_one * all_at_once, axis=1)
    assert cosine.min() >= 0.98, cosine


def test_int8_graph_has_no_sdpa_nan_masking():
    # torch's SDPA export masks padding with IsNaN/Where nodes, which cost ~19% of int8 inference.
    import onnx

    from processing.embedding import ensure_onnx_int8

    ops = {node.op_type for node in onnx.load(str(ensure_onnx_int8(EmbeddingSettings()))).graph.node}
    assert "IsNaN" not in ops
    assert "MatMulInteger" in ops  # and the projections really are int8
