"""What every benchmark shares: the run context, result rows, side-by-side timing, /proc."""

from __future__ import annotations

import datetime
import os
import re
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

# Names of the benchmarks, in the order they run and appear in the table.
BENCHMARKS = ("phash", "celery", "e2e", "firstrun", "embed", "scale", "shard", "dataset",
              "neardup", "textdedup", "semantic", "labelling", "report", "planning")


@dataclass
class Context:
    """One run of the suite: where inputs and scratch files go, how big it is."""

    workdir: Path
    quick: bool = False

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)

    def path(self, *parts: str) -> Path:
        return self.workdir.joinpath(*parts)

    def size(self, quick: int, full: int) -> int:
        return quick if self.quick else full


def autods_command() -> list[str]:
    """The installed ``autods`` script beside this interpreter, as a user runs it, else
    the module (a source tree without the script)."""
    exe = Path(sys.executable).parent / "autods"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "autods.cli"]


_LOG_STAMP = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}): ")


def user_env(**settings: str) -> dict[str, str]:
    """The environment of a timed command as a user's shell has it: no ``AUTODS_*`` setting
    but ``settings``, and bytecode written. With ``PYTHONDONTWRITEBYTECODE`` set (as some
    sandboxes do) every run would compile autods' modules again, about 0.2 s per process,
    where a user's second run imports them compiled; installed packages are compiled at
    install, so only autods would pay."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("AUTODS_") and k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, **settings}


def worker_log_time(line: str) -> float | None:
    """The epoch seconds of a Celery worker log line (its stamp is local time), or None for
    a line without a stamp."""
    m = _LOG_STAMP.match(line)
    if not m:
        return None
    return datetime.datetime.fromisoformat(m.group(1)).timestamp() + int(m.group(2)) / 1000


def log(message: str) -> None:
    """Progress on stderr, so stdout carries only the table."""
    sys.stderr.write(f"[bench {time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


@dataclass
class Row:
    """One line of the table.

    ``ratio`` is autods relative to the reference, oriented so that the target reads as
    written in ``target`` (``>= 0.80x``: higher is better; ``< 100x``: growth, lower is
    better). ``ratio`` None means the row was not run or has no comparison.
    """

    group: str
    benchmark: str
    autods: str
    reference: str
    ratio: float | None
    target: str = ""
    op: str = ">="
    threshold: float | None = None
    verdict: str = ""
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.verdict:
            return
        if self.ratio is None:
            self.verdict = "not run"
        elif self.threshold is None:
            self.verdict = "info"
        else:
            ok = {">=": self.ratio >= self.threshold, "<": self.ratio < self.threshold,
                  "<=": self.ratio <= self.threshold}[self.op]
            self.verdict = "pass" if ok else "MISS"


def target_row(group: str, benchmark: str, autods: str, reference: str, ratio: float | None,
               op: str, threshold: float, notes: Sequence[str] = ()) -> Row:
    return Row(group, benchmark, autods, reference, ratio, f"{op} {threshold:g}x", op,
               threshold, notes=list(notes))


def not_run(group: str, benchmark: str, why: str, target: str = "") -> Row:
    return Row(group, benchmark, "—", "—", None, target, verdict=f"not run: {why}")


# Runs redone because the guard saw the environment change under them, by label.
REDONE: dict[str, int] = {}


def guarded(run: Callable[[], T], guard: Callable[[], object] | None, what: str,
            max_redo: int = 3) -> T:
    """``run()``, again if ``guard()`` changed meanwhile (say, PostgreSQL restarted by other
    work on the machine): such a run measured a restart, not the code."""
    for attempt in range(max_redo + 1):
        before = guard() if guard else None
        try:
            value = run()
        except Exception:
            if guard is None or attempt == max_redo or guard() == before:
                raise
            value = None
        if (guard is None or guard() == before) and value is not None:
            return value
        REDONE[what] = REDONE.get(what, 0) + 1
        log(f"{what}: the environment changed during the run (database restarted); "
            "running it again")
    raise RuntimeError(f"{what}: disturbed {max_redo + 1} times in a row")


def alternate(runs: dict[str, Callable[[], float]], rounds: int, label: str = "",
              guard: Callable[[], object] | None = None) -> dict[str, list[float]]:
    """Call each run once per round, in forward order on even rounds and reversed on odd
    ones; each returns the seconds it measured. Returns the times per run name.

    Alternating the order means neither contender always runs right after the other, so
    caches, CPU frequency and neighbours' load affect both alike. Every run starts after
    ``os.sync()``, so that none pays for writing back what the previous one (or an earlier
    benchmark) left in the page cache. With a ``guard``, a run during which the guard's
    value changed is run again (see ``guarded``).
    """
    names = list(runs)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            os.sync()
            times[name].append(guarded(runs[name], guard, label or str(name)))
        if label:
            summary = ", ".join(f"{n} {fmt_time(times[n][-1])}" for n in names)
            log(f"{label} round {r + 1}/{rounds}: {summary}")
    return times


def redone_note(label: str) -> list[str]:
    n = REDONE.get(label, 0)
    return [f"{n} run(s) repeated because PostgreSQL restarted during them"] if n else []


def paired_ratio(numerator: list[float], denominator: list[float]) -> float:
    """Median over rounds of numerator/denominator, each pair measured side by side."""
    return statistics.median(a / b for a, b in zip(numerator, denominator, strict=True))


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def timed(fn: Callable[[], object]) -> Callable[[], float]:
    """A run for ``alternate`` that times the whole call."""

    def run() -> float:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    return run


def fmt_rate(value: float, unit: str = "img/s") -> str:
    if value >= 100:
        return f"{value:,.0f} {unit}"
    if value >= 10:
        return f"{value:.1f} {unit}"
    return f"{value:.2f} {unit}"


def fmt_time(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} µs"


def fmt_mib(kib: float) -> str:
    return f"{kib / 1024:,.0f} MiB"


# /proc


def proc_status_kib(pid: int, field_name: str) -> int | None:
    """A ``kB`` field of /proc/<pid>/status (VmHWM is the peak resident set)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    return None


def proc_children(pid: int) -> list[int]:
    """Direct children of ``pid`` (every thread's list, since any thread may fork)."""
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            out += [int(c) for c in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()]
        except OSError:
            continue
    return sorted(set(out))


def proc_cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


class PeakRss:
    """Peak resident set (VmHWM) of a process tree, sampled while it runs.

    VmHWM is the kernel's own high-water mark, so sampling only has to catch each process
    before it exits; the last value seen per pid is kept.
    """

    def __init__(self, root_pid: int) -> None:
        self.root_pid = root_pid
        self.peaks: dict[int, int] = {}
        self.roles: dict[int, str] = {}

    def sample(self) -> None:
        pids = [self.root_pid] + proc_children(self.root_pid)
        for pid in pids:
            hwm = proc_status_kib(pid, "VmHWM")
            if hwm is None:
                continue
            self.peaks[pid] = max(hwm, self.peaks.get(pid, 0))
            self.roles.setdefault(pid, "main" if pid == self.root_pid else "child")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"
