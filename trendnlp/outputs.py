"""Guarding outputs: checks before any work (the path can be written, it is not one of the inputs) and one writer per
output file or folder (an exclusive lock beside it, taken by a decorator on each function that writes one).

`prepare --out`, `label --output`, `train --output-dir` and `export` all go through here (docs/reliability.md).
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from trendnlp.errors import OutputLockedError, OutputPathError


def check_writable(path: str | Path, what: str = "output", *, is_dir: bool = False) -> Path:
    """Fail early, naming the path, when `path` cannot be created or written.

    Checks the nearest existing ancestor: it must be a folder (not a regular file) and writable; an
    existing target must be a file (or a folder when `is_dir`). Nothing is created.

    Args:
        path: the output file or folder.
        what: the option name for the message, e.g. "--out" or "--output-dir".
        is_dir: the output is a folder.
    Returns:
        the path as a `Path`.
    Raises:
        OutputPathError naming `what`, the path and the fix.

    >>> check_writable("runs/x/records.parquet", "--out").name
    'records.parquet'
    """
    p = Path(path)
    if p.exists():
        if is_dir and not p.is_dir():
            raise OutputPathError(f"{what} {p}: exists and is a file, but a folder is needed; choose another path")
        if not is_dir and p.is_dir():
            raise OutputPathError(f"{what} {p}: is a folder, but a file is needed; add a file name, e.g. {p}/out.csv")
    probe = p if (is_dir and p.is_dir()) else p.parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise OutputPathError(f"{what} {p}: {probe} is a file, not a folder, so nothing can be created under it; "
                              "choose another path")
    # the mode bits too: root may write anywhere, but a folder without write bits was made read-only on purpose
    if not os.access(probe, os.W_OK | os.X_OK) or not probe.stat().st_mode & 0o222:
        raise OutputPathError(f"{what} {p}: folder {probe} is not writable (permission denied); choose a folder "
                              "you can write to")
    if p.exists() and not p.is_dir() and not os.access(p, os.W_OK):
        raise OutputPathError(f"{what} {p}: the file exists and is read-only; remove it or choose another path")
    return p


def check_not_input(output: str | Path, inputs: dict[str, str | Path | None], what: str = "--output") -> None:
    """Refuse an output path that resolves to one of the inputs (writing it would destroy the data).

    Args:
        output: the output path.
        inputs: option name -> input path (None entries are ignored).
        what: the output option's name for the message.
    Raises:
        OutputPathError naming both options.

    >>> check_not_input("labels.csv", {"--input": "catalog.csv"})
    """
    out = Path(output).expanduser().resolve()
    for name, src in inputs.items():
        if src is not None and not isinstance(src, (str, Path)):
            continue  # an in-memory table
        if src is not None and Path(src).expanduser().resolve() == out:
            raise OutputPathError(f"{what} {output} is the same file as {name} {src}; writing it would overwrite "
                                  f"the input. Choose another {what} path")


def default_errors_path(output: str | Path) -> Path:
    """Where the rows skipped under `--on-error skip` go when `--errors` is not given: `<output stem>.errors.csv`.

    >>> default_errors_path("runs/labels.parquet").name
    'labels.errors.csv'
    """
    p = Path(output)
    return p.with_name(p.name[: -len(p.suffix)] + ".errors.csv" if p.suffix else p.name + ".errors.csv")


# ---- one writer per output -------------------------------------------------------------------------
def lock_path(output: str | Path, tag: object = None) -> Path:
    """The lock file of an output file or folder: hidden, beside it (`runs/.model.lock` for `runs/model`).

    >>> lock_path("out/labels.csv").name, lock_path("out/labels.csv", tag=1).name
    ('.labels.csv.lock', '.labels.csv.1.lock')
    """
    p = Path(output)
    return p.with_name(f".{p.name}{'' if tag is None else f'.{tag}'}.lock")


@contextlib.contextmanager
def output_lock(output: str | Path, what: str = "--output", tag: object = None) -> Iterator[Path]:
    """Hold an exclusive lock on `output` (the `filelock` package) while the block runs.

    A second process asking for the same output is refused at once (no waiting): two runs writing one file or
    folder would interleave their parts and leave a broken result. Not re-entrant: each output is locked once,
    by the outermost call that writes it (a locked function calls the undecorated ones it needs).

    Args:
        output: the output file or folder.
        what: the option name for the message, e.g. "--out".
        tag: a shard or rank: processes of one sharded run lock their own share.
    Raises:
        OutputLockedError naming the output and the lock file.

    >>> with output_lock("runs/records.parquet", "--out"):  # doctest: +SKIP
    ...     write_records(records, "runs/records.parquet")
    """
    from filelock import FileLock, Timeout

    path = lock_path(output, tag)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise OutputLockedError(f"{what} {output}: another trendnlp run is writing it right now (it holds {path}); "
                                f"wait for that run to finish, or choose another {what}") from None
    try:
        yield path
    finally:
        # removed while still held, so no lock file is left beside the output: a run that opens the old file
        # now is refused (this one is still finishing), one that comes later creates and locks a new file
        with contextlib.suppress(OSError):
            path.unlink()
        lock.release()


def exclusive_output(where: Callable[[dict], tuple[str | Path | None, str, object]]) -> Callable:
    """Decorator: run the function under `output_lock` on the output that `where(arguments)` names.

    Args:
        where: the bound arguments (name -> value, defaults applied) -> (output, option name, tag); a None
            output takes no lock.

    The undecorated function stays reachable as `fn.__wrapped__` (functools.wraps), for a caller that holds
    the lock already (`train_on_records` calls the training loop on the run folder it locked).
    """
    def wrap(fn: Callable) -> Callable:
        sig = inspect.signature(fn)

        @functools.wraps(fn)
        def locked(*args, **kwargs):
            bound = sig.bind(*args, **kwargs)
            bound.apply_defaults()
            output, what, tag = where(bound.arguments)
            if output is None:
                return fn(*args, **kwargs)
            with output_lock(output, what, tag):
                return fn(*args, **kwargs)
        return locked
    return wrap


def rank_tag() -> str | None:
    """This process's rank under `accelerate launch` / torchrun (each rank locks its own share), else None."""
    return os.environ.get("RANK", "0") if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1 else None
