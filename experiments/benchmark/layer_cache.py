"""The layer cache's effect on the jobs of ``depth=2..50`` (defaults), in one process.

Runs the 49 probe jobs of the default sweep one after another, with the cache
bypassed and with it, interleaved for ``--rounds`` rounds, and prints the CPU
time of each pass, the ratio, and a check that both give the same numbers::

    python experiments/benchmark/layer_cache.py --rounds 2
"""

from __future__ import annotations

import argparse
import time

from depthlab.jobs import layer_cache
from depthlab.jobs.probe import ProbeSpec, run_probe


def sweep_cpu(cached: bool) -> tuple[float, tuple[float, ...]]:
    """CPU seconds of the 49 jobs, and their median gradient norms."""
    layer_cache.CACHE.clear()
    layer_cache.CACHE.max_bytes = layer_cache.MAX_BYTES if cached else 0
    tic = time.process_time()
    medians = tuple(
        run_probe(
            ProbeSpec(
                depth=depth,
                width=64,
                input_dim=64,
                output_dim=1,
                activation="sigmoid",
                output_activation="sigmoid",
                init="gaussian",
                sigma_w=1.0,
                sigma_b=0.0,
                threads=1,
            )
        ).summary["grad_log10_norm_median"]
        for depth in range(2, 51)
    )
    return time.process_time() - tic, medians


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    rounds = parser.parse_args().rounds
    times: dict[bool, list[float]] = {False: [], True: []}
    results = set()
    for _ in range(rounds):
        for cached in (False, True):
            seconds, medians = sweep_cpu(cached)
            times[cached].append(seconds)
            results.add(medians)
    off, on = min(times[False]), min(times[True])
    print(f"without the cache: {off:.2f} s of CPU (best of {rounds})")
    print(f"with the cache:    {on:.2f} s of CPU ({1 - on / off:.0%} less)")
    print(f"same numbers: {len(results) == 1}")


if __name__ == "__main__":
    main()
