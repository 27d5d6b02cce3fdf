"""Record reading and validation: every bad-input case names file, row and field; skip reports every id."""
import json

import numpy as np
import pandas as pd
import pytest

from trendnlp.data.record_files.io import write_records
from trendnlp.data.record_files.records import load_records, read_records
from trendnlp.data.record_files.io import ErrorReport, RecordError

GOOD = {"product_id": "good-1", "title": "Red mug", "reviews": ["nice"], "sales": [1, 2, 3], "cutoff": "2011-06-05",
        "label": "rising"}

# (case name, raw record or raw JSONL line, field the error must name)
BAD_CASES = [
    ("missing product_id", {"sales": [1, 2]}, "product_id"),
    ("empty product_id", {"product_id": "", "sales": [1, 2]}, "product_id"),
    ("non-list sales", {"product_id": "p-nonlist", "sales": 5}, "sales"),
    ("empty sales", {"product_id": "p-empty", "sales": []}, "sales"),
    ("missing sales", {"product_id": "p-missing"}, "sales"),
    ("NaN sales", {"product_id": "p-nan", "sales": [1, float("nan")]}, "sales"),
    ("inf sales", {"product_id": "p-inf", "sales": [float("inf"), 1]}, "sales"),
    ("negative sales", {"product_id": "p-neg", "sales": [1, -3]}, "sales"),
    ("text in sales", {"product_id": "p-text", "sales": [1, "many"]}, "sales"),
    ("unknown label", {"product_id": "p-label", "sales": [1], "label": "up"}, "label"),
    ("over-long history", {"product_id": "p-long", "sales": [1] * 27}, "sales"),
    ("bad cutoff", {"product_id": "p-cut", "sales": [1], "cutoff": "June 5"}, "cutoff"),
    ("bad future", {"product_id": "p-fut", "sales": [1], "future_sales": [1, -1]}, "future_sales"),
    ("non-list reviews", {"product_id": "p-rev", "sales": [1], "reviews": 3}, "reviews"),
]


def _jsonl(path, lines):
    path.write_bytes(b"".join((json.dumps(x).encode() if isinstance(x, dict) else x) + b"\n" for x in lines))
    return path


