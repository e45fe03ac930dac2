"""Read the records of a file or folder for ``spyglass ingest``, in bounded batches.

Supported sources, chosen by extension (case-insensitive):

* ``.jsonl`` / ``.ndjson``: one JSON object per line; blank lines are skipped.
* ``.csv``: a header row, then one record per row (UTF-8, an optional BOM).
  The vector cell holds a JSON array (``"[0.1, 0.2]"``). Other cells become
  payload: a cell that is a JSON number (``42``, ``-1.5``, ``2e3``; not ``007``
  nor ``1,000``) becomes a number so range filters work, anything else stays a
  string, and a blank cell is left out (CSV cannot tell blank from missing).
* ``.parquet``: read ``batch_size`` rows at a time; the vector column is a list
  of numbers. Null cells are left out of the payload; dates and times become
  ISO 8601 strings and decimals numbers, so the payload stays plain JSON.
* a folder, or one document or image file: documents (``.txt``, ``.md``,
  ``.html``, ``.pdf``, ``.docx``) are chunked by the pipeline with the
  collection's tokenizer, images are read as raw bytes; see
  :mod:`spyglass.ingest.folders`, :mod:`spyglass.ingest.passages` and
  :mod:`spyglass.ingest.images`.

Row rules for the tabular formats: the id is a string or an integer (kept as a
string). A row without one gets ``<file stem>:<number>``, the line number for
JSONL and CSV (the header is line 1) or the row number for Parquet, so loading
the same file again overwrites the same items instead of duplicating them
(until rows are inserted above it). A record needs a vector, a text or both;
every other field goes to the payload. Numbers in ids and error messages count
from 1, as an editor does.

Every mistake in the input raises :class:`ConfigError` with one line naming
the file, the line or row and what is wrong, because the user has to fix the
file and needs to know where to look.
"""

from __future__ import annotations

import csv
import datetime as dt
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from itertools import repeat
from pathlib import Path
from typing import IO, Any

import numpy as np
import orjson

from spyglass.errors import ConfigError
from spyglass.ingest.folders import open_files
from spyglass.ingest.images import IMAGE_SUFFIXES
from spyglass.ingest.passages import DocumentSource
from spyglass.ingest.readers import DOCUMENT_SUFFIXES
from spyglass.ingest.records import MAX_ID_CHARS, Record, Source

__all__ = ["SUPPORTED", "DocumentSource", "Record", "Source", "open_source"]

JSONL_SUFFIXES = (".jsonl", ".ndjson")
SUPPORTED = (*JSONL_SUFFIXES, ".csv", ".parquet", *DOCUMENT_SUFFIXES, *IMAGE_SUFFIXES)
"""Every file extension ``open_source`` reads (besides folders)."""

_SCAN_BYTES = 1 << 20
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")
_INT64 = range(-(2**63), 2**63)
_NUMBER_TYPES = frozenset({float, int})
_JSON_SCALARS = frozenset({str, int, float, bool, type(None)})
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class _Fields:
    """Which columns hold the id, vector and text, and the file they come from."""

    path: Path
    id: str
    vector: str
    text: str


def open_source(
    path: Path,
    *,
    id_field: str = "id",
    vector_field: str = "vector",
    text_field: str = "text",
    batch_size: int = 1000,
    chunk_tokens: int = 256,
    chunk_overlap: int = 32,
    image_batch: int = 64,
    kind: str = "auto",
) -> Source | DocumentSource:
    """Open ``path`` (a file by its extension, or a folder of documents or images).

    Checks what can be checked up front (the path exists, the format is known,
    a folder holds documents or images, a Parquet file is readable) so
    ``spyglass ingest`` fails before it creates anything. ``chunk_tokens`` and
    ``chunk_overlap`` size document chunks, ``image_batch`` is the batch size
    for images, and ``kind`` (``auto``, ``documents``, ``images``) says how to
    read a folder (see :mod:`spyglass.ingest.folders`). Raises
    :class:`ConfigError` for every problem with the input.
    """
    if batch_size < 1:
        raise ConfigError(f"batch size must be at least 1, not {batch_size}")
    if not path.exists():
        raise ConfigError(f"{path}: no such file or folder")
    fields = _Fields(path, id_field, vector_field, text_field)
    suffix = path.suffix.lower()
    if path.is_dir() or suffix in DOCUMENT_SUFFIXES or suffix in IMAGE_SUFFIXES:
        return open_files(
            path,
            kind=kind,
            batch_size=batch_size,
            chunk_tokens=chunk_tokens,
            chunk_overlap=chunk_overlap,
            image_batch=image_batch,
        )
    if suffix in JSONL_SUFFIXES:
        return Source(path, _count_lines(path), batch_size, lambda: _jsonl_records(fields))
    if suffix == ".csv":
        total = max(_count_lines(path) - 1, 0)
        return Source(path, total, batch_size, lambda: _csv_records(fields))
    if suffix == ".parquet":
        return _parquet_source(fields, batch_size)
    kind_of = f"extension {path.suffix!r}" if path.suffix else "no extension"
    raise ConfigError(
        f"{path}: unsupported file type ({kind_of}); use {', '.join(SUPPORTED)} or a folder"
    )


