"""Record files: the bad-row error and its report, readers by suffix (JSONL / CSV / Parquet / DataFrame) that
yield (row, raw dict) pairs, and the one writer, which writes atomically.

Readers never load a whole file: JSONL and CSV are read line by line, Parquet by row groups
(data.columns validates a Parquet batch by its Arrow columns).
"""
from __future__ import annotations

import contextlib
import csv
import itertools
import json
import os
import shutil
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trendnlp.data.record_files.schema import list_fields, record_fields
from trendnlp.errors import DataError, TrendError

ERROR_COLUMNS = ("source", "row", "product_id", "field", "reason")  # an errors file's columns (skipped rows)


class RecordError(DataError):
    """A bad input row: names the file, row, field and (when known) the product id."""

    def __init__(self, source: str, row: int | None, field: str, reason: str, product_id: str | None = None):
        self.source, self.row, self.field, self.reason, self.product_id = source, row, field, reason, product_id
        where = f"{source}: row {row}" if row is not None else source
        pid = f" (product_id={product_id!r})" if product_id is not None else ""
        super().__init__(f"{where}{pid}: field '{field}': {reason}")

    def as_report(self) -> dict:
        """One row of an errors file: {column: value} for each of ERROR_COLUMNS."""
        return {"source": self.source, "row": self.row, "product_id": self.product_id, "field": self.field,
                "reason": self.reason}


@dataclass
class ErrorReport:
    """Rows skipped under on_error='skip', each with its source, row, product id, field and reason."""

    errors: list[RecordError] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.errors)

    def add(self, err: RecordError) -> None:
        self.errors.append(err)

    def columns(self) -> dict[str, list]:
        """The report as equal-length columns, one per ERROR_COLUMNS (what a table writer takes)."""
        rows = [e.as_report() for e in self.errors]
        return {c: [r[c] for r in rows] for c in ERROR_COLUMNS}

    def write(self, path: str | Path) -> None:
        """Write the report as CSV or JSONL (chosen by suffix)."""
        rows = [e.as_report() for e in self.errors]
        with atomic_path(path) as tmp:
            if Path(path).suffix.lower() == ".jsonl":
                tmp.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
                return
            with tmp.open("w", newline="", encoding="utf-8") as fh:
                w = csv.DictWriter(fh, fieldnames=ERROR_COLUMNS)
                w.writeheader()
                w.writerows(rows)


