"""Document loaders (txt, md, html, pdf, docx) and the records a file becomes.

The PDF and DOCX files are generated here from Normans.md: the PDF with fpdf2
(a test dependency), the DOCX with python-docx.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import docx
import pytest
from fpdf import FPDF

from spyglass.errors import ConfigError
from spyglass.ingest.documents import Document
from spyglass.ingest.passages import DocumentSource, file_records
from spyglass.ingest.readers import read_document
from spyglass.ingest.records import Record
from spyglass.ingest.tokens import Tokens
from tests.ingest.conftest import RAG


def squashed(text: str) -> str:
    return " ".join(text.split())


def normans_paragraphs(normans: str) -> list[str]:
    return [p for p in normans.split("\n\n") if p.strip() and not p.startswith("#")]


def load(path: Path) -> Document:
    return read_document(path, path.read_bytes())


def records_of(path: Path, tokens: Tokens, **options: int) -> list[Record]:
    source = DocumentSource(path, path.parent, (path,), 100, **options)
    data = path.read_bytes()
    return file_records(source, path, data, hashlib.sha256(data).hexdigest(), tokens)


def check_offsets(document: Document, records: list[Record]) -> None:
    """Each chunk is the slice of its part's text that its offsets name."""
    by_page = {part.page: part.text for part in document.parts}
    for record in records:
        payload = record.payload
        text = by_page[payload.get("page")]
        assert text[payload["start"] : payload["end"]] == record.text


# PDF


def write_pdf(path: Path, pages: list[list[str]], title: str | None) -> Path:
    """A PDF with each page's paragraphs in Helvetica (Latin-1 only: dashes become '-')."""
    pdf = FPDF()
    if title is not None:
        pdf.set_title(title)
    for paragraphs in pages:
        pdf.add_page()
        pdf.set_font("helvetica", size=11)
        for paragraph in paragraphs:
            pdf.multi_cell(0, 5, latin1(paragraph))
            pdf.ln(4)
    pdf.output(str(path))
    return path


def latin1(text: str) -> str:
    return text.replace("—", "-").replace("–", "-")


def test_pdf_has_one_part_per_page_with_its_text_and_the_metadata_title(
    tmp_path: Path, normans: str, tokens: Tokens
) -> None:
    paragraphs = normans_paragraphs(normans)
    pages = [paragraphs[0:3], paragraphs[3:4], paragraphs[4:9]]
    path = write_pdf(tmp_path / "normans.pdf", pages, title="The Normans")
    document = load(path)
    assert document.title == "The Normans"
    assert [part.page for part in document.parts] == [1, 2, 3]
    for part, expected in zip(document.parts, pages, strict=True):
        assert part.sections is None
        assert squashed(part.text) == squashed(latin1(" ".join(expected)))
    records = records_of(path, tokens)
    check_offsets(document, records)
    assert [r.payload["chunk_index"] for r in records] == list(range(len(records)))
    assert {r.payload["page"] for r in records} == {1, 2, 3}
    assert [r.payload["page"] for r in records] == sorted(r.payload["page"] for r in records)
    assert all("headings" not in r.payload for r in records)
    second = [r for r in records if r.payload["page"] == 2]
    assert len(second) == 1 and squashed(second[0].text) == squashed(pages[1][0])


def test_pdf_without_title_is_titled_by_its_name_and_blank_pages_give_no_chunks(
    tmp_path: Path, tokens: Tokens
) -> None:
    path = write_pdf(tmp_path / "scan.pdf", [[], ["Only text, on page two."]], title=None)
    document = load(path)
    assert document.title == "scan"
    assert [squashed(p.text) for p in document.parts] == ["", "Only text, on page two."]
    records = records_of(path, tokens)
    assert [(r.id, r.payload["page"]) for r in records] == [("scan.pdf#0", 2)]


def test_broken_pdf_and_docx_name_the_file(tmp_path: Path) -> None:
    bad_pdf = tmp_path / "bad.pdf"
    bad_pdf.write_bytes(b"%PDF-1.4 not really")
    with pytest.raises(ConfigError, match=r"bad\.pdf: not a readable PDF"):
        load(bad_pdf)
    bad_docx = tmp_path / "bad.docx"
    bad_docx.write_bytes(b"PK not a zip")
    with pytest.raises(ConfigError, match=r"bad\.docx: not a readable DOCX file"):
        load(bad_docx)


# DOCX


