"""The option types shared by the verbs (trendnlp.options): what each accepts, and the one line it refuses with."""
from __future__ import annotations

import pytest

from trendnlp.cli import build_parser
from trendnlp.options import (OptionError, parse_count, parse_date, parse_date_range, parse_names, parse_number,
                              parse_seeds)


@pytest.mark.parametrize("text, message", [
    ("2023-13-45", "expected an ISO date YYYY-MM-DD such as 2011-03-13, found '2023-13-45' (month must be in 1..12)"),
    ("abc", "expected an ISO date YYYY-MM-DD such as 2011-03-13, found 'abc'"),
    ("2011-02-30", "(day is out of range for month)"),
])
def test_dates_name_the_option_and_the_value(text, message):
    with pytest.raises(OptionError) as e:
        parse_date(text, "--as-of")
    assert str(e.value).startswith("--as-of: ") and message in str(e.value)


def test_date_ranges_are_two_dates_in_order():
    assert parse_date_range(" 2011-03-13 : 2011-10-23", "--origins") == ("2011-03-13", "2011-10-23")
    assert parse_date_range("2011-03-13:2011-03-13", "--origins") == ("2011-03-13", "2011-03-13")
    for bad, why in (("2012-01-01:2011-01-01", "FROM 2012-01-01 is after TO 2011-01-01; write the earlier date "
                                               "first, e.g. 2011-01-01:2012-01-01"),
                     ("2011-01-01", "expected FROM:TO"), ("a:b:c", "expected FROM:TO"), (":", "expected FROM:TO"),
                     ("abc:def", "found 'abc'"), ("2023-13-45:2023-14-01", "month must be in 1..12")):
        with pytest.raises(OptionError, match="^--origins: ") as e:
            parse_date_range(bad, "--origins")
        assert why in str(e.value), str(e.value)


def test_counts_numbers_and_seeds():
    assert parse_count("0", "--limit") == 0 and parse_count(" 7 ", "--every", minimum=1) == 7
    for bad in ("-1", "1.5", "", "x", "1e3"):
        with pytest.raises(OptionError, match=r"^--limit: expected a whole number >= 0, found"):
            parse_count(bad, "--limit")
    with pytest.raises(OptionError, match=r"expected a whole number in 1\.\.10, found '11'"):
        parse_count("11", "--every", minimum=1, maximum=10)
    assert parse_number("2.5", "--min-history-units") == 2.5
    for bad in ("nan", "inf", "-0.1", "x"):
        with pytest.raises(OptionError, match=r"^--min-history-units: expected a finite number >= 0"):
            parse_number(bad, "--min-history-units")
    with pytest.raises(OptionError, match=r"expected a finite number > 0, found '0'"):
        parse_number("0", "--tau", above=True)
    assert parse_seeds("3,1") == [3, 1]
    for bad, why in (("", "expected distinct whole numbers"), ("a", "expected distinct whole numbers"),
                     ("-1", "expected distinct whole numbers"), (str(2**32), "expected distinct whole numbers"),
                     ("1,01", "a seed is given more than once")):
        with pytest.raises(OptionError, match=f"^--seeds: {why}"):
            parse_seeds(bad)


def test_name_lists_refuse_duplicates_empty_entries_and_unknown_names():
    known = ["majority", "persistence"]
    assert parse_names("persistence,majority", "--baselines", known) == ["persistence", "majority"]
    assert parse_names("None", "--baselines", known, keywords=("all", "none")) == ["none"]
    for bad, why in (("majority,majority", "majority given more than once"), ("", "without empty entries"),
                     ("majority,", "without empty entries"), ("nope", "unknown name(s) nope"),
                     ("all,majority", "all/none stands alone")):
        with pytest.raises(OptionError, match="^--baselines: ") as e:
            parse_names(bad, "--baselines", lambda: known, keywords=("all", "none"))
        assert why in str(e.value)


@pytest.mark.parametrize("verb, option", [("benchmark", "--history"), ("backtest", "--history"),
                                          ("prepare", "--history"), ("label", "--history"),
                                          ("benchmark", "--min-history-units"), ("prepare", "--min-history-units"),
                                          ("benchmark", "--tau"), ("prepare", "--tau")])
def test_verbs_that_share_an_option_check_it_alike(verb, option, capsys):
    """The same bad value gets the same one line from every verb that takes the option."""
    base = {"benchmark": ["--sales", "x.csv", "--out", "o"], "backtest": ["--sales", "x.csv", "--out", "o"],
            "prepare": ["--sales", "x.csv", "--out", "o.jsonl"], "label": ["--model", "m", "--output", "o.csv"]}
    with pytest.raises(SystemExit) as e:
        from trendnlp.cli import _one_line_usage_errors

        parser = build_parser()
        _one_line_usage_errors(parser)
        parser.parse_args([verb, *base[verb], option, "-3"])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1
    assert f"trendnlp {verb}: error: argument {option}: expected a " in err[0] and "found '-3'" in err[0]
