"""Two checkouts of depthlab against each other, in the same run, interleaved.

Usage::

    python experiments/benchmark/compare_trees.py [--rounds N] [--cores 1,2] \\
        TREE_A TREE_B [depthlab arguments]

e.g. ``git worktree add /tmp/before <commit>``, then
``python experiments/benchmark/compare_trees.py --rounds 3 /tmp/before .``
(default arguments: the 196-job sweep of the ``baseline`` section,
``depth=2..50 activation=tanh,relu,sigmoid,erf``). Each round runs
``python -m depthlab ARGS`` from each tree (its folder first on ``PYTHONPATH``,
so that its ``depthlab`` is imported, whatever is installed) on each core count
(the process's CPU affinity: the first N CPUs), in a fresh temporary folder
(a fresh store), the trees' order reversed every other round; it prints every
wall time, and each tree's median per core count and ratios.

Why: on these shared machines the same code runs 10-20% slower or faster an
hour later (the first run of this session: a 16.8 s sweep that took 14.0 s
two hours on), so a gain is measured against the code before it in the same
run, never against a number written down earlier.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

from common import SWEEP_196, depthlab_wall


def run_once(tree: Path, cores: int, args: list[str]) -> float:
    """Wall seconds of ``python -m depthlab ARGS`` from ``tree`` on ``cores``
    CPUs, in a fresh folder; raises if it fails."""
    cpus = sorted(os.sched_getaffinity(0))[:cores]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tree), os.environ.get("PYTHONPATH", "")]),
    }
    try:
        return depthlab_wall(args, cpus, env)
    except RuntimeError as err:
        raise RuntimeError(f"{tree}: {err}") from None


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--cores", default="1,2", help="core counts, e.g. 1,2")
    p.add_argument("tree_a", type=Path)
    p.add_argument("tree_b", type=Path)
    p.add_argument("args", nargs="*", help="depthlab's arguments")
    ns = p.parse_args(argv)
    trees = [ns.tree_a.resolve(), ns.tree_b.resolve()]
    cores = [int(c) for c in ns.cores.split(",")]
    args = ns.args or SWEEP_196
    walls: dict[tuple[Path, int], list[float]] = {}
    for r in range(ns.rounds):
        for c in cores:
            for tree in trees if r % 2 == 0 else trees[::-1]:
                wall = run_once(tree, c, args)
                walls.setdefault((tree, c), []).append(wall)
                print(f"round {r + 1}: {tree} on {c} core(s): {wall:.2f} s", flush=True)
    print(f"\n`python -m depthlab {' '.join(args)}`, {ns.rounds} round(s):\n")
    print("| tree | " + " | ".join(f"{c} core(s)" for c in cores) + " | ratio |")
    print("| :--- |" + " ---: |" * (len(cores) + 1))
    med = {k: statistics.median(v) for k, v in walls.items()}
    for tree in trees:
        cells = [
            f"{med[tree, c]:.2f} s ({', '.join(f'{w:.1f}' for w in walls[tree, c])})"
            for c in cores
        ]
        ratio = (
            f"{med[tree, cores[0]] / med[tree, cores[-1]]:.3f}x"
            if len(cores) > 1
            else "-"
        )
        print(f"| {tree} | " + " | ".join(cells) + f" | {ratio} |")
    for c in cores:
        a, b = med[trees[0], c], med[trees[1], c]
        print(f"\n{c} core(s): B / A = {b / a:.3f}", end="")
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
