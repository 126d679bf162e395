"""CSV tables with a header row: numeric feature rows, or one text per row.

:class:`CsvTable` is the one CSV parser of exemplar: the importer (:class:`CsvSource`,
streaming, skipping bad rows) and the simulator's loader (``exemplar.data.user``, which
stops at the first bad row) both read through it. What it checks:

* the file is text: a first line that is not UTF-8 or holds a NUL byte means a binary
  file, refused as "not a text CSV file"; a later undecodable line is one bad row;
* the header: comma-separated (semicolons and tabs are explained), not a row of numbers,
  unique column names;
* the label column (by name, index, or one of :data:`LABEL_COLUMN_CANDIDATES`), the text
  column, and which columns are numeric features: a column with no number in the first
  rows (ids, file names) is ignored; a feature cell that is not a number is a bad row;
* each row has as many fields as the header.

Each bad row is reported to the :class:`~exemplar.sources.base.Log` with its line.
"""

from __future__ import annotations

import csv
import operator
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO

import numpy as np

from exemplar.errors import DatasetError
from exemplar.sources.base import (
    Chunk,
    Log,
    Problem,
    Record,
    Source,
    SourceOptions,
    feature_records,
    label_text,
    text_records,
)
from exemplar.sources.features import TextFeaturizer

__all__ = [
    "LABEL_COLUMN_CANDIDATES",
    "CsvSource",
    "CsvTable",
    "check_header",
    "is_number",
    "list_names",
    "resolve_label_column",
]

#: Column names taken as the label column when none is given, by priority (matched
#: case-insensitively, an exact match first).
LABEL_COLUMN_CANDIDATES = ("label", "class", "target", "y")
#: A non-numeric column of this name (case-insensitive) makes a table one of texts.
TEXT_COLUMN_NAME = "text"
#: Rows read ahead to decide which columns are numeric features.
PEEK_ROWS = 256


