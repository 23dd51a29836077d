"""Notes of a document as a map-reduce over its sections: notes per section (map), an overview
from those notes (reduce), then key terms with definitions; scored before they are returned."""

from __future__ import annotations

from collections.abc import Callable

from study.generators import StudyGenerator
from study.models import DocumentText, Notes, SectionNote, stable_id
from study.quality import DEFAULT_THRESHOLDS, QualityThresholds, notes_quality
from study.sections import section_pages_of, split_sections

Progress = Callable[[int, int], None]


def notes_id(doc: DocumentText, generator_version: str, section_pages: int) -> str:
    """The stable id of the notes of this document version by this generator and sectioning."""
    return stable_id(doc.document_id, doc.version, generator_version, "notes", section_pages)


def generate_notes(
    doc: DocumentText,
    *,
    generator: StudyGenerator,
    section_pages: int = 10,
    progress: Progress | None = None,
    thresholds: QualityThresholds = DEFAULT_THRESHOLDS,
) -> Notes:
    """Notes with page citations for every section of ``doc``; ``progress(done, total)`` after each section.

    Raises ``GenerationError`` when the generator cannot produce valid material for a step.
    """
    sections = split_sections(doc, section_pages=section_pages)
    section_notes: list[SectionNote] = []
    for done, section in enumerate(sections, start=1):
        sentences = generator.section_notes(section, section_pages_of(doc, section))
        section_notes.append(SectionNote(section=section, sentences=sentences))
        if progress is not None:
            progress(done, len(sections))
    overview = generator.overview(section_notes)
    key_terms = generator.key_terms(doc, section_notes)
    quality = notes_quality(doc, section_notes, overview=overview, key_terms=key_terms, thresholds=thresholds)
    return Notes(
        notes_id=notes_id(doc, generator.version, section_pages),
        document_id=doc.document_id,
        version=doc.version,
        course_id=doc.course_id,
        generator=generator.name,
        generator_version=generator.version,
        sections=section_notes,
        overview=overview,
        key_terms=key_terms,
        quality=quality,
    )
