"""``embedding.precision=auto``: measured on the real model, once, then read from the cache."""

import json

from core.settings import EmbeddingSettings
from processing import calibration
from processing.embedding import Embedder


def test_calibration_picks_a_close_precision_then_reads_the_cache(tmp_path, monkeypatch):
    settings = EmbeddingSettings()
    first = calibration.calibrate(settings, Embedder, cache_dir=tmp_path, sample=24)
    assert not first.from_cache
    assert set(first.speeds) >= {"fp32", "int8"} and set(first.speeds) == set(first.cosines)
    assert first.cosines[first.chosen] >= calibration.MIN_COSINE
    eligible = [p for p, c in first.cosines.items() if c >= calibration.MIN_COSINE]
    assert first.speeds[first.chosen] == max(first.speeds[p] for p in eligible)
    (path,) = tmp_path.glob("precision-calibration-*.json")
    assert json.loads(path.read_text())["chosen"] == first.chosen

    # A new process (no memo) reads the file and measures nothing.
    calibration._MEMO.clear()

    def no_measuring(*args, **kwargs):
        raise AssertionError("measured again although the cache holds the result")

    monkeypatch.setattr(calibration, "measure", no_measuring)
    second = calibration.calibrate(settings, Embedder, cache_dir=tmp_path, sample=24)
    assert second.from_cache and second.chosen == first.chosen and second.speeds == first.speeds


def test_cache_key_follows_what_decides_the_choice():
    base = EmbeddingSettings()
    assert calibration.cache_path(base) == calibration.cache_path(EmbeddingSettings())
    assert calibration.cache_path(base) != calibration.cache_path(base.model_copy(update={"threads": 1}))
    key = calibration.calibration_key(base)
    assert key["cpu_model"] == calibration.cpu_model() and key["torch"] != "absent"


def test_sample_is_fixed_and_chunk_sized():
    texts = calibration.sample_texts(8)
    assert texts == calibration.sample_texts(8)
    assert len(texts) == 8 and all(800 <= len(t) <= 1000 for t in texts)
