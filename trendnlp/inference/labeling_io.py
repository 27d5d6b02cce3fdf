"""Files of a batch-labeling run: atomic part files (CSV / JSONL / Parquet), per-shard manifests, the final merge.

    OUTPUT.parts/part-{shard}-{window:06d}.{ext}     results of one window
    OUTPUT.parts/errors-{shard}-{window:06d}.{ext}   skipped rows of one window
    OUTPUT.parts/manifest-{shard}.json              fingerprint, next_window, rows consumed / written, done

Every write goes to a temporary name in the same folder, is fsync'ed and then `os.replace`d, so a reader
(or a resumed run) sees either the whole file or none of it. A part is committed once the manifest that
counts it is replaced; parts beyond the manifest are leftovers of a killed run and are recomputed.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from trendnlp.data.record_files.io import ERROR_COLUMNS, atomic_path, write_json as _write_json
from trendnlp.errors import ResumeError


class ResumeMismatchError(ResumeError):
    """The parts folder was written by a run with another model, input or options."""


def write_table(columns: dict[str, list], path: str | Path, fmt: str) -> None:
    """Write equal-length columns to `path` atomically.

    Args:
        columns: column name -> values (str, int, float or None).
        path: target file.
        fmt: "csv", "jsonl" or "parquet".
    """
    names = list(columns)
    rows = zip(*(columns[c] for c in names))
    if fmt not in ("csv", "jsonl", "parquet"):
        raise ValueError(f"{path}: unknown table format {fmt!r}; use csv, jsonl or parquet")
    with atomic_path(path, fsync=True) as tmp:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            pq.write_table(_arrow_table(columns), tmp)
        else:
            with open(tmp, "w", newline="", encoding="utf-8") as fh:
                if fmt == "csv":
                    w = csv.writer(fh)
                    w.writerow(names)
                    w.writerows(rows)
                else:
                    fh.writelines(json.dumps(dict(zip(names, r)), ensure_ascii=False) + "\n" for r in rows)


def merge_parts(parts: Sequence[Path], output: str | Path, fmt: str, empty_columns: Sequence[str]) -> int:
    """Concatenate part files (same format and columns) into `output` atomically, streaming part by part.

    Args:
        parts: part files in the order their rows must appear.
        output: the merged file.
        fmt: "csv", "jsonl" or "parquet".
        empty_columns: header written when there are no parts (an input whose rows were all bad, or empty).
    Returns:
        number of parts merged.
    """
    with atomic_path(output, fsync=True) as tmp:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            if not parts:
                pq.write_table(_arrow_table({c: [] for c in empty_columns}), tmp)
            else:
                schema = pq.read_schema(parts[0])
                with pq.ParquetWriter(tmp, schema) as writer:
                    for p in parts:
                        writer.write_table(pq.read_table(p).cast(schema))
        else:
            with open(tmp, "wb") as out:
                if not parts and fmt == "csv":
                    out.write((",".join(empty_columns) + "\r\n").encode("utf-8"))
                for i, p in enumerate(parts):
                    with open(p, "rb") as fh:
                        if fmt == "csv" and i > 0:
                            fh.readline()  # header, already written by the first part
                        shutil.copyfileobj(fh, out, 1 << 20)
    return len(parts)


def write_json(path: Path, obj: dict) -> None:
    """Replace `path` by `obj` as JSON, atomically and flushed to disk (a manifest a resumed run trusts)."""
    _write_json(path, obj, indent=1, fsync=True)


def open_shard_state(parts: Path, shard: int, fingerprint: dict) -> dict:
    """This shard's manifest to continue from (a fresh one when there is none), with uncommitted parts removed.

    Args:
        parts: the run's parts folder.
        shard: shard index.
        fingerprint: input, model and options of this run (JSON-compatible).
    Returns:
        the manifest dict (next_window, rows_consumed, rows_written, errors_written, done=False).
    Raises:
        ResumeMismatchError when the stored fingerprint differs.
    """
    path = parts / f"manifest-{shard}.json"
    fresh = {"fingerprint": fingerprint, "shard_index": shard, "next_window": 0, "rows_consumed": 0,
             "rows_written": 0, "errors_written": 0, "done": False}
    if not path.exists():
        for stale in parts.glob(f"*-{shard}-*"):  # parts of a run killed before its first commit
            stale.unlink()
        return fresh
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ResumeMismatchError(f"{path}: the manifest of an unfinished labeling run is damaged ({e}); rerun with "
                                  f"--no-resume (resume=False) to start over, or remove {parts}") from None
    old = state.get("fingerprint", {}) if isinstance(state, dict) else {}
    diff = [k for k in fingerprint if old.get(k) != fingerprint[k]]
    if diff:
        raise ResumeMismatchError(
            f"{parts}: unfinished labeling run found, but its {', '.join(diff)} differ(s) from this run's "
            f"(was {[old.get(k) for k in diff]!r:.300}). Rerun with --no-resume (resume=False) to start over, "
            f"or remove {parts}.")
    for p in parts.glob(f"*-{shard}-*"):  # beyond the last commit: recomputed (and overwritten) below
        if p.name.startswith(".") or window_of(p) >= state["next_window"]:  # ".part-….tmp-PID": a killed write
            p.unlink()
    state["done"] = False
    return state


def merge_if_complete(parts: Path, output: Path, errors: Path | None, out_fmt: str, err_fmt: str | None,
                      labels: list[str], num_shards: int, fingerprint: dict) -> list[dict] | None:
    """When every shard's manifest says done, merge all parts in window order into `output` (and `errors`),
    then remove the parts folder.

    Returns:
        the shards' manifests, or None when some shard is not finished (nothing merged).
    """
    states = []
    for s in range(num_shards):
        path = parts / f"manifest-{s}.json"
        state = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
        if not state.get("done") or state.get("fingerprint") != fingerprint:
            return None  # another shard (run separately, without an accelerator) is still working
        states.append(state)
    base = ["product_id", "cutoff", "label"] + [f"p_{n}" for n in labels]
    merge_parts(sorted(parts.glob(f"part-*.{out_fmt}"), key=window_of), output, out_fmt, base)
    if errors is not None:
        merge_parts(sorted(parts.glob(f"errors-*.{err_fmt}"), key=window_of), errors, err_fmt, ERROR_COLUMNS)
    # rename first: a kill in the middle of deleting must never leave a manifest next to a partial set of parts
    trash = parts.with_name(parts.name + ".trash")
    shutil.rmtree(trash, ignore_errors=True)
    os.replace(parts, trash)
    shutil.rmtree(trash, ignore_errors=True)
    return states


def window_of(path: Path) -> int:
    """Window index of a part file name such as part-1-000042.csv."""
    return int(path.name.split("-")[2].split(".")[0])


def count_rows(path: str | Path) -> int | None:
    """Rows of a records file, for a progress total: Parquet metadata, or a fast newline count (CSV: minus the
    header; quoted multi-line cells make it an estimate). None for unknown formats."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    if suffix not in (".jsonl", ".json", ".ndjson", ".csv"):
        return None
    n, last = 0, b"\n"
    with open(path, "rb") as fh:
        while block := fh.read(1 << 22):
            n += block.count(b"\n")
            last = block[-1:]
    n += last != b"\n"
    return max(n - 1, 0) if suffix == ".csv" else n


def _arrow_table(columns: dict[str, list]):
    import pyarrow as pa

    arrays = {}
    for name, values in columns.items():
        arr = pa.array(values)
        if pa.types.is_null(arr.type):  # a column that is all None here (e.g. no cutoffs) is still text
            arr = arr.cast(pa.float64() if name.startswith("p_") else pa.string())
        arrays[name] = arr
    return pa.table(arrays)
