"""Replay of a recorded request trace (the Azure LLM inference trace CSV format).

Format: header `TIMESTAMP,ContextTokens,GeneratedTokens`, then one row per request with
the arrival time as `YYYY-MM-DD HH:MM:SS.fffffff` (up to 7 fractional digits) and the
prompt and output token counts. Read with the csv module because the shipped file has
CRLF line endings. Malformed input fails with the file and 1-based line number, since a
silently skipped or mis-parsed row would bias every result that uses the trace.
"""

from __future__ import annotations

import csv
import functools
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from rlspec.config import check_range
from rlspec.workload.assemble import to_requests
from rlspec.workload.checks import check_nonnegative, check_positive
from rlspec.workload.lengths import scale_lengths
from rlspec.workload.request import Request

HEADER = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
_TIMESTAMP = re.compile(r"(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,7}))?")
_TICKS_PER_S = 10**7  # the format's resolution is 100 ns; integer ticks keep it exact


class TraceError(ValueError):
    """A trace file is missing or malformed; the message names the file and line."""


@dataclass(frozen=True, eq=False)
class TraceData:
    """A parsed trace file. The arrays are read-only because parses are cached and shared."""

    path: Path
    arrival_s: np.ndarray  # float64 seconds since the first row, non-decreasing
    prompt_len: np.ndarray  # int64 ContextTokens, >= 1
    output_len: np.ndarray  # int64 GeneratedTokens, >= 1

    def __len__(self) -> int:
        return len(self.arrival_s)


def read_trace(path: str | Path) -> TraceData:
    """Parse a trace CSV; repeated reads of an unchanged file return the cached parse."""
    resolved = Path(path).resolve()
    try:
        stat = resolved.stat()
    except FileNotFoundError:
        raise TraceError(f"{resolved}: trace file not found") from None
    if not resolved.is_file():
        raise TraceError(f"{resolved}: not a regular file")
    return _read_cached(resolved, stat.st_mtime_ns, stat.st_size)


def load_trace(
    path: str | Path,
    *,
    rate_scale: float = 1.0,
    length_scale: float = 1.0,
    start_s: float = 0.0,
    duration_s: float | None = None,
    max_requests: int | None = None,
    max_prompt_len: int | None = None,
    max_output_len: int | None = None,
) -> list[Request]:
    """Requests replayed from a trace file, ids 0..n-1 in arrival order.

    rate_scale: divides all arrival times (2.0 = twice the requests per second).
    length_scale: multiplies prompt and output lengths, rounded, at least 1.
    start_s, duration_s: keep arrivals in [start_s, start_s + duration_s) of the scaled
        timeline and shift them so `start_s` becomes time 0.
    max_requests: keep only the first requests after the window.
    max_prompt_len, max_output_len: clip lengths (after length scaling).
    """
    check_positive("rate_scale", rate_scale)
    check_positive("length_scale", length_scale)
    check_nonnegative("start_s", start_s)
    if duration_s is not None:
        check_positive("duration_s", duration_s)
    for name, limit in (
        ("max_requests", max_requests),
        ("max_prompt_len", max_prompt_len),
        ("max_output_len", max_output_len),
    ):
        if limit is not None:
            check_range(name, limit, lo=1)
    trace = read_trace(path)
    times = trace.arrival_s / rate_scale
    end = np.inf if duration_s is None else start_s + duration_s
    lo, hi = np.searchsorted(times, [start_s, end], side="left")
    if max_requests is not None:
        hi = min(hi, lo + max_requests)
    prompt = scale_lengths(trace.prompt_len[lo:hi], length_scale)
    output = scale_lengths(trace.output_len[lo:hi], length_scale)
    if max_prompt_len is not None:
        prompt = np.minimum(prompt, max_prompt_len)
    if max_output_len is not None:
        output = np.minimum(output, max_output_len)
    return to_requests(times[lo:hi] - start_s, prompt, output)


@functools.lru_cache(maxsize=8)
def _read_cached(path: Path, mtime_ns: int, size: int) -> TraceData:
    """Keyed by modification time and size too, so an edited file is parsed again."""
    ticks: list[int] = []
    prompt: list[int] = []
    output: list[int] = []
    with path.open(newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise TraceError(f"{path}: empty file, expected header {','.join(HEADER)}")
        if tuple(h.strip() for h in header) != HEADER:
            raise TraceError(f"{path}:1: header is {header}, expected {','.join(HEADER)}")
        for row in reader:
            line = reader.line_num
            if len(row) != 3:
                raise TraceError(f"{path}:{line}: expected 3 fields, got {len(row)}: {row}")
            t = _parse_timestamp(row[0], path, line)
            if ticks and t < ticks[-1]:
                raise TraceError(
                    f"{path}:{line}: timestamp {row[0]!r} is earlier than the previous row's"
                )
            ticks.append(t)
            prompt.append(_parse_tokens(row[1], HEADER[1], path, line))
            output.append(_parse_tokens(row[2], HEADER[2], path, line))
    if not ticks:
        raise TraceError(f"{path}: no data rows after the header")
    rel = np.array(ticks, dtype=np.int64) - ticks[0]
    data = TraceData(
        path=path,
        arrival_s=rel / _TICKS_PER_S,
        prompt_len=np.array(prompt, dtype=np.int64),
        output_len=np.array(output, dtype=np.int64),
    )
    for arr in (data.arrival_s, data.prompt_len, data.output_len):
        arr.setflags(write=False)
    return data


def _parse_timestamp(text: str, path: Path, line: int) -> int:
    """`YYYY-MM-DD HH:MM:SS[.fffffff]` -> integer 100 ns ticks since 0001-01-01."""
    m = _TIMESTAMP.fullmatch(text.strip())
    if m is None:
        raise TraceError(
            f"{path}:{line}: bad timestamp {text!r}, expected YYYY-MM-DD HH:MM:SS.fffffff"
        )
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    try:
        day_number = datetime(year, month, day, hour, minute, second).toordinal()
    except ValueError as exc:
        raise TraceError(f"{path}:{line}: bad timestamp {text!r}: {exc}") from None
    seconds = day_number * 86400 + hour * 3600 + minute * 60 + second
    fraction = int((m.group(7) or "").ljust(7, "0"))
    return seconds * _TICKS_PER_S + fraction


def _parse_tokens(text: str, column: str, path: Path, line: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise TraceError(f"{path}:{line}: {column} {text!r} is not an integer") from None
    if value < 1:
        raise TraceError(f"{path}:{line}: {column} must be >= 1, got {value}")
    return value
