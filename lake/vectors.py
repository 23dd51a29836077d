"""LanceDB behind a small interface: connect from Settings."""

from __future__ import annotations

from typing import TYPE_CHECKING

from core.settings import LanceDBSettings

if TYPE_CHECKING:
    import lancedb


def connect(settings: LanceDBSettings) -> lancedb.DBConnection:
    import lancedb

    return lancedb.connect(settings.uri)
