"""Command-line option types shared by every verb that takes the option (dates, date ranges, counts, numbers,
comma lists, seeds), so `--history` or `--seeds` means and checks the same thing in `prepare`, `benchmark`,
`backtest` and the rest.

Each parser takes the text of one option and returns its value, or raises `OptionError` naming the option,
the value found and what is expected. `arg(parser, ...)` turns one into an argparse `type=`: argparse then
refuses a bad value while parsing, before any file is read or written, with one line
`trendnlp VERB: error: argument --OPTION: expected ..., found '...'`.

>>> parse_date_range("2011-03-13:2011-10-23", "--origins")
('2011-03-13', '2011-10-23')
>>> parse_names("gbm_all,majority", "--rows")
['gbm_all', 'majority']
"""
from __future__ import annotations

import argparse
import datetime as dt
import math
from collections.abc import Callable, Iterable

MAX_SEED = 2**32 - 1  # numpy's seeding takes 0 .. 2**32 - 1
MAX_PERIODS = 100_000  # bound on history / horizon / stride / every: ~270 years of days; larger is a typo


class OptionError(ValueError):
    """A bad option value: `option` and `detail` ("expected ..., found ...; fix"), str() joins them."""

    def __init__(self, option: str, detail: str):
        self.option, self.detail = option, detail
        super().__init__(f"{option}: {detail}" if option else detail)


def parse_date(text: str, option: str) -> str:
    """An ISO date YYYY-MM-DD, returned as written by `date.isoformat`.

    >>> parse_date(" 2011-03-13", "--as-of")
    '2011-03-13'
    """
    s = str(text).strip()
    try:
        return dt.date.fromisoformat(s).isoformat()
    except ValueError as e:
        why = f" ({e})" if s[:4].isdigit() and s.count("-") == 2 else ""  # e.g. "month must be in 1..12"
        raise OptionError(option, f"expected an ISO date YYYY-MM-DD such as 2011-03-13, found {text!r}{why}") from None


def parse_date_range(text: str, option: str) -> tuple[str, str]:
    """`FROM:TO`, two ISO dates with FROM <= TO (both inclusive).

    >>> parse_date_range("2011-10-23:2011-03-13", "--origins")
    Traceback (most recent call last):
    trendnlp.options.OptionError: --origins: FROM 2011-10-23 is after TO 2011-03-13; write the earlier date first, \
e.g. 2011-03-13:2011-10-23
    """
    parts = str(text).split(":")
    if len(parts) != 2 or not all(p.strip() for p in parts):
        raise OptionError(option, f"expected FROM:TO with ISO dates, e.g. 2011-03-13:2011-10-23, found {text!r}")
    lo, hi = (parse_date(p, option) for p in parts)
    if lo > hi:
        raise OptionError(option, f"FROM {lo} is after TO {hi}; write the earlier date first, e.g. {hi}:{lo}")
    return lo, hi


def parse_count(text: str, option: str, minimum: int = 0, maximum: int | None = None) -> int:
    """A whole number >= `minimum` (0: a non-negative count; 1: a positive one), <= `maximum` when given.

    >>> parse_count("8", "--every", minimum=1)
    8
    """
    try:
        value = int(str(text).strip())
    except ValueError:
        value = None
    if value is None or value < minimum or (maximum is not None and value > maximum):
        within = f"in {minimum}..{maximum:,}" if maximum is not None else f">= {minimum}"
        raise OptionError(option, f"expected a whole number {within}, found {text!r}")
    return value


def parse_number(text: str, option: str, minimum: float = 0.0, above: bool = False) -> float:
    """A finite number >= `minimum` (> `minimum` with `above`).

    >>> parse_number("0.25", "--tau", above=True)
    0.25
    """
    try:
        value = float(str(text).strip())
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < minimum or (above and value == minimum):
        raise OptionError(option, f"expected a finite number {'>' if above else '>='} {minimum:g}, found {text!r}")
    return value


def parse_names(text: str, option: str, known: Iterable[str] | Callable[[], Iterable[str]] | None = None,
                keywords: tuple[str, ...] = ()) -> list[str]:
    """A comma-separated list of distinct names (one of `known` when given: names, or a function returning
    them, called only here so that `--help` imports nothing heavy); a `keywords` entry ("all", "none") stands
    alone and is returned as the one-element list.

    >>> parse_names("none", "--baselines", keywords=("all", "none"))
    ['none']
    """
    names = [n.strip() for n in str(text).split(",")]
    known = list(known() if callable(known) else known) if known is not None else None
    example = ", e.g. " + ",".join(list(known)[:2]) if known else ""
    if not any(names) or not all(names):
        raise OptionError(option, f"expected comma-separated names without empty entries{example}, found {text!r}")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise OptionError(option, f"{', '.join(dup)} given more than once in {text!r}; name each once"
                          if all(n.isprintable() for n in dup) else f"a name is given more than once in {text!r}")
    lowered = [n.lower() for n in names]
    if set(lowered) & set(keywords):
        if len(names) > 1:
            raise OptionError(option, f"{'/'.join(keywords)} stands alone, found {text!r}")
        return lowered
    if known is not None:
        unknown = [n for n in names if n not in known]
        if unknown:
            unknown = ", ".join(n if n.isprintable() else repr(n) for n in unknown)  # one line, whatever the text
            raise OptionError(option, f"unknown name(s) {unknown} in {text!r}; known: {', '.join(known)}"
                              + (f" (or {'/'.join(keywords)})" if keywords else ""))
    return names


def parse_seeds(text: str, option: str = "--seeds") -> list[int]:
    """Distinct whole numbers 0 .. 2**32 - 1, comma-separated.

    >>> parse_seeds("0, 1,2")
    [0, 1, 2]
    """
    try:
        seeds = [int(s) for s in str(text).split(",")]
    except ValueError:
        seeds = []
    if not seeds or not all(0 <= s <= MAX_SEED for s in seeds):
        raise OptionError(option, f"expected distinct whole numbers 0..{MAX_SEED} such as 0,1,2, found {text!r}")
    if len(set(seeds)) != len(seeds):
        raise OptionError(option, f"a seed is given more than once in {text!r}; name each once")
    return seeds


def arg(parse: Callable, **kwargs) -> Callable[[str], object]:
    """`parse` as an argparse `type=`: argparse names the option ("argument --every: ...") itself.

    >>> p = argparse.ArgumentParser(); _ = p.add_argument("--every", type=arg(parse_count, minimum=1))
    >>> p.parse_args(["--every", "3"]).every
    3
    """
    def convert(text: str):
        try:
            return parse(text, "", **kwargs)
        except OptionError as e:
            raise argparse.ArgumentTypeError(e.detail) from None

    convert.__name__ = parse.__name__.removeprefix("parse_")
    return convert


COUNT = arg(parse_count)  # a whole number >= 0
POSITIVE = arg(parse_count, minimum=1)  # a whole number >= 1
PERIODS = arg(parse_count, minimum=1, maximum=MAX_PERIODS)  # a number of periods
THREADS = arg(parse_count, maximum=1024)  # torch CPU threads (0: torch's default)
NUMBER = arg(parse_number)  # a finite number >= 0
DATE_RANGE = arg(parse_date_range)
SEEDS = arg(parse_seeds)
