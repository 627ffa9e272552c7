"""Azure Functions 2019 trace files: loading with validation, and replay as arrival times.

Format (one header line, then one line per function):
    HashFunction,HashApp,HashOwner,minute_1,...,minute_N
with N whole, non-negative invocation counts per minute (N = 1440 for one day).

Loading is all-or-nothing: the whole file is parsed and checked before anything is returned,
and the first problem raises a TraceError that names the line, so a half-valid file never
becomes half an app history.
"""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

ID_COLUMNS: tuple[str, ...] = ("HashFunction", "HashApp", "HashOwner")
#: The Azure Functions 2019 sample shipped with the package (attribution in its README.md):
#: the default trace of the demo, the replay, the simulator and the benchmarks.
DEFAULT_TRACE = Path(__file__).resolve().parent / "data" / "azure2019" / "invocations_1250.csv.gz"
Spread = Literal["together", "poisson"]


class TraceError(ValueError):
    """A malformed trace; `line` is the 1-based line of the file where the problem is."""

    def __init__(self, source: str, line: int, message: str) -> None:
        super().__init__(f"{source}:{line}: {message}")
        self.source = source
        self.line = line


@dataclass(frozen=True)
class TraceFunction:
    """One function's row: its ids and its per-minute invocation counts."""

    hash_function: str
    hash_app: str
    hash_owner: str
    counts: npt.NDArray[np.int64]
    line: int

    @property
    def invocations(self) -> int:
        return int(self.counts.sum())

    @property
    def active_minutes(self) -> int:
        """Minutes with at least one invocation."""
        return int(np.count_nonzero(self.counts))

    def arrivals(
        self,
        seconds_per_minute: float,
        *,
        spread: Spread = "together",
        seed: int = 0,
        start: float = 0.0,
    ) -> npt.NDArray[np.float64]:
        """This function's invocations as arrival timestamps; see `arrivals_from_counts`."""
        return arrivals_from_counts(self.counts, seconds_per_minute, spread=spread, seed=seed, start=start)


@dataclass(frozen=True)
class Trace:
    """A loaded trace: functions in file order, all with the same number of minutes."""

    functions: tuple[TraceFunction, ...]
    minutes: int
    source: str = "<trace>"

    def __len__(self) -> int:
        return len(self.functions)

    def __iter__(self) -> Iterator[TraceFunction]:
        return iter(self.functions)

    def function(self, hash_function: str) -> TraceFunction:
        for f in self.functions:
            if f.hash_function == hash_function:
                return f
        raise KeyError(hash_function)

    def matrix(self) -> npt.NDArray[np.int64]:
        """All counts as a (functions x minutes) array."""
        if not self.functions:
            return np.zeros((0, self.minutes), dtype=np.int64)
        return np.stack([f.counts for f in self.functions])


def _expected_header(minutes: int) -> list[str]:
    return [*ID_COLUMNS, *(f"minute_{i}" for i in range(1, minutes + 1))]


