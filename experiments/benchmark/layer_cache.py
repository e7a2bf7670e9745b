"""The caches' effect on the 49 jobs of the default `depth=2..50`, in one process.

Runs the 49 probe jobs of the default sweep one after another with
:mod:`depthlab.jobs.layer_cache` bypassed, with its drawn layers only, and with
the spectra of hidden layers too, interleaved for ``--rounds`` rounds, and
prints the CPU time of each pass and a check that all give the same tables::

    python experiments/benchmark/layer_cache.py --rounds 2
"""

from __future__ import annotations

import argparse
import hashlib
import time

import pandas as pd

from depthlab.jobs import layer_cache, schema
from depthlab.jobs.probe import ProbeSpec, run_probe

CASES = {
    "no cache": (0, 0),
    "layers": (layer_cache.MAX_BYTES, 0),
    "layers and spectra": (layer_cache.MAX_BYTES, layer_cache.SPECTRA_MAX_BYTES),
}


def sweep_cpu(case: str) -> tuple[float, str]:
    """CPU seconds of the 49 jobs, and a digest of all their tables."""
    caches = (layer_cache.CACHE, layer_cache.SPECTRA)
    for cache, bound in zip(caches, CASES[case], strict=True):
        cache.clear()
        cache.max_bytes = bound
    digest = hashlib.sha1()
    tic = time.process_time()
    for depth in range(2, 51):
        config = schema.defaults()
        config["depth"] = depth
        config["probe"]["threads"] = 1
        result = run_probe(ProbeSpec.from_config(config))
        for table in result.tables().values():
            digest.update(pd.util.hash_pandas_object(table, index=False).to_numpy())
    return time.process_time() - tic, digest.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    rounds = parser.parse_args().rounds
    times: dict[str, list[float]] = {case: [] for case in CASES}
    digests = set()
    for _ in range(rounds):
        for case in CASES:
            seconds, digest = sweep_cpu(case)
            times[case].append(seconds)
            digests.add(digest)
    base = min(times["no cache"])
    for case, seconds in times.items():
        best = min(seconds)
        print(f"{case:<20} {best:6.2f} s of CPU (best of {rounds}), {best / base:.2f}x")
    print(f"same tables: {len(digests) == 1}")


if __name__ == "__main__":
    main()
