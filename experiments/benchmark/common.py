"""Timing, machine description and markdown tables for the benchmark.

Every comparison is timed by :func:`compare`: the candidates are warmed up, then
run in rounds whose calls are interleaved one by one (the order reversed every
other round), so that a noisy neighbour on a shared machine slows all of them
alike; the result is the median over rounds of each candidate's time per call,
and ratios are taken between those medians.
"""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SWEEP_196 = ["depth=2..50", "activation=tanh,relu,sigmoid,erf"]
"""The arguments of the baseline section's 196-job sweep (``2 cores against 1``)."""


def start_depthlab(
    args: Sequence[str], cpus: Sequence[int], env: Mapping[str, str] | None = None
) -> tuple[subprocess.Popen, Path]:
    """Start ``python -m depthlab ARGS`` pinned to ``cpus`` (its CPU affinity)
    in a fresh temporary folder (a fresh store); ``env``: its environment
    (default: this process's). Returns the process and the folder, for
    :func:`end_depthlab`. Start from one thread only (``preexec_fn``)."""
    work = Path(tempfile.mkdtemp(prefix="depthlab-bench-"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "depthlab", *args],
        cwd=work,
        env=dict(env) if env is not None else None,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: os.sched_setaffinity(0, list(cpus)),
    )
    return proc, work


def end_depthlab(proc: subprocess.Popen, work: Path) -> None:
    """End a process of :func:`start_depthlab` (killed if it still runs: the
    caller stopped early) and remove its folder; raises RuntimeError with the
    end of its standard error if it failed."""
    try:
        if proc.poll() is None:
            proc.kill()
        stderr = proc.communicate()[1]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if proc.returncode != 0:
        raise RuntimeError(f"exit {proc.returncode}\n{stderr[-2000:]}")


def depthlab_wall(
    args: Sequence[str], cpus: Sequence[int], env: Mapping[str, str] | None = None
) -> float:
    """Wall seconds of ``python -m depthlab ARGS`` pinned to ``cpus``, in a
    fresh folder (:func:`start_depthlab`); raises if it fails."""
    tic = time.perf_counter()
    proc, work = start_depthlab(args, cpus, env)
    try:
        proc.wait()
        return time.perf_counter() - tic
    finally:
        end_depthlab(proc, work)


@dataclass
class Timing:
    """Seconds per call of one candidate: the median over rounds, and all rounds."""

    median: float
    rounds: list[float] = field(default_factory=list)

    @property
    def spread(self) -> float:
        """(q75 - q25) / median over the rounds: how noisy the measurement was."""
        if len(self.rounds) < 4:
            return float("nan")
        q = statistics.quantiles(self.rounds, n=4)
        return (q[2] - q[0]) / self.median


