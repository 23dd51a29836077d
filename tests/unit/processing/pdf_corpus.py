"""The bad-input corpus, generated (no binary is committed): each entry builds the bytes of one
hostile or broken upload. Hand-written PDFs use a minimal writer (objects, xref, trailer) so a
10,000-page file or a decompression bomb costs milliseconds and a few MB to build."""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable

from processing import samples


def build_pdf(objects: list[bytes], *, root: int = 1, trailer_extra: bytes = b"") -> bytes:
    """A PDF of ``objects`` (object i + 1 is ``objects[i]``) with a correct xref table."""
    out = io.BytesIO()
    out.write(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    out.write(b"".join(b"%010d 00000 n \n" % offset for offset in offsets))
    out.write(
        b"trailer\n<< /Size %d /Root %d 0 R%s >>\nstartxref\n%d\n%%%%EOF\n"
        % (len(objects) + 1, root, trailer_extra, xref)
    )
    return out.getvalue()


def _stream(data: bytes, *, flate: bool = False) -> bytes:
    if flate:
        data = zlib.compress(data, 9)
        return b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(data) + data + b"\nendstream"
    return b"<< /Length %d >>\nstream\n" % len(data) + data + b"\nendstream"


_FONT = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"
_PAGE = (
    b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> /Contents 4 0 R >>"
)


def text_pdf(pages: int, content: bytes | None = None, *, flate: bool = False, catalog_extra: bytes = b"",
             info: bytes | None = None) -> bytes:  # fmt: skip
    """``pages`` pages sharing one content stream (objects: catalog, pages, font, content, page...)."""
    content = content if content is not None else b"BT /F1 12 Tf 72 720 Td (A page of a long book.) Tj ET"
    kids = b" ".join(b"%d 0 R" % (5 + i) for i in range(pages))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R" + catalog_extra + b" >>",
        b"<< /Type /Pages /Kids [" + kids + b"] /Count %d >>" % pages,
        _FONT,
        _stream(content, flate=flate),
    ]
    objects += [_PAGE] * pages
    if info is not None:
        objects.append(info)
        return build_pdf(objects, trailer_extra=b" /Info %d 0 R" % len(objects))
    return build_pdf(objects)


def ten_thousand_pages() -> bytes:
    return text_pdf(10_000)


def one_long_line(mib: int = 5) -> bytes:
    """One page whose text is a single ``mib`` MiB line: strings of 32 KiB shown one after the
    other (PDFium keeps at most 32,767 characters of one string)."""
    piece = b"(" + b"x" * 32768 + b") Tj "
    return text_pdf(1, b"BT /F1 1 Tf 0 700 Td " + piece * (32 * mib) + b"ET")


def decompression_bomb(expanded_mb: int = 1536) -> bytes:
    """A few-MB file whose one content stream inflates to ``expanded_mb`` MiB of text operators.

    Built without compressing gigabytes: one MiB is deflated once and ended with a full flush (a
    byte-aligned run of blocks that refers to nothing before it), so the run repeated N times is
    a valid zlib stream of N MiB (header, runs, final block, Adler-32 of the whole)."""
    unit = b"BT /F1 9 Tf 9 9 Td (bomb) Tj ET\n" * 32768  # 1 MiB
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    run = packer.compress(unit) + packer.flush(zlib.Z_FULL_FLUSH)
    checksum = 1
    for _ in range(expanded_mb):
        checksum = zlib.adler32(unit, checksum)
    body = b"\x78\xda" + run * expanded_mb + packer.flush(zlib.Z_FINISH) + checksum.to_bytes(4, "big")
    stream = b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(body) + body + b"\nendstream"
    kids = b"5 0 R"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [" + kids + b"] /Count 1 >>",
        _FONT,
        stream,
        _PAGE,
    ]
    return build_pdf(objects)


def deeply_nested() -> bytes:
    """A page whose resources hold arrays nested 100,000 deep (recursive parsers overflow)."""
    depth = 100_000
    nested = b"[" * depth + b"]" * depth
    page = (b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> /Deep "
            + nested + b" >> /Contents 4 0 R >>")  # fmt: skip
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [5 0 R] /Count 1 >>",
        _FONT,
        _stream(b"BT /F1 12 Tf 72 720 Td (Nested but readable.) Tj ET"),
        page,
    ]
    return build_pdf(objects)


def corrupt_xref() -> bytes:
    """A good PDF whose xref offsets all point to the wrong bytes."""
    data = samples.short_pdf("The cross-reference table of this file lies.", pages=3)
    start = data.rindex(b"\nxref\n")
    table_end = data.index(b"trailer", start)
    table = data[start:table_end]
    broken = b"".join(
        (b"%010d" % (int(line[:10]) + 7) + line[10:]) if line.endswith(b" n ") else line for line in table.split(b"\n")
    )
    return data[:start] + broken.replace(b"xref", b"\nxref", 1)[1:] + data[table_end:]


def malicious_metadata() -> bytes:
    """Readable text, with JavaScript, a launch action and hostile strings in the metadata."""
    script = b"<< /Type /Action /S /JavaScript /JS (app.alert\\('pwned'\\); this.exportDataObject\\({}\\)) >>"
    info = (b"<< /Title (<script>alert\\(1\\)</script>\\000'; DROP TABLE documents; --) /Author ("
            + b"\xe2\x80\xae" + b"A" * 65_000 + b") /Producer (../../../../etc/passwd) >>")  # fmt: skip
    return text_pdf(
        1,
        b"BT /F1 12 Tf 72 720 Td (Readable lecture text despite the metadata.) Tj ET",
        catalog_extra=b" /OpenAction " + script + b" /AA << /WC << /S /Launch /F (cmd.exe) >> >>",
        info=info,
    )


def encrypted_without_user_password() -> bytes:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(samples.short_pdf("Owner password only.", pages=1))))
    writer.encrypt(user_password="", owner_password="owner-only", algorithm="AES-256")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


# name -> (bytes builder, expected: a reason prefix, or "text:" + words the extracted text must hold)
CORPUS: dict[str, tuple[Callable[[], bytes], str]] = {
    "truncated": (samples.truncated_pdf, "truncated PDF:"),
    "corrupt xref": (corrupt_xref, "text:cross-reference table of this file lies"),
    "encrypted, user password": (samples.encrypted_pdf, "encrypted PDF:"),
    "encrypted, no user password": (encrypted_without_user_password, "text:Owner password only"),
    "zero pages": (samples.empty_pdf, "empty PDF:"),
    "10,000 pages": (ten_thousand_pages, "too many pages: the PDF has 10,000 pages"),
    "image only": (samples.image_only_pdf, "no extractable text"),
    # PDFium needs ~200 bytes per character of a text page: 5 MiB of text exhausts the memory budget
    "one 5 MB line": (one_long_line, "too big or damaged to read"),
    "one 1 MB line": (lambda: one_long_line(1), "page 1 has 1,048,544 characters of text and the limit is"),
    "zip named .pdf": (samples.not_a_pdf, "not a PDF:"),
    "html named .pdf": (lambda: b"<!doctype html><html><body>%PDF? no</body></html>", "not a PDF:"),
    "empty file": (lambda: b"", "not a PDF:"),
    "garbage between header and trailer": (samples.corrupt_pdf, "corrupt PDF:"),
    "malicious metadata": (malicious_metadata, "text:Readable lecture text despite the metadata"),
    "decompression bomb": (decompression_bomb, "too "),
    "deeply nested objects": (deeply_nested, "text:Nested but readable"),
}
