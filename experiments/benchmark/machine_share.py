"""What a 2-core machine gives two processes at once: the most a parallel
sweep can get.

Usage::

    python experiments/benchmark/machine_share.py [--rounds N] [depthlab arguments]

(default arguments: the 196-job sweep of the ``baseline`` section,
``depth=2..50 activation=tanh,relu,sigmoid,erf``). Each round runs
``python -m depthlab ARGS`` in one process on the first CPU alone
(``n_jobs=1``, a fresh folder and store), then two copies of it at the same
moment, one pinned to each of the first two CPUs (each in its own fresh
folder), and prints each wall time and

    share = 2 * alone / slower of the two together

the ratio that a sweep on 2 cores against 1 would reach if its jobs split
into two independent halves that cost nothing to share out: 2.0 where the
cores do not slow each other (caches, memory bandwidth, a neighbour on the
host). The benchmark's ``2 cores against 1`` (``run.py --sections baseline``)
is measured against the same one-core run; the difference between the two is
what depthlab's workers, tracker and serial start and end cost.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

from common import SWEEP_196, end_depthlab, start_depthlab


def walls(cpus: list[int], args: list[str]) -> list[float]:
    """Wall seconds of ``python -m depthlab ARGS n_jobs=1``, one per CPU in
    ``cpus``, each pinned to its CPU, all started at once."""
    tic = time.perf_counter()
    started = [start_depthlab([*args, "n_jobs=1"], [cpu]) for cpu in cpus]
    out = [0.0] * len(started)
    try:
        pending = set(range(len(started)))
        while pending:
            for i in list(pending):
                if started[i][0].poll() is not None:
                    out[i] = time.perf_counter() - tic
                    pending.discard(i)
            time.sleep(0.01)
    finally:
        for proc, work in started:
            end_depthlab(proc, work)
    return out


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("args", nargs="*", help="depthlab's arguments")
    ns = p.parse_args(argv)
    args = ns.args or SWEEP_196
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        p.error("needs 2 CPUs")
    alone: list[float] = []
    together: list[float] = []
    for r in range(ns.rounds):
        (one,) = walls(cpus[:1], args)
        two = walls(cpus[:2], args)
        alone.append(one)
        together.append(max(two))
        print(
            f"round {r + 1}: alone {one:.2f} s; together "
            f"{two[0]:.2f} s and {two[1]:.2f} s",
            flush=True,
        )
    a, t = statistics.median(alone), statistics.median(together)
    print(
        f"\n`python -m depthlab {' '.join(args)} n_jobs=1`, {ns.rounds} round(s): "
        f"alone {a:.2f} s, two at once {t:.2f} s (the slower); "
        f"share = 2 * alone / together = {2 * a / t:.3f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