def is_number(text: str) -> bool:
    """Whether ``text`` parses as a float."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def list_names(names: Sequence[str], limit: int = 20) -> str:
    """Names quoted and comma-separated, at most ``limit`` of them."""
    shown = ", ".join(repr(n) for n in names[:limit])
    if len(names) > limit:
        shown += f", ... ({len(names)} in all)"
    return shown


def check_header(header: list[str], header_line: int, where: str) -> list[str]:
    """Validate a header row and return the column names (unnamed ones get a placeholder).

    Raises :class:`~exemplar.errors.DatasetError` for a header separated by semicolons or
    tabs, a first row of numbers (data, not a header), or a repeated column name.
    """
    if len(header) == 1:
        for sep, sep_name in ((";", "semicolons"), ("\t", "tabs")):
            if sep in header[0]:
                raise DatasetError(
                    f"{where}, line {header_line}: the header seems to be separated by "
                    f"{sep_name}; exemplar reads comma-separated files"
                )
    if all(is_number(h) for h in header) and header != [str(i) for i in range(len(header))]:
        raise DatasetError(
            f"{where}, line {header_line}: the first row holds only numbers, so it looks "
            "like data; a header row naming the columns is required"
        )
    names = [h if h else f"<unnamed column {i + 1}>" for i, h in enumerate(header)]
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in seen:
            raise DatasetError(
                f"{where}, line {header_line}: column name {name!r} appears twice "
                f"(columns {seen[name]} and {i}); column names must be unique"
            )
        seen[name] = i
    return names


def resolve_label_column(
    names: list[str], label_column: str | int | None, where: str
) -> int | None:
    """The index of the label column among ``names``, or None when the data is unlabeled.

    ``label_column`` is a name or a 0-based index (negative counts from the end); by
    default the first of :data:`LABEL_COLUMN_CANDIDATES` present (case-insensitive). A
    named column that does not exist raises :class:`~exemplar.errors.DatasetError`.
    """
    if label_column is None:
        for candidate in LABEL_COLUMN_CANDIDATES:
            if candidate in names:
                return names.index(candidate)
            for i, name in enumerate(names):
                if name.lower() == candidate:
                    return i
        return None
    if isinstance(label_column, bool) or not isinstance(label_column, (str, int)):
        raise DatasetError(
            f"{where}: label_column must be a column name or index, got {label_column!r}"
        )
    if isinstance(label_column, int):
        if not -len(names) <= label_column < len(names):
            raise DatasetError(
                f"{where}: label column index {label_column} not found; there are "
                f"{len(names)} columns (0 to {len(names) - 1}): {list_names(names)}"
            )
        return label_column % len(names)
    if label_column in names:
        return names.index(label_column)
    hint = " (to pick a column by position, pass an int)" if label_column.isdigit() else ""
    raise DatasetError(
        f"{where}: label column {label_column!r} not found{hint}; the columns are: "
        f"{list_names(names)}"
    )


def _is_blank(cells: list[str]) -> bool:
    return not cells or (len(cells) == 1 and not cells[0].strip())


class CsvTable:
    """A CSV file opened and checked: header, label, text and feature columns.

    Parameters
    ----------
    path : Path
        The file.
    label_column, text_column
        As in :func:`exemplar.project.importing.import_path`.
    log : Log
        Receives each bad row (with its line) and nothing else.
    peek_rows : int or None
        Rows read ahead to decide which columns are numeric (None: every row, read now).
    detect_text : bool
        Whether a non-numeric column named ``text`` makes this a table of texts.

    Raises
    ------
    DatasetError
        The file is missing, unreadable, binary, empty, or its header is malformed, or a
        named column does not exist, or there is no feature (or text) column.
    """

    def __init__(
        self,
        path: Path,
        label_column: str | int | None,
        text_column: str | None,
        log: Log,
        *,
        peek_rows: int | None = PEEK_ROWS,
        detect_text: bool = True,
    ):
        self.path = path
        self.where = f"CSV file '{path}'"
        self.log = log
        self._first_problem: Problem | None = None
        self._header_found = False
        self._peek: list[tuple[int, list[str]]] = []
        try:
            self._fh: IO[bytes] = path.open("rb")
        except OSError as exc:
            raise DatasetError(f"cannot read {self.where}: {exc.strerror or exc}") from exc
        try:
            self._reader = csv.reader(self._lines(self._fh))
            self._setup(label_column, text_column, peek_rows, detect_text)
        except BaseException:
            self._fh.close()
            raise

    # -- reading ----------------------------------------------------------------------------

    def _lines(self, fh: Iterable[bytes]) -> Iterator[str]:
        """Decode the file line by line; an undecodable line becomes a blank line.

        Before the header, such a line (or a NUL byte) means the file is not text at all.
        The line is reported, and csv's line numbers stay those of the file.
        """
        offset = 0
        for number, raw in enumerate(fh, start=1):
            start, offset = offset, offset + len(raw)
            if not self._header_found:
                self._check_text(raw, start)
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                why = f"not UTF-8 text (undecodable byte at offset {start + exc.start} of the file)"
                self._problem(Problem(f"{self.path}:{number}", why, "malformed row", line=number))
                yield "\n"
                continue
            yield line.removeprefix("\ufeff") if number == 1 else line

    def _check_text(self, raw: bytes, start: int) -> None:
        bad = raw.find(b"\0")
        if bad == -1:
            try:
                raw.decode("utf-8")
                return
            except UnicodeDecodeError as exc:
                bad = exc.start
        hint = ""
        if start == 0 and raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
            hint = "; it looks like UTF-16 text: save it as UTF-8"
        raise DatasetError(
            f"'{self.path}' is not a text CSV file (binary, or not UTF-8 text at byte offset "
            f"{start + bad}){hint}"
        )

    def _problem(self, problem: Problem) -> None:
        if self._first_problem is None:
            self._first_problem = problem
        self.log.skip(problem)

    def _next_row(self) -> tuple[int, list[str] | None] | None:
        """The next row and its line (cells None: csv could not parse it); None at the end."""
        try:
            cells = next(self._reader)
        except StopIteration:
            return None
        except csv.Error as exc:
            line = self._reader.line_num
            self._problem(
                Problem(
                    f"{self.path}:{line}", f"cannot parse CSV ({exc})", "malformed row", line=line
                )
            )
            return line, None
        return self._reader.line_num, cells

    def _header(self) -> tuple[list[str], int]:
        while (got := self._next_row()) is not None:
            line, cells = got
            if cells is not None and not _is_blank(cells):
                self._header_found = True
                return [c.strip() for c in cells], line
        raise DatasetError(f"{self.where} is empty: no header row and no data")

    def rows(self, n: int | None) -> list[tuple[int, list[str]]]:
        """Up to ``n`` (None: all the rest) well-formed data rows and their lines."""
        if n is None:
            rows, self._peek = self._peek, []
            rows.extend(self._read_rows(None))
            return rows
        rows, self._peek = self._peek[:n], self._peek[n:]
        if len(rows) < n:
            rows.extend(self._read_rows(n - len(rows)))
        return rows

    def _read_rows(self, n: int | None) -> list[tuple[int, list[str]]]:
        """Up to ``n`` (None: all) well-formed rows; ragged and unparsable ones are reported."""
        rows: list[tuple[int, list[str]]] = []
        while (n is None or len(rows) < n) and (got := self._next_row()) is not None:
            line, cells = got
            if cells is None or _is_blank(cells):
                continue
            if len(cells) != self.n_fields:
                why = (
                    f"expected {self.n_fields} fields (as in the header on line "
                    f"{self.header_line}), found {len(cells)} (ragged row)"
                )
                self._problem(Problem(f"{self.path}:{line}", why, "malformed row", line=line))
                continue
            rows.append((line, cells))
        return rows

    def close(self) -> None:
        """Close the file."""
        self._fh.close()

    # -- columns ----------------------------------------------------------------------------

    def _setup(
        self,
        label_column: str | int | None,
        text_column: str | None,
        peek_rows: int | None,
        detect_text: bool,
    ) -> None:
        header, self.header_line = self._header()
        self.names = check_header(header, self.header_line, self.where)
        self.n_fields = len(self.names)
        self.label_index = resolve_label_column(self.names, label_column, self.where)
        self._peek = self._read_rows(peek_rows)
        if not self._peek:
            first = ""
            if (p := self._first_problem) is not None:
                first = f"; the first problem: {p.where}: {p.reason}"
            raise DatasetError(
                f"{self.where} has a header (line {self.header_line}) but no data rows "
                f"(no readable data rows after it){first}"
            )
        self.text_index = self._text_index(text_column, detect_text)
        skip = (self.label_index, self.text_index)
        others = [j for j in range(self.n_fields) if j not in skip]
        self.feature_index: list[int] = []
        if self.text_index is not None:
            self.ignored = [self.names[j] for j in others]
        else:
            self.feature_index = [j for j in others if self._numeric_somewhere(j)]
            self.ignored = [self.names[j] for j in others if j not in self.feature_index]
            if not self.feature_index:
                label = ""
                if self.label_index is not None:
                    label = f" (label column: {self.names[self.label_index]!r})"
                raise DatasetError(
                    f"{self.where} has no numeric feature columns (columns: "
                    f"{', '.join(self.names)}){label}; to import texts, pass text_column"
                )
        self.feature_names = [self.names[j] for j in self.feature_index]

    def _text_index(self, text_column: str | None, detect: bool) -> int | None:
        if text_column is None:
            if not detect:
                return None
            for j, name in enumerate(self.names):
                if name.lower() == TEXT_COLUMN_NAME and j != self.label_index:
                    return None if self._numeric_somewhere(j) else j
            return None
        lowered = [n.lower() for n in self.names]
        if text_column in self.names:
            index = self.names.index(text_column)
        elif text_column.lower() in lowered:
            index = lowered.index(text_column.lower())
        else:
            raise DatasetError(
                f"{self.where}: text column {text_column!r} not found; the columns are: "
                f"{', '.join(self.names)}"
            )
        if index == self.label_index:
            raise DatasetError(
                f"{self.where}: column {text_column!r} cannot be both the text and the label"
            )
        return index

    def _numeric_somewhere(self, j: int) -> bool:
        """Whether column ``j`` holds a number in the rows read ahead (else not a feature)."""
        return any(is_number(cells[j]) for _, cells in self._peek)

    # -- values -----------------------------------------------------------------------------

    def features(self, rows: list[tuple[int, list[str]]]) -> tuple[np.ndarray, np.ndarray]:
        """Float64 feature rows and a mask of the rows that parsed; bad cells are reported."""
        n, dim = len(rows), len(self.feature_index)
        ok = np.ones(n, dtype=bool)
        pick = operator.itemgetter(*self.feature_index)
        values = [[pick(c)] if dim == 1 else pick(c) for _, c in rows]
        try:  # fast path: every cell is a number
            return np.array(values, dtype=np.float64).reshape(n, dim), ok
        except ValueError:
            pass
        X = np.zeros((n, dim), dtype=np.float64)
        for i, row in enumerate(values):
            try:
                X[i] = np.array(row, dtype=np.float64)
            except ValueError:
                ok[i] = False
                k = next(k for k, v in enumerate(row) if not is_number(v))
                value = row[k]
                what = "a missing value" if not value.strip() else f"{value!r} is not a number"
                line = rows[i][0]
                problem = Problem(
                    f"{self.path}:{line}", what, line=line, column=self.feature_names[k]
                )  # a bad value
                self._problem(problem)
        return X, ok


class CsvSource(Source):
    """A CSV table streamed in batches for the importer (bad rows are skipped)."""

    def __init__(self, path: Path, options: SourceOptions, log: Log):
        self.path = path
        self.uri_base = str(path.resolve())
        self.log = log
        self.table = CsvTable(path, options.label_column, options.text_column, log)
        table = self.table
        self.featurizer: TextFeaturizer | None = None
        try:
            if table.text_index is not None:
                self.featurizer = options.featurizer()
                self.dim = self.featurizer.dim
                self.what = self.featurizer.what
                log.note(f"text from column {table.names[table.text_index]!r}")
            else:
                self.dim = len(table.feature_index)
                self.what = table.where
                log.note(f"{self.dim} numeric feature column(s)")
        except BaseException:
            table.close()
            raise
        if table.ignored:
            log.note(f"ignored columns: {', '.join(table.ignored)}")
        if table.label_index is not None:
            log.note(f"labels from column {table.names[table.label_index]!r}")

    def chunks(self, size: int, pool: ThreadPoolExecutor) -> Iterator[Chunk]:
        try:
            while rows := self.table.rows(size):
                records, X = self._records(rows)
                yield Chunk(records, X, rows[-1][0] - self.table.header_line)
        finally:
            self.table.close()

    def _records(self, rows: list[tuple[int, list[str]]]) -> tuple[list[Record], np.ndarray]:
        table = self.table
        wheres = [f"{self.path}:{line}" for line, _ in rows]
        uris = [f"{self.uri_base}#L{line}" for line, _ in rows]
        li = table.label_index
        labels = [None if li is None else label_text(cells[li]) for _, cells in rows]
        if self.featurizer is not None and table.text_index is not None:
            texts = [cells[table.text_index] for _, cells in rows]
            return text_records(texts, wheres, uris, labels, self.featurizer, self.log)
        X, ok = table.features(rows)
        lines = [line for line, _ in rows]
        if not ok.all():
            idx = np.flatnonzero(ok)
            X = X[idx]
            wheres = [wheres[i] for i in idx]
            uris = [uris[i] for i in idx]
            labels = [labels[i] for i in idx]
            lines = [lines[i] for i in idx]
        return feature_records(X, wheres, uris, labels, table.feature_names, self.log, lines)
