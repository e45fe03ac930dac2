"""What an ingest did, for the command's summary line and for callers."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["IngestReport"]

_NAMED_EMPTY = 5


@dataclass(frozen=True)
class IngestReport:
    """Counts and timings of one ingest.

    ``items`` were upserted in ``seconds`` (the load: read, encode, durable
    writes); building the index took ``index_seconds`` more. For documents,
    ``files`` were found, ``skipped_files`` of them unchanged since the last
    ingest (same content and chunk settings), ``deleted`` stale chunks of
    changed files removed, and ``empty_files`` (relative paths) had no text,
    such as scanned PDFs without a text layer. ``note`` is the source's note
    (files of another kind that were ignored).
    """

    collection: str
    items: int
    seconds: float
    index_seconds: float
    version: int
    created: bool
    files: int = 0
    skipped_files: int = 0
    deleted: int = 0
    empty_files: tuple[str, ...] = ()
    note: str = ""

    @property
    def rate(self) -> float:
        return self.items / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        """One line for the user: what was loaded, how fast, and what was skipped."""
        line = (
            f"{self.items} items into {self.collection} in {self.seconds:.2f} s "
            f"({self.rate:,.0f} items/s); index built in {self.index_seconds:.2f} s; "
            f"version {self.version}"
        )
        if self.note:
            line += f"; {self.note}"
        if not self.files:
            return line
        changed = self.files - self.skipped_files
        line = (
            f"{self.files} files ({changed} new or changed, {self.skipped_files} unchanged "
            f"and skipped): {line}"
        )
        if self.deleted:
            line += f"; {self.deleted} stale chunks deleted"
        if self.empty_files:
            named = ", ".join(self.empty_files[:_NAMED_EMPTY])
            more = len(self.empty_files) - _NAMED_EMPTY
            line += f"; no text in {named}" + (f" and {more} more" if more > 0 else "")
        return line
