"""Reward parsers: the number a benchmark prints, found in its stdout.

Every known ``reward_metric`` names one parser and the direction that counts as better
(``maximize`` for throughput, ``minimize`` for latency and elapsed time). A spec may instead
give its own ``reward_pattern``: a regular expression whose first group is the number.

The parsers are tested on real captured outputs (tests/fixtures/bench/). They take the *last*
match in the text, since benchmarks print progress before their summary; the agent returns only
the tail of stdout, so every parser works on a tail as well as on the whole output.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from controller.errors import SpecError

Goal = Literal["maximize", "minimize"]

NUMBER = r"([0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)"


def change_pct(raw: float, baseline: float, goal: str) -> float | None:
    """Percent change of the raw metric, positive = better (the verification's convention); None
    without a positive baseline to compare with."""
    if not baseline or baseline <= 0:
        return None
    ratio = raw / baseline
    return (ratio - 1.0) * 100.0 if goal == "maximize" else (1.0 - ratio) * 100.0


class RewardParseError(SpecError):
    """The benchmark output does not contain the reward metric."""


@dataclass(frozen=True)
class Metric:
    name: str
    goal: Goal
    parse: Callable[[str], float | None]
    example: str  # what the parser looks for, for error messages
    tools: tuple[str, ...] = ()


def _last(pattern: str, text: str, flags: int = re.MULTILINE) -> float | None:
    matches = re.findall(pattern, text, flags)
    if not matches:
        return None
    last = matches[-1]
    return float(last[0] if isinstance(last, tuple) else last)


def _first_of(*parsers: Callable[[str], float | None]) -> Callable[[str], float | None]:
    def parse(text: str) -> float | None:
        for p in parsers:
            value = p(text)
            if value is not None:
                return value
        return None
    return parse


def _line(pattern: str) -> Callable[[str], float | None]:
    return lambda text: _last(pattern, text)


_UNIT_MS = {"us": 0.001, "µs": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}


def _wrk_duration_ms(label: str) -> Callable[[str], float | None]:
    """wrk prints durations with a unit: ``Latency   5.29ms`` or ``99%   51.12ms`` or ``1.20s``."""
    rx = re.compile(rf"^\s*{label}\s+{NUMBER}(us|µs|ms|s|m|h)\b", re.MULTILINE)

    def parse(text: str) -> float | None:
        found = rx.findall(text)
        if not found:
            return None
        value, unit = found[-1][0], found[-1][-1]
        return float(value) * _UNIT_MS[unit]
    return parse


# --- pgbench ------------------------------------------------------------------------------
# pgbench >= 14: "tps = N (without initial connection time)"; with -C: "(including reconnection
# times)"; older releases print "including/excluding connections establishing" pairs.
_pgbench_tps = _first_of(
    _line(rf"^tps = {NUMBER} \((?:without initial connection time|excluding connections establishing)\)"),
    _line(rf"^tps = {NUMBER}\b"),
)

# --- redis-benchmark --csv -------------------------------------------------------------------
# "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
_REDIS_ROW = re.compile(r'^"([A-Z_ ()0-9-]+)",((?:"[0-9.]+",?)+)\s*$', re.MULTILINE)
_REDIS_COLUMNS = ("rps", "avg_latency_ms", "min_latency_ms", "p50_latency_ms", "p95_latency_ms", "p99_latency_ms",
                  "max_latency_ms")


def _redis_csv(column: str, combine: Callable[[list[float]], float]) -> Callable[[str], float | None]:
    """One column over every test row of redis-benchmark --csv (SET, GET, ...), combined: the
    mean of the requests/s, the worst tail latency."""
    index = _REDIS_COLUMNS.index(column)

    def parse(text: str) -> float | None:
        values = []
        for _test, cells in _REDIS_ROW.findall(text):
            numbers = [float(c) for c in re.findall(r'"([0-9.]+)"', cells)]
            if len(numbers) > index:
                values.append(numbers[index])
        return combine(values) if values else None
    return parse


# --- sysbench -----------------------------------------------------------------------------


def _sysbench_events(text: str) -> float | None:
    """cpu/memory/threads print ``events per second:``; oltp prints ``transactions: N (X per sec.)``;
    fileio prints neither, so events/s comes from the general statistics."""
    direct = _first_of(
        _line(rf"^\s*events per second:\s*{NUMBER}"),
        _line(rf"^\s*transactions:\s+\d+\s+\({NUMBER} per sec\.\)"),
    )(text)
    if direct is not None:
        return direct
    events = _last(rf"^\s*total number of events:\s*{NUMBER}", text)
    seconds = _last(rf"^\s*total time:\s*{NUMBER}s", text)
    if events is None or not seconds:
        return None
    return events / seconds


_latency_avg = _first_of(
    _line(rf"^\s+avg:\s+{NUMBER}\s*$"),                                 # sysbench "Latency (ms):" section
    _line(rf"^latency average = {NUMBER} ms"),                          # pgbench
    _wrk_duration_ms("Latency"),                                        # wrk "Thread Stats" line
    _line(rf"^Time per request:\s+{NUMBER} \[ms\] \(mean\)\s*$"),       # ab
)
_latency_p95 = _first_of(
    _line(rf"^\s+95th percentile:\s+{NUMBER}"),                         # sysbench
    _line(rf"^\s*95%\s+{NUMBER}\s*$"),                                  # ab, whole ms
)
_latency_p99 = _first_of(
    _wrk_duration_ms("99%"),                                            # wrk --latency
    _line(rf"^\s*99%\s+{NUMBER}\s*$"),                                  # ab
    _redis_csv("p99_latency_ms", max),                                  # redis-benchmark --csv, worst test
)

# --- HTTP load: ab and wrk ------------------------------------------------------------------
_ab_rps = _line(rf"^Requests per second:\s+{NUMBER}")
_wrk_rps = _line(rf"^Requests/sec:\s+{NUMBER}")

# --- fio --output-format=json ---------------------------------------------------------------


def _fio_json(text: str) -> dict | None:
    start = re.search(r"^\{", text, re.MULTILINE)  # fio may print warnings before the JSON
    if not start:
        return None
    try:
        data = json.loads(text[start.start():])
    except ValueError:
        try:
            data, _ = json.JSONDecoder().raw_decode(text[start.start():])
        except ValueError:
            return None
    return data if isinstance(data, dict) and isinstance(data.get("jobs"), list) else None


def _fio(direction: str, field: str) -> Callable[[str], float | None]:
    """Sum of iops/bw over the jobs; latency (ms) is the mean weighted by each job's I/O count."""
    def parse(text: str) -> float | None:
        data = _fio_json(text)
        if data is None:
            return None
        sides = [j.get(direction) for j in data["jobs"] if isinstance(j.get(direction), dict)]
        if not sides:
            return None
        if field == "lat_ms":
            found = [(s.get("total_ios") or 0, (s.get("lat_ns") or {}).get("mean")) for s in sides]
            ios = [(n, m) for n, m in found if n and m is not None]
            total = sum(n for n, _ in ios)
            return sum(n * m for n, m in ios) / total / 1e6 if total else None
        return float(sum(float(s.get(field) or 0) for s in sides))
    return parse


METRICS: dict[str, Metric] = {}


def _register(names: tuple[str, ...], goal: Goal, parse, example: str, tools: tuple[str, ...] = ()) -> None:
    for name in names:
        METRICS[name] = Metric(name, goal, parse, example, tools)


_register(("transactions_per_second", "tps"), "maximize", _pgbench_tps,
          "pgbench's 'tps = N (without initial connection time)'", ("pgbench",))
_register(("events_per_second",), "maximize", _sysbench_events,
          "sysbench's 'events per second: N' (or total events / total time)", ("sysbench",))
_register(("latency_avg_ms",), "minimize", _latency_avg,
          "a mean latency in ms (sysbench 'avg:', pgbench 'latency average', wrk 'Latency', ab 'Time per request')")
_register(("latency_p95_ms",), "minimize", _latency_p95, "sysbench's '95th percentile:' or ab's '95%' line")
_register(("latency_p99_ms",), "minimize", _latency_p99, "wrk --latency's or ab's '99%' line")
_register(("requests_per_second",), "maximize", _first_of(_ab_rps, _wrk_rps),
          "ab's 'Requests per second:' or wrk's 'Requests/sec:'", ("ab", "wrk"))
_register(("ab_requests_per_second",), "maximize", _ab_rps, "ab's 'Requests per second:'", ("ab",))
_register(("redis_requests_per_second",), "maximize", _redis_csv("rps", lambda v: sum(v) / len(v)),
          "redis-benchmark --csv's rps column (the mean over its tests)", ("redis-benchmark",))
_register(("wrk_requests_per_second",), "maximize", _wrk_rps, "wrk's 'Requests/sec:'", ("wrk",))
for _dir in ("read", "write"):
    _register((f"fio_{_dir}_iops",), "maximize", _fio(_dir, "iops"), f"fio JSON jobs[].{_dir}.iops", ("fio",))
    _register((f"fio_{_dir}_bw_kib",), "maximize", _fio(_dir, "bw"), f"fio JSON jobs[].{_dir}.bw", ("fio",))
    _register((f"fio_{_dir}_lat_ms",), "minimize", _fio(_dir, "lat_ms"),
              f"fio JSON jobs[].{_dir}.lat_ns.mean", ("fio",))
_register(("elapsed_ms",), "minimize", _line(rf"^elapsed_ms = {NUMBER}"),
          "tunefleet-bench accept-storm's 'elapsed_ms = N'")
_register(("throughput_mb_s",), "maximize", _line(rf"^throughput_mb_s = {NUMBER}"),
          "tunefleet-bench stream's 'throughput_mb_s = N'")
_register(("throughput_mbit_s",), "maximize", _line(rf"^throughput_mbit_s = {NUMBER}"),
          "tunefleet-bench stream --to's 'throughput_mbit_s = N'")


def known_metrics() -> list[str]:
    return sorted(METRICS)


def get(name: str) -> Metric | None:
    return METRICS.get(name)


def default_goal(name: str) -> Goal:
    metric = METRICS.get(name)
    return metric.goal if metric else "maximize"


def compile_pattern(pattern: str) -> re.Pattern:
    """A user's reward_pattern; raises ValueError with a readable reason."""
    try:
        rx = re.compile(pattern, re.MULTILINE)
    except re.error as e:
        raise ValueError(f"not a valid regular expression: {e}") from None
    if rx.groups < 1:
        raise ValueError("needs one group around the number, e.g. 'tps = ([0-9.]+)'")
    return rx


def _tail(text: str, limit: int = 160) -> str:
    flat = " | ".join(line.strip() for line in text.strip().splitlines() if line.strip())
    return ("..." + flat[-limit:]) if len(flat) > limit else flat


def parse(metric: str, text: str, pattern: str | None = None) -> float:
    """The reward in ``text``: by ``pattern`` when given, else by the known metric's parser."""
    if pattern:
        rx = compile_pattern(pattern)
        found = [m.group(1) for m in rx.finditer(text)]
        value = None
        for raw in reversed(found):
            try:
                value = float(raw.replace(",", ""))
                break
            except (TypeError, ValueError):
                continue
        what = f"reward_pattern {pattern!r}"
    else:
        known = METRICS.get(metric)
        if known is None:
            raise SpecError(f"reward_metric {metric!r} is not known (known: {', '.join(known_metrics())}); "
                            "give reward_pattern to parse it")
        value = known.parse(text)
        what = f"{metric} (looked for {known.example})"
    if value is None:
        if not text.strip():
            raise RewardParseError(f"no {what}: the benchmark printed nothing on stdout")
        raise RewardParseError(f"no {what} in the benchmark output; it ends with: {_tail(text)!r}")
    return value