def write_docx(path: Path, normans: str) -> Path:
    paragraphs = normans_paragraphs(normans)
    document = docx.Document()
    document.core_properties.title = "Normans (from DOCX)"
    document.add_paragraph("Normans", style="Title")
    document.add_heading("Normans", 1)
    for paragraph in paragraphs[:3]:
        document.add_paragraph(paragraph)
    document.add_heading("Etymology", 2)
    document.add_paragraph(paragraphs[3])
    table = document.add_table(rows=2, cols=2)
    for (row, col), value in {(0, 0): "year", (0, 1): "event", (1, 0): "911"}.items():
        table.cell(row, col).text = value
    table.cell(1, 1).text = "Treaty of Saint-Clair-sur-Epte"
    document.add_heading("Byzantium", 2)
    for paragraph in paragraphs[4:10]:
        document.add_paragraph(paragraph)
    buffer = io.BytesIO()
    document.save(buffer)
    path.write_bytes(buffer.getvalue())
    return path


def test_docx_paragraphs_tables_headings_and_title(
    tmp_path: Path, normans: str, tokens: Tokens
) -> None:
    path = write_docx(tmp_path / "normans.docx", normans)
    document = load(path)
    assert document.title == "Normans (from DOCX)"
    (part,) = document.parts
    paragraphs = normans_paragraphs(normans)
    blocks = part.text.split("\n\n")
    assert blocks[:5] == ["Normans", "Normans", *paragraphs[:3]]
    assert "year | event\n911 | Treaty of Saint-Clair-sur-Epte" in blocks
    assert part.sections is not None
    assert [s.headings for s in part.sections] == [
        (),
        ("Normans",),
        ("Normans", "Etymology"),
        ("Normans", "Byzantium"),
    ]
    records = records_of(path, tokens, chunk_tokens=128, chunk_overlap=16)
    check_offsets(document, records)
    headings = {tuple(r.payload["headings"]) for r in records}
    assert headings == {(), ("Normans",), ("Normans", "Etymology"), ("Normans", "Byzantium")}
    for record in records:
        if paragraphs[3][:40] in (record.text or ""):
            assert record.payload["headings"] == ["Normans", "Etymology"]
    assert all(r.payload["title"] == "Normans (from DOCX)" for r in records)


# Markdown


def sectioned_markdown(normans: str) -> str:
    p = normans_paragraphs(normans)
    return (
        f"# Normans\n\n{p[0]}\n\n## Origin\n\n{p[1]}\n\n{p[2]}\n\n### Name\n\n{p[3]}\n\n"
        f"```sh\n# not a heading\n```\n\nByzantium\n---------\n\n{p[4]}\n\n"
        f"## In Italy ##\n\n{p[5]}\n\n# Legacy\n\n{p[6]}\n"
    )


def test_markdown_heading_paths_per_chunk(tmp_path: Path, normans: str, tokens: Tokens) -> None:
    path = tmp_path / "normans.md"
    path.write_text(sectioned_markdown(normans), encoding="utf-8")
    document = load(path)
    (part,) = document.parts
    assert document.title == "Normans"
    assert part.text == path.read_text(encoding="utf-8")
    assert part.sections is not None
    assert [s.headings for s in part.sections] == [
        ("Normans",),
        ("Normans", "Origin"),
        ("Normans", "Origin", "Name"),
        ("Normans", "Byzantium"),
        ("Normans", "In Italy"),
        ("Legacy",),
    ]
    records = records_of(path, tokens)
    check_offsets(document, records)
    paragraphs = normans_paragraphs(normans)
    expected = {
        0: ["Normans"],
        1: ["Normans", "Origin"],
        3: ["Normans", "Origin", "Name"],
        4: ["Normans", "Byzantium"],
        5: ["Normans", "In Italy"],
        6: ["Legacy"],
    }
    for index, headings in expected.items():
        holding = [r for r in records if paragraphs[index][:60] in (r.text or "")]
        assert holding and all(r.payload["headings"] == headings for r in holding)
    assert any((r.text or "").startswith("### Name") for r in records)


def test_markdown_front_matter_is_not_a_heading_but_gives_a_title(tmp_path: Path) -> None:
    path = tmp_path / "page.md"
    path.write_text(
        '---\ntitle: "Norman Italy"\nlayout: page\n---\n\nIntro.\n\n## Sicily\n\nText.\n'
    )
    document = load(path)
    assert document.title == "Norman Italy"
    assert document.parts[0].sections is not None
    assert [s.headings for s in document.parts[0].sections] == [(), ("Sicily",)]
    path.write_text("Plain\n=====\n\nText.\n")
    assert load(path).title == "Plain"
    path.write_text("no heading at all\n")
    assert load(path).title == "page"