def compare(
    cases: Mapping[str, Callable[[], Any]],
    *,
    rounds: int = 7,
    min_round_s: float = 0.02,
    max_total_s: float = 20.0,
    warmup: int = 2,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, Timing]:
    """Median seconds per call of each case, measured in interleaved rounds.

    Parameters
    ----------
    cases : mapping of name to a callable without arguments
    rounds : int
        Rounds after warm-up (fewer if ``max_total_s`` would be exceeded; at
        least 3).
    min_round_s : float
        A round calls each case often enough to last about this long (small
        kernels are repeated so that the clock's resolution does not matter).
    max_total_s : float
        A soft limit on the time all rounds of all cases take together.
    warmup : int
        Calls of each case before timing (JIT compilation, caches, allocator).
    clock : callable
        The clock: wall time by default; ``time.thread_time`` measures the CPU
        time of single-threaded work, which other processes change little.
    """
    first: dict[str, float] = {}
    for name, fn in cases.items():
        for _ in range(warmup):
            tic = clock()
            fn()
            first[name] = clock() - tic
    number = {
        name: max(1, int(min_round_s / max(t, 1e-7))) for name, t in first.items()
    }
    per_round = sum(number[n] * first[n] for n in cases)
    rounds = max(3, min(rounds, int(max_total_s / max(per_round, 1e-9))))
    # Within a round the calls of all cases are interleaved one by one (a case
    # with k calls per round is called at k evenly spread steps), so that a
    # neighbour's burst of load hits every case alike.
    steps = max(number.values())
    schedule = [
        [n for n in cases if (j + 1) * number[n] // steps > j * number[n] // steps]
        for j in range(steps)
    ]
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for r in range(rounds):
        spent = dict.fromkeys(cases, 0.0)
        for names in schedule:
            for name in names if r % 2 == 0 else reversed(names):
                fn = cases[name]
                tic = clock()
                fn()
                spent[name] += clock() - tic
        for name in cases:
            samples[name].append(spent[name] / number[name])
    return {
        name: Timing(statistics.median(values), values)
        for name, values in samples.items()
    }


def timed(
    name: str,
    fn: Callable[..., Any],
    seconds: MutableMapping[str, float],
    calls: MutableMapping[str, int],
    clock: Callable[[], float] = time.perf_counter,
) -> Callable[..., Any]:
    """``fn``, with the ``clock`` time of each call added to ``seconds[name]`` and
    the call counted in ``calls[name]`` (mappings with a default, e.g.
    ``collections.defaultdict``)."""

    def run(*args: Any, **kwargs: Any) -> Any:
        tic = clock()
        try:
            return fn(*args, **kwargs)
        finally:
            seconds[name] += clock() - tic
            calls[name] += 1

    return run


def median_time(fn: Callable[[], Any], **kwargs: Any) -> float:
    """Median seconds per call of one callable (see :func:`compare`)."""
    return compare({"f": fn}, **kwargs)["f"].median


# ---------------------------------------------------------------------------
# The machine


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _version(module: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(module)
    except PackageNotFoundError:
        return None


def _git(*args: str) -> str:
    """What ``git ARGS`` prints (stripped), run in the current folder."""
    return subprocess.run(
        ["git", *args], capture_output=True, text=True, timeout=5
    ).stdout.strip()


def machine_info() -> dict[str, Any]:
    """CPU, cores, load, BLAS configuration (threadpoolctl) and versions."""
    import numpy as np
    from threadpoolctl import threadpool_info

    flags = _cpu_flags()
    simd = [
        f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile") if f in flags
    ]
    try:
        load = os.getloadavg()
    except OSError:
        load = (float("nan"),) * 3
    pools = [
        {
            k: p.get(k)
            for k in (
                "internal_api",
                "version",
                "architecture",
                "num_threads",
                "prefix",
            )
        }
        for p in threadpool_info()
    ]
    try:
        commit = _git("rev-parse", "--short", "HEAD")
        if _git("status", "--porcelain", "--untracked-files=no"):
            commit += " + uncommitted changes"
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "simd": simd,
        "load_average_at_start": [round(x, 2) for x in load],
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "numpy": np.__version__,
        "blas": pools,
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"),
        "versions": {
            m: _version(m)
            for m in (
                "depthlab",
                "scipy",
                "torch",
                "jax",
                "jaxlib",
                "pandas",
                "mlflow",
                "hydra-core",
                "threadpoolctl",
            )
        },
        "git_commit": commit,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def machine_markdown(info: Mapping[str, Any]) -> str:
    """The machine as a short markdown list."""
    blas = "; ".join(
        f"{p['internal_api']} {p['version']} ({p['prefix']}, {p['architecture']}, "
        f"{p['num_threads']} threads)"
        for p in info["blas"]
    )
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items() if v)
    load = ", ".join(f"{x:g}" for x in info["load_average_at_start"])
    lines = [
        f"- CPU: {info['cpu']}, {info['cores']} cores ({', '.join(info['simd'])})",
        f"- load average at start (1, 5, 15 min): {load}",
        f"- numpy {info['numpy']}; BLAS (threadpoolctl, after importing every peer): "
        f"{blas}",
        f"- OPENBLAS_CORETYPE: {info['openblas_coretype'] or 'not set'}",
        f"- Python {info['python']}, {info['platform']}",
        f"- {versions}",
        f"- depthlab commit {info['git_commit']}, {info['date']}",
    ]
    return "\n".join(lines)


def machine_line(info: Mapping[str, Any]) -> str:
    """The machine in one line: CPU, load, commit and date."""
    load = ", ".join(f"{x:g}" for x in info["load_average_at_start"])
    return (
        f"{info['cpu']}, {info['cores']} cores, load average {load} at start, "
        f"depthlab commit {info['git_commit']}, {info['date']}"
    )


# ---------------------------------------------------------------------------
# Tables


def markdown_table(
    header: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None = None
) -> str:
    """A markdown table; ``align`` has one of ``l``/``r`` per column."""
    align = align or "l" + "r" * (len(header) - 1)
    sep = ["---:" if a == "r" else ":---" for a in align]
    lines = [
        "| " + " | ".join(str(h) for h in header) + " |",
        "| " + " | ".join(sep) + " |",
    ]
    lines.extend("| " + " | ".join(_cell(c) for c in row) + " |" for row in rows)
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value != value:
            return "-"
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def fmt_seconds(seconds: float | None) -> str:
    """``1.23 ms``, ``45.6 µs`` or ``2.34 s``."""
    if seconds is None or seconds != seconds:
        return "-"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds * 1e6:.3g} µs"


def fmt_ratio(value: float | None) -> str:
    """A speed ratio, ``1.23x``."""
    if value is None or value != value:
        return "-"
    return f"{value:.2f}x" if value < 100 else f"{value:.0f}x"
