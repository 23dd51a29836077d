"""Fixtures shared by the lake unit tests."""

import pytest

from core.settings import Settings
from lake import index_versions


@pytest.fixture
def settings(tmp_path) -> Settings:
    """Test settings on a private LanceDB that sees every write at once, nothing remembered of
    earlier live versions."""
    data = Settings(environment="test").model_dump()
    data["lancedb"].update(uri=str(tmp_path / "lancedb"), read_consistency_s=0.0)
    index_versions.forget_live()
    return Settings(**data)