@contextlib.contextmanager
def atomic_path(path: str | Path, fsync: bool = False) -> Iterator[Path]:
    """A temporary path beside `path` to write to; it replaces `path` only when the block ends without error,
    so a reader never sees half a file. The one atomic file write of the package (records, error reports,
    label output and its parts, metrics.json, run state).

    Args:
        path: the file to write.
        fsync: flush the written file to disk before the rename (label parts that a resumed run trusts).

    >>> with atomic_path("out/records.parquet") as tmp:  # doctest: +SKIP
    ...     df.to_parquet(tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def new_folder(path: str | Path) -> Iterator[Path]:
    """Create the folder `path` (and its missing parents) for a step that fills it; if the step fails, remove it
    and the parents it created (those left empty), so a refused step leaves nothing behind."""
    path = Path(path)
    made = [d for d in (path, *path.parents) if not d.exists()]
    path.mkdir(parents=True, exist_ok=True)
    try:
        yield path
    except BaseException:
        if path in made:
            shutil.rmtree(path, ignore_errors=True)
        for d in made:
            with contextlib.suppress(OSError):
                d.rmdir()
        raise


def write_json(path: str | Path, obj: Any, indent: int = 2, fsync: bool = False) -> None:
    """Replace `path` by `obj` as JSON, atomically (see `atomic_path`)."""
    with atomic_path(path, fsync=fsync) as tmp:
        tmp.write_text(json.dumps(obj, indent=indent) + "\n", encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# readers: (row, raw dict) pairs; row numbers are 1-based lines for JSONL/CSV, 1-based rows otherwise
# ---------------------------------------------------------------------------------------------
def detect_format(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    fmt = {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet",
           ".pq": "parquet"}.get(suffix)
    if fmt is None:
        raise ValueError(f"{path}: unknown file type {suffix!r}; use .jsonl, .csv or .parquet")
    return fmt


@contextlib.contextmanager
def unreadable_as_data_error(src: str | Path, what: str = "records") -> Iterator[None]:
    """Turn a reader's low-level failure (pandas, pyarrow, codecs) on file `src` into a DataError naming it.

    >>> with unreadable_as_data_error("x.csv", "sales"):
    ...     pass
    """
    try:
        yield
    except TrendError:
        raise
    except FileNotFoundError:
        raise DataError(f"{src}: no such {what} file; check the path") from None
    except IsADirectoryError:
        raise DataError(f"{src}: is a folder, but a {what} file is needed") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{src}: not valid UTF-8 (byte {e.object[e.start:e.start + 1]!r} at offset {e.start}); "
                        f"re-save the {what} file as UTF-8") from None
    except (ValueError, OSError) as e:  # pandas EmptyDataError / ParserError, pyarrow ArrowInvalid / ArrowIOError
        if type(e).__name__ == "EmptyDataError" or (Path(src).is_file() and Path(src).stat().st_size == 0):
            raise DataError(f"{src}: the {what} file is empty; expected a header line and at least one row") from None
        msg = " ".join(str(e).split())[:200]
        raise DataError(f"{src}: could not read the {what} file ({type(e).__name__}: {msg}); check that it is a "
                        f"valid {Path(src).suffix.lstrip('.').upper() or 'data'} file") from None


def iter_raw_rows(path: str | Path) -> Iterator[tuple[int, dict | RecordError]]:
    """Stream a records file as (row, raw dict) pairs; unreadable rows come as RecordError instead.

    Never loads the whole file: JSONL and CSV are read line by line, Parquet by row groups.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such records file")
    fmt = detect_format(path)
    if path.is_dir():
        raise DataError(f"{path}: is a folder, but a records file (.jsonl, .csv, .parquet) is needed")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the records file is empty (0 bytes); expected "
                        + ("a header line and rows" if fmt == "csv" else "at least one record"))
    with unreadable_as_data_error(path):
        if fmt == "jsonl":
            yield from _iter_jsonl(path)
        elif fmt == "csv":
            yield from _iter_csv(path)
        else:
            yield from _iter_parquet(path)


def _iter_jsonl(path: Path) -> Iterator[tuple[int, dict | RecordError]]:
    with path.open("rb") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as e:
                yield n, RecordError(str(path), n, "(line)", f"not valid UTF-8 (byte {e.start}); re-save the file as UTF-8")
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as e:
                yield n, RecordError(str(path), n, "(line)", f"malformed JSON: {e.msg} at column {e.colno}")
                continue
            yield n, obj


def _iter_csv(path: Path) -> Iterator[tuple[int, dict | RecordError]]:
    def lines() -> Iterator[str]:
        with path.open("rb") as fh:
            for n, raw in enumerate(fh, start=1):
                try:
                    yield raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    bad[n] = e.start
                    yield raw.decode("utf-8", errors="replace")

    bad: dict[int, int] = {}
    reader = csv.DictReader(lines())
    if reader.fieldnames is None:
        raise DataError(f"{path}: the CSV file has no header line; expected columns like product_id,sales,...")
    if 1 in bad:
        raise DataError(f"{path}: line 1 (the header) is not valid UTF-8 (byte {bad[1]}); re-save the file as UTF-8")
    for rec in reader:
        n = reader.line_num
        if n in bad:
            yield n, RecordError(str(path), n, "(line)", f"not valid UTF-8 (byte {bad.pop(n)}); re-save as UTF-8")
            continue
        if None in rec:
            yield n, RecordError(str(path), n, "(line)", f"more values than the {len(reader.fieldnames)} header columns")
            continue
        yield n, {k: (None if v == "" else v) for k, v in rec.items()}


def iter_raw_batches(path: str | Path, batch_size: int = 8192) -> Iterator[list[tuple[int, dict | RecordError]]]:
    """`iter_raw_rows` in lists of up to batch_size rows (Parquet files are validated by columns instead:
    data.columns)."""
    rows = iter_raw_rows(path)
    while chunk := list(itertools.islice(rows, batch_size)):
        yield chunk