# rows shared by JSONL, CSV and Parquet


def _record(
    fields: _Fields,
    row: dict[str, Any],
    where: str,
    number: int,
    checked: np.ndarray | None = None,
) -> Record:
    """Turn one row into a record; ``where`` is "line 17" or "row 17" for messages.

    ``checked`` is the row's vector when the caller has already checked it
    (a whole Parquet batch at once); the row then holds no vector field.
    """
    at = f"{fields.path}: {where}"
    raw_id = row.pop(fields.id, None)
    raw_vector = row.pop(fields.vector, checked)
    raw_text = row.pop(fields.text, None)
    if raw_id is None:
        item_id = f"{fields.path.stem}:{number}"
    elif isinstance(raw_id, bool) or not isinstance(raw_id, str | int):
        raise ConfigError(f"{at}: {fields.id!r} must be a string or an integer, not {raw_id!r}")
    else:
        item_id = str(raw_id)
        if not 1 <= len(item_id) <= MAX_ID_CHARS:
            raise ConfigError(f"{at}: {fields.id!r} must have 1 to {MAX_ID_CHARS} characters")
    if raw_vector is None or raw_vector is checked:
        vector = raw_vector
    else:
        vector = _vector(raw_vector, f"{at}: {fields.vector!r}")
    if raw_text is not None and not isinstance(raw_text, str):
        raise ConfigError(f"{at}: {fields.text!r} must be a string, not {_kind(raw_text)}")
    if vector is None and raw_text is None:
        raise ConfigError(f"{at}: no {fields.vector!r} and no {fields.text!r}; give one or both")
    return Record(item_id, vector, raw_text, row)


def _vector(value: Any, at: str) -> np.ndarray:
    """Check that ``value`` is a non-empty list of finite numbers; return it as float32."""
    if isinstance(value, np.ndarray):
        return _array_vector(value, at)
    if not isinstance(value, list | tuple):
        raise ConfigError(f"{at} must be a list of numbers, not {_kind(value)}")
    if not value:
        raise ConfigError(f"{at} is empty")
    if set(map(type, value)) <= _NUMBER_TYPES:  # the common case, at C speed
        try:
            return _array_vector(np.asarray(value, dtype=np.float64), at)
        except (OverflowError, ConfigError):
            pass
    for position, number in enumerate(value):  # find the culprit for the message
        if isinstance(number, bool) or not isinstance(number, int | float):
            raise ConfigError(
                f"{at} must be a list of numbers; element [{position}] is {_kind(number)}"
            )
        try:
            finite = math.isfinite(number) and math.isfinite(np.float32(number))
        except OverflowError:
            finite = False
        if not finite:
            raise ConfigError(f"{at}: element [{position}] is not a finite number")
    return np.asarray(value, dtype=np.float32)


def _array_vector(value: np.ndarray, at: str) -> np.ndarray:
    """The numpy form of :func:`_vector`, for Parquet list columns."""
    if value.ndim != 1 or value.dtype.kind not in "iuf":
        raise ConfigError(f"{at} must be a list of numbers, not an array of {value.dtype}")
    if not value.size:
        raise ConfigError(f"{at} is empty")
    with np.errstate(over="ignore"):
        vector = value.astype(np.float32)
    finite = np.isfinite(vector)
    if not finite.all():
        raise ConfigError(f"{at}: element [{int(finite.argmin())}] is not a finite number")
    return vector


