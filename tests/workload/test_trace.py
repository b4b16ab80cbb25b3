import os
from pathlib import Path

import numpy as np
import pytest

from rlspec.workload.trace import TraceError, load_trace, read_trace

TRACE = Path(__file__).resolve().parents[2] / "traces" / "azure_llm_2023_code.csv"
HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens"


def write(tmp_path: Path, *rows: str, name: str = "t.csv") -> Path:
    path = tmp_path / name
    path.write_bytes("\r\n".join([HEADER, *rows]).encode())
    return path


def test_real_trace_matches_documented_statistics():
    reqs = load_trace(TRACE)
    assert len(reqs) == 8819
    assert [r.request_id for r in reqs] == list(range(8819))
    assert reqs[0].arrival_s == 0.0
    assert reqs[-1].arrival_s == pytest.approx(3435.948, abs=0.01)
    assert np.mean([r.prompt_len for r in reqs]) == pytest.approx(2047.85, abs=0.01)
    assert np.mean([r.output_len for r in reqs]) == pytest.approx(27.88, abs=0.01)
    assert (reqs[0].prompt_len, reqs[0].output_len) == (4808, 10)
    assert reqs[1].arrival_s == pytest.approx(0.052, abs=1e-9)  # 04.0319600 - 03.9799600


def test_last_row_without_newline_has_no_stray_cr():
    data = read_trace(TRACE)
    assert data.output_len[-1] > 0 and len(data) == 8819


def test_parse_is_cached_and_read_only():
    a = read_trace(TRACE)
    assert read_trace(str(TRACE)) is a
    with pytest.raises(ValueError):
        a.arrival_s[0] = 1.0


def test_cache_notices_a_changed_file(tmp_path):
    path = write(tmp_path, "2023-01-01 00:00:00.0000000,5,6")
    assert len(read_trace(path)) == 1
    write(tmp_path, "2023-01-01 00:00:00.0000000,5,6", "2023-01-01 00:00:01.0000000,5,6")
    os.utime(path, ns=(1, 1))  # make sure the mtime differs even on coarse clocks
    assert len(read_trace(path)) == 2


def test_rate_scale_halves_span():
    reqs = load_trace(TRACE, rate_scale=2.0)
    assert len(reqs) == 8819
    assert reqs[-1].arrival_s == pytest.approx(3435.948 / 2, abs=0.01)


def test_length_scale():
    full = load_trace(TRACE)
    small = load_trace(TRACE, length_scale=0.1)
    for a, b in zip(full[:200], small[:200], strict=True):
        assert b.prompt_len == max(1, round(a.prompt_len * 0.1))
        assert b.output_len == max(1, round(a.output_len * 0.1))
        assert b.arrival_s == a.arrival_s
    assert np.mean([r.prompt_len for r in small]) == pytest.approx(204.8, rel=0.01)


def test_length_clips():
    reqs = load_trace(TRACE, max_prompt_len=1000, max_output_len=16)
    assert max(r.prompt_len for r in reqs) == 1000
    assert max(r.output_len for r in reqs) == 16


def test_max_requests_truncates():
    reqs = load_trace(TRACE, max_requests=100)
    assert len(reqs) == 100
    assert reqs == load_trace(TRACE)[:100]


def test_window_start_and_duration_in_scaled_time():
    full = load_trace(TRACE, rate_scale=2.0)
    window = load_trace(TRACE, rate_scale=2.0, start_s=100.0, duration_s=300.0)
    expected = [r for r in full if 100.0 <= r.arrival_s < 400.0]
    assert len(window) == len(expected) > 0
    assert window[0].request_id == 0
    assert window[0].arrival_s == pytest.approx(expected[0].arrival_s - 100.0)
    assert all(0.0 <= r.arrival_s < 300.0 for r in window)
    assert [r.prompt_len for r in window] == [r.prompt_len for r in expected]


def test_fraction_digits_and_equal_timestamps(tmp_path):
    path = write(
        tmp_path,
        "2023-01-01 23:59:59.5,1,2",
        "2023-01-01 23:59:59.5000000,3,4",
        "2023-01-02 00:00:00,5,6",
    )
    assert [r.arrival_s for r in load_trace(path)] == [0.0, 0.0, 0.5]


@pytest.mark.parametrize(
    ("rows", "line", "what"),
    [
        (["2023-01-01 00:00:00.0,1,2", "2023-01-01 00:00:01.0,1"], 3, "expected 3 fields, got 2"),
        (["2023-01-01 00:00:00.0,1,2", "2023-01-01 00:00:01.0,1,2,3"], 3, "got 4"),
        (["2023-01-01 00:00:00.0,1,2", "yesterday,1,2"], 3, "bad timestamp 'yesterday'"),
        (["2023-13-01 00:00:00.0,1,2"], 2, "bad timestamp"),
        (["2023-01-01 00:00:00.12345678,1,2"], 2, "bad timestamp"),
        (
            ["2023-01-01 00:00:00.0,1,2", "2023-01-01 00:00:01.0,-5,2"],
            3,
            "ContextTokens must be >= 1",
        ),
        (["2023-01-01 00:00:00.0,1,0"], 2, "GeneratedTokens must be >= 1, got 0"),
        (["2023-01-01 00:00:00.0,1.5,2"], 2, "ContextTokens '1.5' is not an integer"),
        (
            ["2023-01-01 00:00:02.0,1,2", "2023-01-01 00:00:03.0,1,2", "2023-01-01 00:00:01.0,1,2"],
            4,
            "earlier than the previous row",
        ),
        (["2023-01-01 00:00:00.0,1,2", "", "2023-01-01 00:00:01.0,1,2"], 3, "got 0"),
    ],
)
def test_malformed_rows_name_file_and_line(tmp_path, rows, line, what):
    path = write(tmp_path, *rows)
    with pytest.raises(TraceError) as exc:
        read_trace(path)
    msg = str(exc.value)
    assert f"{path.resolve()}:{line}:" in msg
    assert what in msg


def test_trailing_newline_is_fine(tmp_path):
    path = write(tmp_path, "2023-01-01 00:00:00.0,1,2", "")
    assert len(read_trace(path)) == 1


def test_bad_header(tmp_path):
    path = tmp_path / "h.csv"
    path.write_text("time,prompt,output\n2023-01-01 00:00:00.0,1,2\n")
    with pytest.raises(TraceError, match=r"h\.csv:1: header"):
        read_trace(path)


def test_empty_and_header_only(tmp_path):
    empty = tmp_path / "e.csv"
    empty.write_text("")
    with pytest.raises(TraceError, match="empty file"):
        read_trace(empty)
    with pytest.raises(TraceError, match="no data rows"):
        read_trace(write(tmp_path, name="h.csv"))


def test_missing_file(tmp_path):
    with pytest.raises(TraceError, match="nope.csv: trace file not found"):
        read_trace(tmp_path / "nope.csv")


def test_bad_options():
    with pytest.raises(ValueError, match="rate_scale"):
        load_trace(TRACE, rate_scale=0.0)
    with pytest.raises(ValueError, match="max_output_len"):
        load_trace(TRACE, max_output_len=0)
