"""Which worker runs which job (depthlab.sweep.schedule)."""

from __future__ import annotations

import numpy as np
import pytest
from omegaconf import OmegaConf

from depthlab.sweep.schedule import Schedule, chain_key, chain_order


def handed_out(schedule: Schedule, asks: list[int]) -> dict[int, list[int]]:
    """What each worker got, asking in the order ``asks`` (then until empty)."""
    got: dict[int, list[int]] = {}
    for worker in asks:
        position = schedule.next_for(worker)
        if position is not None:
            got.setdefault(worker, []).append(position)
    worker = 0
    while (position := schedule.next_for(worker)) is not None:
        got.setdefault(worker, []).append(position)
    return got


@pytest.mark.parametrize("jobs", [0, 1, 2, 7, 196])
@pytest.mark.parametrize("workers", [1, 2, 3, 16])
def test_each_position_is_handed_out_once(jobs: int, workers: int) -> None:
    rng = np.random.default_rng(jobs * 100 + workers)
    order = list(rng.permutation(jobs))
    for _ in range(5):  # workers that ask in any order, some more than others
        schedule = Schedule(order, workers)
        asks = list(rng.integers(0, workers, size=3 * jobs))
        got = handed_out(schedule, asks)
        everything = sorted(p for ps in got.values() for p in ps)
        assert everything == list(range(jobs))
        assert schedule.left() == 0 and schedule.next_for(0) is None


def test_workers_start_with_contiguous_runs_of_the_order() -> None:
    order = [5, 3, 1, 0, 2, 4, 6]
    schedule = Schedule(order, 3)
    assert [schedule.next_for(w) for w in (0, 1, 2, 0, 1, 2, 0)] == [
        5,
        0,
        4,
        3,
        2,
        6,
        1,
    ]
    assert schedule.left() == 0


def test_a_worker_with_nothing_left_takes_the_later_half_of_the_longest_run() -> None:
    schedule = Schedule(range(12), 2)  # runs 0..5 and 6..11
    assert [schedule.next_for(1) for _ in range(6)] == [6, 7, 8, 9, 10, 11]
    assert schedule.next_for(0) == 0  # run 1..5 left to worker 0
    # Worker 1 takes 3, 4, 5 (the later half, rounded up) and goes on in order.
    assert [schedule.next_for(1) for _ in range(3)] == [3, 4, 5]
    assert schedule.next_for(0) == 1
    assert schedule.next_for(1) == 2  # the last one moves too
    assert schedule.next_for(0) is None and schedule.next_for(1) is None


def test_clear_hands_out_nothing_more() -> None:
    schedule = Schedule(range(10), 2)
    schedule.next_for(0)
    schedule.clear()
    assert schedule.left() == 0 and schedule.next_for(1) is None


def test_no_workers_is_an_error() -> None:
    with pytest.raises(ValueError, match="workers must be at least 1, not 0"):
        Schedule(range(3), 0)


def test_chains_keep_the_sweeps_order_within_and_between_them() -> None:
    keys = ["a", "b", "c", "a", "b", "c", "a"]
    assert chain_order(keys) == [0, 3, 6, 1, 4, 2, 5]
    assert chain_order([]) == []
    assert chain_order(["x"] * 4) == [0, 1, 2, 3]


def job(*task: str) -> object:
    return OmegaConf.create({"hydra": {"overrides": {"task": list(task)}}})


def test_a_chain_is_what_a_job_shares_but_depth() -> None:
    a = chain_key(job("depth=2", "activation=relu", "tracking.job_index=0"))
    b = chain_key(job("activation=relu", "depth=9", "tracking.job_index=7"))
    assert a == b == ("activation=relu",)
    assert chain_key(job("depth=2", "activation=tanh")) != a
    # Added or deleted depth is depth too; a key that merely starts with it is not.
    assert chain_key(job("+depth=3", "width=8")) == chain_key(job("~depth", "width=8"))
    assert chain_key(job("depth_scale=2")) == ("depth_scale=2",)


def test_a_sweep_over_depth_and_activation_gives_each_worker_whole_chains() -> None:
    """The 196-job sweep's order (depth outer, activation inner) on 2 workers:
    one worker the tanh and relu chains, the other sigmoid and erf, each chain
    deepening job by job."""
    activations = ["tanh", "relu", "sigmoid", "erf"]
    jobs = [(d, a) for d in range(2, 51) for a in activations]
    keys = [chain_key(job(f"depth={d}", f"activation={a}")) for d, a in jobs]
    schedule = Schedule(chain_order(keys), 2)
    got = handed_out(schedule, [0, 1] * len(jobs))
    for worker, chains in ((0, ["tanh", "relu"]), (1, ["sigmoid", "erf"])):
        ran = [jobs[p] for p in got[worker]]
        assert ran == [(d, a) for a in chains for d in range(2, 51)]
