"""Parquet tables: numeric feature rows, or one text per row, read in record batches.

Needs pyarrow (``pip install 'exemplar[parquet]'``). Columns of integer, floating or
boolean type are features; a string column named ``text`` (or ``text_column``) makes it a
table of texts. Problems are reported per row as ``"a.parquet#row5"`` (0-based).
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from exemplar.errors import DatasetError
from exemplar.sources.base import (
    Chunk,
    Log,
    Source,
    SourceOptions,
    feature_records,
    label_text,
    text_records,
)
from exemplar.sources.csv_table import TEXT_COLUMN_NAME, resolve_label_column
from exemplar.sources.features import TextFeaturizer

__all__ = ["ParquetSource"]


class ParquetSource(Source):
    """A Parquet table, read in record batches."""

    def __init__(self, path: Path, options: SourceOptions, log: Log):
        self.where = f"Parquet file '{path}'"
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise DatasetError(
                f"reading {self.where} needs pyarrow; install it with "
                "`pip install 'exemplar[parquet]'`"
            ) from None
        self.path = path
        self.uri_base = str(path.resolve())
        self.log = log
        self._float64 = pa.float64()
        self._arrow_error = pa.ArrowException
        try:
            self.file = pq.ParquetFile(path)
        except (OSError, pa.ArrowException) as exc:
            raise DatasetError(f"cannot read {self.where}: {exc}") from exc
        schema = self.file.schema_arrow
        self.names = list(schema.names)
        self.total = self.file.metadata.num_rows
        if not self.total:
            raise DatasetError(f"{self.where} is empty: it has no rows")
        li = resolve_label_column(self.names, options.label_column, self.where)
        self.label_name = None if li is None else self.names[li]
        types = {name: schema.field(name).type for name in self.names}

        def numeric(name: str) -> bool:
            t = types[name]
            return bool(pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t))

        def stringy(name: str) -> bool:
            t = types[name]
            return bool(pa.types.is_string(t) or pa.types.is_large_string(t))

        text_column = options.text_column
        self.text_name: str | None = None
        if text_column is not None:
            if text_column not in self.names:
                raise DatasetError(
                    f"{self.where}: text column {text_column!r} not found; the columns are: "
                    f"{', '.join(self.names)}"
                )
            if text_column == self.label_name:
                raise DatasetError(
                    f"{self.where}: column {text_column!r} cannot be both the text and the label"
                )
            self.text_name = text_column
        else:
            for name in self.names:
                if name.lower() == TEXT_COLUMN_NAME and name != self.label_name and stringy(name):
                    self.text_name = name
                    break
        others = [n for n in self.names if n not in (self.label_name, self.text_name)]
        self.featurizer: TextFeaturizer | None = None
        if self.text_name is not None:
            self.featurizer = options.featurizer()
            self.dim = self.featurizer.dim
            self.what = self.featurizer.what
            self.feature_names: list[str] = []
            ignored = others
            log.note(f"text from column {self.text_name!r}")
        else:
            self.feature_names = [n for n in others if numeric(n)]
            ignored = [n for n in others if not numeric(n)]
            if not self.feature_names:
                raise DatasetError(
                    f"{self.where} has no numeric feature columns (columns: "
                    f"{', '.join(self.names)}); to import texts, pass text_column"
                )
            self.dim = len(self.feature_names)
            self.what = self.where
        if ignored:
            log.note(f"ignored columns: {', '.join(ignored)}")
        if self.label_name is not None:
            log.note(f"labels from column {self.label_name!r}")

    def chunks(self, size: int, pool: ThreadPoolExecutor) -> Iterator[Chunk]:
        columns = [*self.feature_names]
        if self.text_name is not None:
            columns.append(self.text_name)
        if self.label_name is not None:
            columns.append(self.label_name)
        start = 0
        for batch in self._batches(size, columns):
            n = batch.num_rows
            wheres = [f"{self.path}#row{i}" for i in range(start, start + n)]
            uris = [f"{self.uri_base}#row{i}" for i in range(start, start + n)]
            labels: list[str | None] = (
                [label_text(v) for v in batch.column(self.label_name).to_pylist()]
                if self.label_name is not None
                else [None] * n
            )
            if self.text_name is not None and self.featurizer is not None:
                texts = batch.column(self.text_name).to_pylist()
                records, X = text_records(texts, wheres, uris, labels, self.featurizer, self.log)
            else:
                X = np.column_stack(  # nulls become NaN, reported by feature_records
                    [
                        batch.column(name).cast(self._float64).to_numpy(zero_copy_only=False)
                        for name in self.feature_names
                    ]
                )
                records, X = feature_records(X, wheres, uris, labels, self.feature_names, self.log)
            start += n
            yield Chunk(records, X, start)

    def _batches(self, size: int, columns: list[str]) -> Iterator[Any]:
        """Record batches; a read error becomes a :class:`DatasetError` naming the file."""
        batches = self.file.iter_batches(batch_size=size, columns=columns)
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            except self._arrow_error as exc:
                raise DatasetError(f"cannot read {self.where}: {exc}") from exc
            yield batch
