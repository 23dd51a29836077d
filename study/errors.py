"""Typed errors of study-material generation."""

from __future__ import annotations


class GenerationError(Exception):
    """A generator could not produce valid material (e.g. the LLM kept answering invalid JSON).

    ``step`` names the generation step, ``raw`` holds the last raw answer for the job's log.
    """

    def __init__(self, message: str, *, step: str = "", raw: str = "") -> None:
        super().__init__(message)
        self.step = step
        self.raw = raw