@pytest.mark.parametrize("name,raw,field", BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_jsonl_row_names_file_row_field(tmp_path, name, raw, field):
    path = _jsonl(tmp_path / "recs.jsonl", [GOOD, raw])
    with pytest.raises(RecordError) as exc:
        read_records(path, history=26)
    msg = str(exc.value)
    assert str(path) in msg and "row 2" in msg and f"field '{field}'" in msg
    assert exc.value.row == 2 and exc.value.field == field


@pytest.mark.parametrize("line,what", [(b'{"product_id": "x", "sales": [1,', "malformed JSON"),
                                       (b'{"product_id": "caf\xe9", "sales": [1]}', "UTF-8")])
def test_unreadable_lines(tmp_path, line, what):
    path = _jsonl(tmp_path / "recs.jsonl", [GOOD, GOOD | {"product_id": "g2"}, line])
    with pytest.raises(RecordError) as exc:
        read_records(path)
    assert str(path) in str(exc.value) and "row 3" in str(exc.value) and what in str(exc.value)
    assert "(line)" in str(exc.value)


def test_skip_reports_every_bad_id(tmp_path):
    raws = [GOOD] + [c[1] for c in BAD_CASES] + [b"{not json", GOOD | {"product_id": "good-2"}]
    path = _jsonl(tmp_path / "recs.jsonl", raws)
    report = ErrorReport()
    recs = read_records(path, on_error="skip", history=26, report=report)
    assert [r["product_id"] for r in recs] == ["good-1", "good-2"]
    assert len(report) == len(BAD_CASES) + 1  # every bad row reported, none silently dropped
    bad_ids = {c[1].get("product_id") or None for c in BAD_CASES}
    assert {e.product_id or None for e in report.errors} == bad_ids | {None}
    assert [e.row for e in report.errors] == list(range(2, len(raws)))
    out = tmp_path / "errors.csv"
    report.write(out)
    df = pd.read_csv(out)
    assert len(df) == len(report) and set(df.columns) == {"source", "row", "product_id", "field", "reason"}


def test_csv_and_parquet_and_frame(tmp_path):
    recs = read_records([GOOD, GOOD | {"product_id": "b", "reviews": [], "title": None, "label": None,
                                       "future_sales": [9, 9, 9, 9]}])
    assert recs[1]["label"] == "rising"  # derived by the label rule from future_sales
    for suffix in (".csv", ".parquet", ".jsonl"):
        path = tmp_path / f"r{suffix}"
        write_records(recs, path)
        back = read_records(path)
        assert [r["product_id"] for r in back] == ["good-1", "b"]
        assert back[0]["reviews"] == ["nice"] and back[0]["sales"] == [1.0, 2.0, 3.0]
        assert back[1]["future_sales"] == [9.0] * 4
    assert len(read_records(pd.DataFrame(recs))) == 2
    ds, report = load_records(tmp_path / "r.parquet")
    assert ds.num_rows == 2 and len(report) == 0 and ds[0]["sales"] == [1.0, 2.0, 3.0]


def test_csv_bad_rows_name_line(tmp_path):
    path = tmp_path / "r.csv"
    path.write_bytes(b'product_id,sales,reviews\n'
                     b'a,"[1, 2]","[""ok""]"\n'
                     b'b,"[1, nan]",\n'
                     b'c,7,\n'
                     b'\xff\xfe,"[1]",\n'
                     b'e,"[1]","not json"\n')
    report = ErrorReport()
    recs = read_records(path, on_error="skip", report=report)
    assert [r["product_id"] for r in recs] == ["a"]
    assert [(e.row, e.field) for e in report.errors] == [(3, "sales"), (4, "sales"), (5, "(line)"), (6, "reviews")]
    with pytest.raises(RecordError, match=r"r\.csv: row 3 .*field 'sales'"):
        read_records(path)


def test_parquet_bad_row(tmp_path):
    path = tmp_path / "r.parquet"
    pd.DataFrame({"product_id": ["a", None, "c"], "sales": [[1.0], [2.0], [-1.0]]}).to_parquet(path)
    report = ErrorReport()
    assert len(read_records(path, on_error="skip", report=report)) == 1
    assert [(e.row, e.field, e.product_id) for e in report.errors] == [(2, "product_id", None), (3, "sales", "c")]


def test_duplicate_product_cutoff(tmp_path):
    path = _jsonl(tmp_path / "d.jsonl", [GOOD, GOOD | {"cutoff": "2011-06-12"}, GOOD])
    with pytest.raises(RecordError, match="row 3.*duplicate"):
        read_records(path)


def test_a_price_of_zero_reads_as_null_in_every_reader(tmp_path):
    """The price rule (docs/data.md): 0 and null both mean "no price known", in files, DataFrames and dicts."""
    recs = [{"product_id": f"p{i}", "sales": [1, 2, 3], "price": [0.0, 2.5, None]} for i in range(3)]
    want = [None, 2.5, None]
    assert read_records(recs)[0]["price"] == want
    assert read_records(pd.DataFrame(recs))[0]["price"] == want
    for suffix in (".jsonl", ".csv", ".parquet"):  # parquet: the batch-wise fast check must not keep the 0
        write_records(read_records([{**r, "price": [0.0, 2.5, 1.0]} for r in recs]), tmp_path / f"r{suffix}")
        assert [r["price"] for r in read_records(tmp_path / f"r{suffix}")] == [[None, 2.5, 1.0]] * 3, suffix
    pd.DataFrame([{**r, "price": [0.0, 2.5, 1.0]} for r in recs]).to_parquet(tmp_path / "raw.parquet")
    assert read_records(tmp_path / "raw.parquet")[0]["price"] == [None, 2.5, 1.0]


def test_a_dataframe_with_the_ids_in_its_index():
    df = pd.DataFrame([{**GOOD, "product_id": f"p{i}"} for i in range(3)])
    want = read_records(df)
    assert read_records(df.set_index("product_id")) == want  # the index named product_id is the column
    assert read_records(df.set_index(["product_id", "cutoff"]).reset_index("cutoff")) == want
    with pytest.raises(RecordError, match=r"no `product_id` column .* the index is named None; if the index holds "
                                          r"the ids, name it: df.rename_axis\('product_id'\)"):
        read_records(df.drop(columns="product_id"))


def test_a_record_without_a_channel_the_model_reads_is_refused(tmp_path):
    """`required` (a model's record_rules()): the channel absent or null as a whole is a bad record naming the
    channel and the fix; a null inside the history is no lack (price: no price known in that period)."""
    from trendnlp.config import SalesConfig
    from trendnlp.data.record_files.channels import required_channels

    need = required_channels(SalesConfig(channels=["orders", "customers"], price_channels=True))
    assert list(need) == ["price", "orders", "customers"]
    full = {"product_id": "a", "sales": [1, 0, 2], "orders": [1, 0, 1], "customers": [1, 0, 1], "price": [2, None, 0]}
    assert read_records([full], required=need)[0]["price"] == [2.0, None, None]
    assert read_records([{**full, "price": [None] * 3}], required=need)[0]["price"] == [None] * 3
    for field, lacking in [("orders", {"orders": None}), ("customers", {"customers": float("nan")}),
                           ("price", {"price": None}), ("orders", {"orders": pd.NA})]:
        with pytest.raises(RecordError) as err:
            read_records([full, {**full, "product_id": "b", **lacking}], required=need)
        assert err.value.row == 2 and err.value.field == field, str(err.value)
    with pytest.raises(RecordError, match=r"<DataFrame>: row 1 .*field 'orders': missing"):  # no such column
        read_records(pd.DataFrame([full]).drop(columns="orders"), required=need)
    del full["customers"]
    with pytest.raises(RecordError, match=r"<records>: row 1 \(product_id='a'\): field 'customers': missing, but the "
                                          r"model reads the `customers` channel \(.*\); give the record its `customers` "
                                          r"history \(one value per sales period; prepare builds it with --customer-col "
                                          r"COLUMN\), or retrain the model without it \(--set 'sales.channels=\[orders\]'\)"):
        read_records([full], required=need)
    with pytest.raises(RecordError, match=r"field 'price': .*\(--set sales.price_channels=false\)"):
        read_records([{**full, "price": None}], required=required_channels(SalesConfig(price_channels=True)))
    assert read_records([full]) and read_records([full], required={})  # nothing required: read as before
    # an empty CSV cell in a file, and skipping: the row goes to the report like any other bad row
    recs = [{**full, "product_id": f"p{i}", "customers": [1, 0, 1]} for i in range(3)]
    recs[1]["customers"] = None
    write_records(read_records(recs), tmp_path / "r.csv")
    with pytest.raises(RecordError, match=r"r.csv: row 3 \(product_id='p1'\): field 'customers': missing"):  # line 3
        read_records(tmp_path / "r.csv", required=need)
    report = ErrorReport()
    kept = read_records(tmp_path / "r.csv", required=need, on_error="skip", report=report)
    assert [r["product_id"] for r in kept] == ["p0", "p2"]
    assert [(e.row, e.field, e.product_id) for e in report.errors] == [(3, "customers", "p1")]


def test_a_product_id_is_never_a_container():
    for pid in (["p-1"], {"id": 1}):
        with pytest.raises(RecordError, match=r"row 1: field 'product_id': expected text or a number, found"):
            read_records([{"product_id": pid, "sales": [1]}])


def test_pandas_na_cells_read_as_missing():
    """A pandas "string" column gives pd.NA for an empty cell: no text (or no cutoff), like None and NaN."""
    df = pd.DataFrame({"product_id": ["a", "b"], "title": ["mug", None], "cutoff": ["2011-05-29", None],
                       "sales": [[1, 2], [3]]}).astype({"title": "string", "cutoff": "string"})
    recs = read_records(df)
    assert [r["title"] for r in recs] == ["mug", ""] and [r["cutoff"] for r in recs] == ["2011-05-29", None]
    na = {"product_id": "c", "sales": [1, 2], "freq": pd.NA, "label": pd.NA, "reviews": pd.NA, "future_sales": pd.NA}
    assert read_records([na])[0] == read_records([{"product_id": "c", "sales": [1, 2]}])[0]
    with pytest.raises(RecordError, match=r"field 'product_id': missing or empty"):
        read_records([{**na, "product_id": pd.NA}])


# ---- the readers against `world`'s malformed files ---------------------------------------------------------
@pytest.mark.parametrize("name,needle", [("empty.jsonl", "empty"), ("empty.csv", "empty"), ("garbage.parquet",
                                         "could not read"), ("latin_header.csv", "UTF-8"), ("afile", "unknown file"),
                                         ("readonly", "unknown file")])
def test_api_readers_name_the_bad_file(world, name, needle):
    from trendnlp.errors import TrendError

    with pytest.raises((TrendError, ValueError), match=needle) as info:
        read_records(world / name)
    assert name in str(info.value)


@pytest.mark.parametrize("sales", [[1, True], [np.bool_(True)], np.array([True, False])], ids=["py", "np", "array"])
def test_booleans_are_not_units(sales):
    with pytest.raises(RecordError, match=r"'sales'.*boolean"):
        read_records({"product_id": "a", "sales": sales})


@pytest.mark.parametrize("cutoff", ["2011-06-05-garbage", "2011-06-05T99:99", "2011-13-01", "05/06/2011", "2011-06"])
def test_cutoffs_are_parsed_whole(cutoff):
    with pytest.raises(RecordError, match=r"'cutoff'"):
        read_records({"product_id": "a", "sales": [1], "cutoff": cutoff})


@pytest.mark.parametrize("cutoff", ["2011-06-05", "2011-06-05T00:00:00", "2011-06-05 23:59:59+01:00"])
def test_valid_cutoffs_still_read(cutoff):
    assert read_records({"product_id": "a", "sales": [1], "cutoff": cutoff})[0]["cutoff"] == "2011-06-05"


def test_numpy_numbers_are_numbers(lora_model):
    plain = [{"product_id": "a", "title": "red mug", "sales": [1.0, 4.0, 9.0]}, {"product_id": "b", "sales": [0.0]}]
    numpy = [{"product_id": "a", "title": "red mug", "sales": np.array([1, 4, 9], dtype=np.int64)},
             {"product_id": "b", "sales": [np.float32(0)]}]
    scalars = [{"product_id": "a", "title": "red mug", "sales": [np.int64(1), np.int32(4), np.float64(9)]},
               {"product_id": "b", "sales": np.zeros(1, dtype=np.float32)}]
    expected = lora_model.predict_proba(plain)
    np.testing.assert_allclose(lora_model.predict_proba(numpy), expected, atol=1e-6)
    np.testing.assert_allclose(lora_model.predict_proba(scalars), expected, atol=1e-6)
    np.testing.assert_allclose(lora_model.predict_proba(plain, batch_size=np.int64(1)), expected, atol=1e-6)