def _kind(value: Any) -> str:
    """A short description of a wrong value for an error message."""
    if value is None:
        return "null"
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def _count_lines(path: Path) -> int:
    """Lines in a file by a byte scan for newlines (a last line without one counts)."""
    lines = 0
    last = b"\n"
    with path.open("rb") as file:
        while block := file.read(_SCAN_BYTES):
            lines += block.count(b"\n")
            last = block[-1:]
    return lines + (last != b"\n")


# JSONL


def _jsonl_records(fields: _Fields) -> Iterator[Record]:
    """One record per non-blank line, read as bytes (orjson parses bytes directly)."""
    with fields.path.open("rb") as file:
        for number, line in enumerate(file, start=1):
            if number == 1:
                line = line.removeprefix(_BOM)
            if not line.strip():
                continue
            try:
                row = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise ConfigError(
                    f"{fields.path}: line {number}: bad JSON at column {exc.colno}: {exc.msg}"
                ) from None
            if not isinstance(row, dict):
                raise ConfigError(
                    f"{fields.path}: line {number}: expected a JSON object, not {_kind(row)}"
                )
            yield _record(fields, row, f"line {number}", number)


# CSV


def _csv_records(fields: _Fields) -> Iterator[Record]:
    """Rows as records; a row's number is the line it starts on (the header is line 1)."""
    path = fields.path
    with path.open("rb") as file:
        reader = csv.reader(_utf8_lines(path, file), strict=True)
        first = 1
        try:
            header = next(reader, None)
            if header is None:
                return
            _check_header(path, header)
            while True:
                first = reader.line_num + 1
                cells = next(reader, None)
                if cells is None:
                    return
                if not any(cells):
                    continue
                if len(cells) > len(header):
                    raise ConfigError(
                        f"{path}: line {first}: {len(cells)} cells but the header has "
                        f"{len(header)} columns"
                    )
                yield _record(fields, _csv_row(fields, header, cells), f"line {first}", first)
        except csv.Error as exc:
            raise ConfigError(f"{path}: line {first}: bad CSV: {exc}") from None


def _utf8_lines(path: Path, file: IO[bytes]) -> Iterator[str]:
    """Decode line by line, so a bad byte is reported on its own line."""
    for number, line in enumerate(file, start=1):
        try:
            yield line.removeprefix(_BOM).decode() if number == 1 else line.decode()
        except UnicodeDecodeError as exc:
            raise ConfigError(
                f"{path}: line {number}: not UTF-8 text (byte {exc.start + 1} of the line)"
            ) from None


def _check_header(path: Path, header: list[str]) -> None:
    """Every column needs a distinct name, or cells would be lost or misread."""
    if not any(header):
        raise ConfigError(f"{path}: line 1: the header row is blank")
    seen: set[str] = set()
    for column, name in enumerate(header, start=1):
        if not name.strip():
            raise ConfigError(f"{path}: line 1: column {column} has no name in the header")
        if name in seen:
            raise ConfigError(f"{path}: line 1: column {name!r} appears twice in the header")
        seen.add(name)


def _csv_row(fields: _Fields, header: list[str], cells: list[str]) -> dict[str, Any]:
    """Cells by column: blank cells dropped, the vector parsed, JSON numbers as numbers."""
    row: dict[str, Any] = {}
    for name, cell in zip(header, cells, strict=False):
        if not cell.strip():
            continue
        if name == fields.vector:
            try:
                row[name] = orjson.loads(cell)
            except orjson.JSONDecodeError:
                row[name] = cell  # _record reports it as "not a list of numbers"
        elif name in (fields.id, fields.text):
            row[name] = cell
        else:
            row[name] = _csv_value(cell)
    return row


def _csv_value(cell: str) -> str | int | float:
    """A cell that is a JSON number in range becomes a number; the rest stay strings."""
    if not _JSON_NUMBER.fullmatch(cell):
        return cell
    if "." in cell or "e" in cell or "E" in cell:
        number = float(cell)
        return number if math.isfinite(number) else cell
    integer = int(cell)
    return integer if integer in _INT64 else cell


# Parquet


