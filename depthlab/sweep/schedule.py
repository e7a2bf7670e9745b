"""Which worker runs which job: contiguous runs of the sweep's order, stolen
in halves at the end.

Jobs that differ only in depth share their first layers, and a worker keeps
the layers, forward states and spectra its last jobs computed
(:mod:`depthlab.jobs.layer_cache`): a job whose predecessor in the sweep's
order ran on the same worker reuses them, one whose predecessor ran elsewhere
computes them again. So the jobs are put in chains (those that differ only in
depth, in the sweep's order: :func:`chain_order`), and each of ``w`` workers
gets one contiguous run of ``n / w`` jobs of the chains, instead of whichever
job is next when it is free (which spread each chain of the 196-job sweep over
both workers of a 2-core machine and recomputed 23% more of their numerics).
A worker that has run all of its jobs takes the later half of the jobs not
yet handed out of the worker with the most of them, and goes on from there in
order.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Sequence
from typing import Any

CHAIN_KEY = "depth"
"""The config key along which a sweep's jobs share their layers."""


def chain_order(keys: Sequence[Hashable]) -> list[int]:
    """The positions ``0 .. len(keys) - 1``, those with equal keys together
    (chains in the order of their first job), each chain in the sweep's order.

    Examples
    --------
    >>> chain_order(["tanh", "relu", "tanh", "relu", "erf"])
    [0, 2, 1, 3, 4]
    """
    chains: dict[Hashable, list[int]] = {}
    for position, key in enumerate(keys):
        chains.setdefault(key, []).append(position)
    return [position for chain in chains.values() for position in chain]


def chain_key(cfg: Any) -> tuple[str, ...]:
    """What a composed job config shares with the jobs of its chain: its
    overrides (``hydra.overrides.task``) but depth (and the sweep's tracking
    keys, which number the jobs).

    Examples
    --------
    >>> from omegaconf import OmegaConf
    >>> cfg = OmegaConf.create(
    ...     {"hydra": {"overrides": {"task": ["depth=7", "activation=relu"]}}}
    ... )
    >>> chain_key(cfg)
    ('activation=relu',)
    """
    key = []
    for line in cfg.hydra.overrides.task:
        name = line.split("=", 1)[0].lstrip("+~")
        if name != CHAIN_KEY and not name.startswith("tracking."):
            key.append(line)
    return tuple(key)


class Schedule:
    """Hands out a sweep's job positions to ``workers`` workers.

    Each position is handed out exactly once. Worker ``i`` starts with the
    ``i``-th of ``workers`` contiguous runs of ``order``, of near-equal length
    (the longer runs first); when its run is used up, :meth:`next_for` moves
    the later half of the longest run left (rounded up: one job left moves)
    to it.

    Parameters
    ----------
    order : sequence of int
        The positions, in the order they should run (:func:`chain_order`).
    workers : int
        How many workers run them.

    Examples
    --------
    >>> s = Schedule(range(5), 2)
    >>> [s.next_for(0), s.next_for(1), s.next_for(1), s.next_for(1)]
    [0, 3, 4, 2]
    >>> [s.next_for(0), s.next_for(0)]
    [1, None]
    """

    def __init__(self, order: Sequence[int], workers: int) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers}")
        order = list(order)
        size, extra = divmod(len(order), workers)
        self._runs: list[deque[int]] = []
        start = 0
        for i in range(workers):
            end = start + size + (i < extra)
            self._runs.append(deque(order[start:end]))
            start = end

    def left(self) -> int:
        """How many positions are not handed out yet."""
        return sum(len(run) for run in self._runs)

    def next_for(self, worker: int) -> int | None:
        """The next position for ``worker``, or None when every position has
        been handed out."""
        run = self._runs[worker]
        if not run:
            victim = max(self._runs, key=len)
            if not victim:
                return None
            for _ in range((len(victim) + 1) // 2):
                run.appendleft(victim.pop())
        return run.popleft()

    def clear(self) -> None:
        """Hand out nothing more (the sweep is stopping)."""
        for run in self._runs:
            run.clear()