def parse_trace(lines: Iterable[str], *, source: str = "<trace>", minutes: int | None = None) -> Trace:
    """Parse trace text (an iterable of lines, e.g. an open file or str.splitlines()).

    `minutes` pins the expected number of minute columns (1440 for a day); by default the
    header decides. Blank lines are skipped (a trailing newline is not an error).

    Raises TraceError naming the line for: an empty file, a wrong header, a row with the
    wrong number of columns, an empty id, a count that is not a whole number or is negative,
    and a HashFunction that appears twice.
    """
    reader = csv.reader(lines)
    try:
        header = next(reader)
    except StopIteration:
        raise TraceError(source, 1, "empty file: expected a header line") from None
    except csv.Error as exc:
        raise TraceError(source, 1, f"unreadable CSV: {exc}") from exc
    header = [h.strip() for h in header]
    n_minutes = len(header) - len(ID_COLUMNS) if minutes is None else minutes
    if n_minutes < 1:
        raise TraceError(
            source, 1, f"header has {len(header)} columns; expected {', '.join(ID_COLUMNS)}, minute_1.."
        )
    expected = _expected_header(n_minutes)
    if header != expected:
        raise TraceError(source, 1, _header_problem(header, expected))
    n_cols = len(expected)
    functions: list[TraceFunction] = []
    seen: dict[str, int] = {}
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise TraceError(source, reader.line_num, f"unreadable CSV: {exc}") from exc
        line = reader.line_num
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != n_cols:
            raise TraceError(
                source, line, f"{len(row)} columns, expected {n_cols} (3 ids + {n_minutes} minutes)"
            )
        ids = [cell.strip() for cell in row[:3]]
        for name, ident in zip(ID_COLUMNS, ids, strict=True):
            if not ident:
                raise TraceError(source, line, f"empty {name}")
        counts = np.empty(n_minutes, dtype=np.int64)
        for i, cell in enumerate(row[3:]):
            text = cell.strip()
            try:
                value = int(text)
            except ValueError:
                raise TraceError(
                    source, line, f"minute_{i + 1}: {text!r} is not a whole number of invocations"
                ) from None
            if value < 0:
                raise TraceError(source, line, f"minute_{i + 1}: negative count {value}")
            counts[i] = value
        if ids[0] in seen:
            raise TraceError(source, line, f"HashFunction {ids[0]} already on line {seen[ids[0]]}")
        seen[ids[0]] = line
        functions.append(TraceFunction(ids[0], ids[1], ids[2], counts, line))
    return Trace(tuple(functions), n_minutes, source)


def _header_problem(header: list[str], expected: list[str]) -> str:
    if len(header) != len(expected):
        return f"header has {len(header)} columns, expected {len(expected)}"
    for i, (got, want) in enumerate(zip(header, expected, strict=True)):
        if got != want:
            return f"header column {i + 1} is {got!r}, expected {want!r}"
    return "bad header"  # unreachable: the lists differ somewhere


def load_trace(path: str | Path, *, minutes: int | None = None) -> Trace:
    """Load and validate a trace file, plain or gzip-compressed (`.gz`); see `parse_trace`."""
    p = Path(path)
    try:
        raw = gzip.decompress(p.read_bytes()) if p.suffix == ".gz" else p.read_bytes()
        text = raw.decode("utf-8-sig")  # tolerate a byte-order mark
    except UnicodeDecodeError as exc:
        raise TraceError(str(p), 1, f"not UTF-8 text: {exc}") from exc
    except (gzip.BadGzipFile, EOFError) as exc:
        raise TraceError(str(p), 1, f"not a gzip file: {exc}") from exc
    return parse_trace(io.StringIO(text, newline=""), source=str(p), minutes=minutes)


def arrivals_from_counts(
    counts: npt.NDArray[np.integer] | Iterable[int],
    seconds_per_minute: float,
    *,
    spread: Spread = "together",
    seed: int = 0,
    start: float = 0.0,
) -> npt.NDArray[np.float64]:
    """Map per-minute counts to sorted arrival timestamps, one trace minute = N seconds.

    spread="together": every invocation of minute i arrives at start + i·N (a burst, as the
    reference load generator fires them). spread="poisson": they arrive at independent
    uniform times inside [start + i·N, start + (i+1)·N): given its count, that is exactly how a
    Poisson process places arrivals in an interval. `seed` makes it reproducible.

    Example: counts [2, 0, 1], N = 2, together -> [0.0, 0.0, 4.0].
    """
    if not seconds_per_minute > 0:
        raise ValueError(f"seconds_per_minute must be positive, got {seconds_per_minute}")
    c = np.asarray(list(counts) if not isinstance(counts, np.ndarray) else counts, dtype=np.int64)
    if c.ndim != 1 or np.any(c < 0):
        raise ValueError("counts must be a 1-D series of non-negative integers")
    minute_start = start + np.repeat(np.arange(c.size, dtype=np.float64), c) * seconds_per_minute
    if spread == "together":
        return minute_start
    if spread == "poisson":
        rng = np.random.default_rng(seed)
        return np.sort(minute_start + rng.uniform(0.0, seconds_per_minute, size=minute_start.size))
    raise ValueError(f"unknown spread {spread!r}; use 'together' or 'poisson'")