def _parquet_source(fields: _Fields, batch_size: int) -> Source:
    """Read the row count and column names from the footer; pyarrow is imported lazily."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        with pq.ParquetFile(fields.path) as parquet:
            total = parquet.metadata.num_rows
            columns = parquet.schema_arrow.names
    except (pa.ArrowException, OSError) as exc:
        raise ConfigError(f"{fields.path}: not a readable Parquet file ({exc})") from None
    if fields.vector not in columns and fields.text not in columns:
        raise ConfigError(
            f"{fields.path}: no {fields.vector!r} or {fields.text!r} column "
            f"(columns: {', '.join(columns)})"
        )
    return Source(fields.path, total, batch_size, lambda: _parquet_records(fields, batch_size))


def _parquet_records(fields: _Fields, batch_size: int) -> Iterator[Record]:
    """Rows a record batch at a time; null cells are dropped before the row rules apply."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    number = 0
    with pq.ParquetFile(fields.path) as parquet:
        batches = parquet.iter_batches(batch_size=batch_size)
        while True:
            try:
                batch = next(batches, None)
            except (pa.ArrowException, OSError) as exc:
                raise ConfigError(
                    f"{fields.path}: row {number + 1}: unreadable Parquet data ({exc})"
                ) from None
            if batch is None:
                return
            names = batch.schema.names
            matrix = None
            if fields.vector in names:
                matrix = _vector_matrix(batch.column(fields.vector), fields, number)
            columns = [
                column.to_numpy(zero_copy_only=False)
                if name == fields.vector
                else column.to_pylist()
                for name, column in zip(names, batch.columns, strict=True)
                if matrix is None or name != fields.vector
            ]
            if matrix is not None:
                names = [name for name in names if name != fields.vector]
                if names == [fields.id] and _plain_ids(columns[0]):
                    # id and vector only, both already checked: no per-row rules left
                    yield from map(Record, columns[0], matrix, repeat(None), map(dict, repeat(())))
                    number += batch.num_rows
                    continue
            for index, *values in zip(range(batch.num_rows), *columns, strict=True):
                number += 1
                where = f"row {number}"
                row = {
                    name: value
                    if name == fields.vector
                    else _plain(value, name, fields.path, where)
                    for name, value in zip(names, values, strict=True)
                    if value is not None
                }
                checked = None if matrix is None else matrix[index]
                yield _record(fields, row, where, number, checked)


def _plain_ids(ids: list[Any]) -> bool:
    """Whether every id is a string the API accepts as it is (else rows go one by one)."""
    return set(map(type, ids)) == {str} and 1 <= min(map(len, ids)) <= max(map(len, ids)) <= (
        MAX_ID_CHARS
    )


def _vector_matrix(column: Any, fields: _Fields, before: int) -> np.ndarray | None:
    """A batch's vector column as one checked float32 matrix, or None to go row by row.

    Only the plain case is taken here: list columns of numbers, no nulls, every
    row of one length. Anything else returns None, and the row-by-row path then
    names the row and the problem.
    """
    import pyarrow as pa

    kind = column.type
    if not (
        pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)
    ):
        return None
    rows = len(column)
    if rows == 0 or column.null_count:
        return None
    values = column.flatten()
    if values.null_count or not (
        pa.types.is_floating(values.type) or pa.types.is_integer(values.type)
    ):
        return None
    if len(values) % rows:
        return None
    dim = len(values) // rows
    if dim == 0:
        return None
    if not pa.types.is_fixed_size_list(kind):
        offsets = column.offsets.to_numpy()
        if not (np.diff(offsets) == dim).all():
            return None
    with np.errstate(over="ignore"):
        flat: np.ndarray = values.to_numpy(zero_copy_only=False).astype(np.float32)
    matrix = flat.reshape(rows, dim)
    finite = np.isfinite(matrix)
    if not finite.all():
        row, element = np.argwhere(~finite)[0]
        raise ConfigError(
            f"{fields.path}: row {before + int(row) + 1}: {fields.vector!r}: "
            f"element [{int(element)}] is not a finite number"
        )
    return matrix


def _plain(value: Any, name: str, path: Path, where: str) -> Any:
    """A Parquet cell as plain JSON: dates as ISO strings, decimals as numbers."""
    if type(value) in _JSON_SCALARS:
        return value
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, list | tuple):
        return [_plain(item, name, path, where) for item in value]
    if isinstance(value, dict):
        return {str(key): _plain(item, name, path, where) for key, item in value.items()}
    raise ConfigError(
        f"{path}: {where}: column {name!r} holds {type(value).__name__} values, "
        "which a JSON payload cannot hold"
    )
