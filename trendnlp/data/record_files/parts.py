"""A records file, or a folder of record files written in parts (`prepare --num-shards N --shard-index I`, one
part per shard): `train --records`, `benchmark --records` and the config's data files read either.

A folder's parts are its .parquet, .jsonl and .csv files, in name order (hidden files and `*.errors.*` reports
left out); each is validated as a records file, and a (product_id, cutoff) found in two parts is an error
naming both (two shards run with the same index, or a part copied twice).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from trendnlp.data.record_files.io import RecordError
from trendnlp.errors import DataError

PART_SUFFIXES = (".parquet", ".pq", ".jsonl", ".ndjson", ".csv")


def part_files(path: str | Path) -> list[Path]:
    """The record files of a folder of parts, in name order; [path] for a file.

    >>> part_files("data_samples/train.jsonl")
    [PosixPath('data_samples/train.jsonl')]
    """
    path = Path(path)
    if not path.is_dir():
        return [path]
    parts = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in PART_SUFFIXES
                   and not p.name.startswith(".") and ".errors." not in p.name)
    if not parts:
        raise DataError(f"{path}: a folder without record files; expected parts like part-0.parquet "
                        f"({', '.join(PART_SUFFIXES)}) as `trendnlp prepare --num-shards N --out` writes them")
    return parts


def is_records_path(path: str | Path) -> bool:
    """A records file, or a folder that holds record files."""
    path = Path(path)
    return path.is_file() or (path.is_dir() and any(p.suffix.lower() in PART_SUFFIXES for p in path.iterdir()))


def read_parts(path: str | Path, **kw: Any) -> list[dict]:
    """`read_records` over a records file or each part of a folder, the parts' records concatenated.

    Args:
        path: a records file, or a folder of parts.
        **kw: `read_records` options (on_error, history, rule, report).
    Returns:
        the normalised records, part after part.
    Raises:
        RecordError for a (product_id, cutoff) in two parts.
    """
    from trendnlp.data.record_files.keys import KeySet
    from trendnlp.data.record_files.records import read_records

    parts = part_files(path)
    if len(parts) == 1:
        return read_records(parts[0], **kw)
    seen, owner, records = KeySet(), {}, []
    for part in parts:
        recs = read_records(part, **kw)
        new = seen.add_many([(r["product_id"], r["cutoff"]) for r in recs])
        if not new.all():
            r = recs[int((~new).argmax())]
            raise RecordError(str(part), None, "product_id", f"(product_id, cutoff) = ({r['product_id']!r}, "
                              f"{r['cutoff']!r}) is also in an earlier part of {path} ({', '.join(owner)}); each "
                              "product belongs to one part: were two shards run with the same --shard-index?",
                              r["product_id"])
        owner[part.name] = True
        records += recs
    return records