def _parquet_batches(path: Path, batch_size: int):
    import pyarrow.parquet as pq

    # pre_buffer off: pyarrow's pre-buffering keeps the coalesced reads of every row group read so far
    # (93 MB live after 2.5M records in a measurement), so memory grew with the file
    return pq.ParquetFile(path, pre_buffer=False).iter_batches(batch_size=batch_size)


def _iter_parquet(path: Path, batch_size: int = 8192) -> Iterator[tuple[int, dict | RecordError]]:
    n = 0
    for batch in _parquet_batches(path, batch_size):
        for obj in batch.to_pylist():
            n += 1
            yield n, obj


def iter_frame_rows(df: Any) -> Iterator[tuple[int, dict]]:
    """Rows of a pandas DataFrame as (1-based row, dict)."""
    for n, obj in enumerate(df.to_dict(orient="records"), start=1):
        yield n, obj


def missing(v: Any) -> bool:
    """None, a NaN scalar of any float type (an empty CSV / pandas cell; NaN is the one value != itself), or
    pandas' NA (whose comparisons are NA again, so `bool` of them raises)."""
    if v is None:
        return True
    if hasattr(v, "__len__"):
        return False
    try:
        return bool(v != v)
    except TypeError:  # pandas.NA
        return True


def write_records(records: Iterable[dict], path: str | Path) -> int:
    """Write normalised records to JSONL, CSV (lists JSON-encoded) or Parquet, atomically. Returns the count."""
    with RecordFileWriter(path) as writer:
        writer.write(list(records))
    return writer.n


class RecordFileWriter:
    """One records file written a batch at a time, atomically (it appears, complete, when the block ends):
    Parquet one row group per batch, JSONL and CSV lines appended. A batch is a list of record dicts or an Arrow
    table of the record columns (`prepare`'s chunks); `drop` names fields a JSONL line leaves out.

    >>> with RecordFileWriter("out/records.parquet") as w:  # doctest: +SKIP
    ...     for table in tables:
    ...         w.write(table)
    """

    def __init__(self, path: str | Path, drop: tuple[str, ...] = ()):
        self.path, self.fmt, self.drop, self.n = Path(path), detect_format(path), drop, 0
        self._parquet = self._fh = None

    def __enter__(self) -> "RecordFileWriter":
        self._atomic = atomic_path(self.path)
        self._tmp = self._atomic.__enter__()
        if self.fmt != "parquet":
            self._fh = self._tmp.open("w", encoding="utf-8", newline="" if self.fmt == "csv" else None)
        return self

    def write(self, batch: Any) -> None:
        import pandas as pd
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = batch if isinstance(batch, pa.Table) else None
        if self.fmt == "parquet":
            if table is None:
                table = pa.Table.from_pandas(pd.DataFrame(batch, columns=list(record_fields())), preserve_index=False)
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(self._tmp, table.schema)
            self._parquet.write_table(table)
            self.n += table.num_rows
            return
        recs = batch if table is None else table.to_pylist()
        if self.fmt == "jsonl":
            for r in recs:
                self._fh.write(json.dumps({k: v for k, v in r.items() if k not in self.drop}, ensure_ascii=False)
                               + "\n")
        else:
            df = pd.DataFrame(recs, columns=list(record_fields()))
            for col in list_fields():
                df[col] = [json.dumps(v) if not missing(v) else "" for v in df[col]]  # a missing key reads as NaN
            df.to_csv(self._fh, index=False, header=self.n == 0)
        self.n += len(recs)

    def __exit__(self, *exc) -> bool:
        try:
            if self._parquet is not None:
                self._parquet.close()
            elif self.fmt == "parquet" and exc[0] is None:  # no batch: an empty file with the record columns
                import pandas as pd

                pd.DataFrame([], columns=list(record_fields())).to_parquet(self._tmp, index=False)
            if self._fh is not None:
                if self.fmt == "csv" and self.n == 0 and exc[0] is None:
                    self._fh.write(",".join(record_fields()) + "\n")
                self._fh.close()
        except BaseException:
            self._atomic.__exit__(*sys.exc_info())
            raise
        return self._atomic.__exit__(*exc)