def test_shared_normans_markdown_and_txt_paragraph(normans: str, tokens: Tokens) -> None:
    document = load(RAG / "Normans.md")
    assert document.title == "Normans"
    assert document.parts[0].text == normans
    records = records_of(RAG / "Normans.md", tokens)
    assert all(r.payload["headings"] == ["Normans"] for r in records)
    txt = RAG / "paragraphs_txt" / "normans_p00.txt"
    (part,) = load(txt).parts
    assert load(txt).title == "normans_p00"
    assert part.text == txt.read_text(encoding="utf-8") and part.sections is None
    (record,) = records_of(txt, tokens)
    assert record.text == part.text.strip()
    assert "headings" not in record.payload and "page" not in record.payload


# HTML


PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>  The Normans &amp; Normandy </title>
<style>p { color: red }</style><script>document.write("<p>not text</p>")</script></head>
<body><nav>Home</nav>
<h1>Normans</h1><p>{p0}</p>
<h2>Origin</h2><p>{p1}</p><p>Line one<br>line two</p>
<ul><li>first item</li><li>second item</li></ul>
<h3>Name</h3><div>{p2} <span>inline</span> end.</div>
<noscript>enable scripts</noscript><pre>  keep
    this</pre>
<h2>Byzantium</h2><table><tr><th>year</th><th>event</th></tr><tr><td>1038</td><td>Sicily</td></tr></table>
</body></html>"""


def test_html_text_title_and_headings(tmp_path: Path, normans: str, tokens: Tokens) -> None:
    p = normans_paragraphs(normans)
    path = tmp_path / "page.html"
    path.write_text(PAGE.replace("{p0}", p[0]).replace("{p1}", p[1]).replace("{p2}", p[2]))
    document = load(path)
    assert document.title == "The Normans & Normandy"
    (part,) = document.parts
    blocks = part.text.split("\n\n")
    assert blocks == [
        "Home",
        "Normans",
        p[0],
        "Origin",
        p[1],
        "Line one\nline two",
        "first item",
        "second item",
        "Name",
        f"{p[2]} inline end.",
        "  keep\n    this",
        "Byzantium",
        "year | event",
        "1038 | Sicily",
    ]
    assert "not text" not in part.text and "color" not in part.text
    assert part.sections is not None
    assert [s.headings for s in part.sections] == [
        (),
        ("Normans",),
        ("Normans", "Origin"),
        ("Normans", "Origin", "Name"),
        ("Normans", "Byzantium"),
    ]
    records = records_of(path, tokens)
    check_offsets(document, records)
    assert records[0].payload["headings"] == [] and records[0].text == "Home"
    assert records[-1].payload["headings"] == ["Normans", "Byzantium"]


def test_html_title_falls_back_to_h1_and_declared_charset(tmp_path: Path) -> None:
    path = tmp_path / "latin.htm"
    path.write_bytes(
        b'<html><head><meta charset="iso-8859-1"></head><body><h1>Caf\xe9</h1>'
        b"<p>Cr\xe8me br\xfbl\xe9e</p></body></html>"
    )
    document = load(path)
    assert document.title == "Café"
    assert document.parts[0].text == "Café\n\nCrème brûlée"


def test_txt_must_be_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin.txt"
    path.write_bytes(b"caf\xe9")
    with pytest.raises(ConfigError, match=r"latin\.txt: not UTF-8 text \(byte 3\)"):
        load(path)


# records


def test_file_records_ids_and_payload(tmp_path: Path, normans: str, tokens: Tokens) -> None:
    folder = tmp_path / "docs" / "history"
    folder.mkdir(parents=True)
    path = folder / "normans.md"
    path.write_text(normans, encoding="utf-8")
    data = path.read_bytes()
    source = DocumentSource(tmp_path / "docs", tmp_path / "docs", (path,), 100)
    digest = hashlib.sha256(data).hexdigest()
    records = file_records(source, path, data, digest, tokens)
    assert len(records) > 20
    assert [r.id for r in records] == [f"history/normans.md#{i}" for i in range(len(records))]
    for index, record in enumerate(records):
        assert record.vector is None and record.image is None
        assert record.payload == {
            "source": "history/normans.md",
            "chunk_index": index,
            "start": record.payload["start"],
            "end": record.payload["end"],
            "headings": ["Normans"],
            "title": "Normans",
            "sha256": digest,
            "chunks": len(records),
            "chunking": {"max_tokens": 256, "overlap": 32},
        }
        assert normans[record.payload["start"] : record.payload["end"]] == record.text
