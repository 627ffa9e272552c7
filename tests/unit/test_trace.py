"""Azure trace loading: every malformed case names its line; nothing is half-loaded."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from smiless.trace import DEFAULT_TRACE, TraceError, arrivals_from_counts, load_trace, parse_trace

HEADER = "HashFunction,HashApp,HashOwner,minute_1,minute_2,minute_3"


def test_parses_rows() -> None:
    tr = parse_trace([HEADER, "f1,a1,o1,0,2,1", "", "f2,a2,o2,3,0,0"], source="t.csv")
    assert tr.minutes == 3 and len(tr) == 2
    assert tr.function("f1").counts.tolist() == [0, 2, 1]
    assert tr.function("f2").line == 4 and tr.function("f2").invocations == 3
    assert tr.matrix().shape == (2, 3)


@pytest.mark.parametrize(
    ("lines", "line", "message"),
    [
        ([], 1, "empty file"),
        (["HashFunction,HashApp,Owner,minute_1"], 1, "header column 3 is 'Owner'"),
        (["HashFunction,HashApp,HashOwner,minute_1,minute_3"], 1, "'minute_3', expected 'minute_2'"),
        (["HashFunction,HashApp,HashOwner"], 1, "header has 3 columns"),
        ([HEADER, "f1,a,o,1,2,3", "f2,a,o,1,2"], 3, "5 columns, expected 6"),
        ([HEADER, "f1,a,o,1,2,3,4"], 2, "7 columns, expected 6"),
        ([HEADER, "f1,a,o,1,x,3"], 2, "minute_2: 'x' is not a whole number"),
        ([HEADER, "f1,a,o,1,2.5,3"], 2, "minute_2: '2.5' is not a whole number"),
        ([HEADER, "f1,a,o,1,2,3", "", "f2,a,o,1,-4,3"], 4, "minute_2: negative count -4"),
        ([HEADER, "f1,a,o,1,,3"], 2, "minute_2: '' is not a whole number"),
        ([HEADER, ",a,o,1,2,3"], 2, "empty HashFunction"),
        ([HEADER, "f1,a,o,1,2,3", "f1,b,o,0,0,0"], 3, "already on line 2"),
    ],
)
def test_malformed_trace_names_the_line(lines: list[str], line: int, message: str) -> None:
    with pytest.raises(TraceError) as info:
        parse_trace(lines, source="t.csv")
    assert info.value.line == line
    assert message in str(info.value)
    assert str(info.value).startswith(f"t.csv:{line}:")


def test_pinned_minutes() -> None:
    with pytest.raises(TraceError, match="header has 6 columns, expected 1443"):
        parse_trace([HEADER], minutes=1440)


def test_load_file_all_or_nothing(tmp_path: Path) -> None:
    p = tmp_path / "bad.csv"
    p.write_text(HEADER + "\nf1,a,o,1,2,3\nf2,a,o,1,2,-1\n")
    with pytest.raises(TraceError) as info:
        load_trace(p)
    assert info.value.line == 3 and str(p) in str(info.value)
    good = tmp_path / "good.csv"
    good.write_text(HEADER + "\r\nf1,a,o,1,2,3\r\n")
    assert load_trace(good).function("f1").counts.tolist() == [1, 2, 3]
    binary = tmp_path / "bin.csv"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(TraceError, match="UTF-8"):
        load_trace(binary)


def test_gzip_traces_load_and_a_corrupt_one_names_the_file(tmp_path: Path) -> None:
    packed = tmp_path / "t.csv.gz"
    packed.write_bytes(gzip.compress((HEADER + "\nf1,a,o,1,2,3\n").encode()))
    assert load_trace(packed).function("f1").counts.tolist() == [1, 2, 3]
    broken = tmp_path / "broken.csv.gz"
    broken.write_bytes(b"not gzip at all")
    with pytest.raises(TraceError, match="gzip") as info:
        load_trace(broken)
    assert str(broken) in str(info.value)


def test_loads_the_azure_sample() -> None:
    tr = load_trace(DEFAULT_TRACE, minutes=1440)
    assert len(tr) == 1250 and tr.minutes == 1440
    assert all(f.counts.min() >= 0 for f in tr)


def test_arrivals_together() -> None:
    ts = arrivals_from_counts(np.array([2, 0, 1]), 2.0)
    assert ts.tolist() == [0.0, 0.0, 4.0]
    assert arrivals_from_counts([1, 1], 60.0, start=100.0).tolist() == [100.0, 160.0]


def test_arrivals_poisson_spread_is_seeded_and_stays_in_its_minute() -> None:
    counts = np.array([5, 0, 3, 7])
    a = arrivals_from_counts(counts, 10.0, spread="poisson", seed=3)
    b = arrivals_from_counts(counts, 10.0, spread="poisson", seed=3)
    c = arrivals_from_counts(counts, 10.0, spread="poisson", seed=4)
    assert a.tolist() == b.tolist() and a.tolist() != c.tolist()
    assert np.all(np.diff(a) >= 0)
    assert np.bincount((a // 10).astype(int), minlength=4).tolist() == counts.tolist()


def test_arrivals_reject_bad_input() -> None:
    with pytest.raises(ValueError, match="positive"):
        arrivals_from_counts([1], 0.0)
    with pytest.raises(ValueError, match="non-negative"):
        arrivals_from_counts([1, -1], 1.0)
    with pytest.raises(ValueError, match="spread"):
        arrivals_from_counts([1], 1.0, spread="uniform")  # type: ignore[arg-type]
