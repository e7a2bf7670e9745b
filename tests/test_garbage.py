"""When the garbage collector runs (depthlab.garbage) and where depthlab
pauses or narrows it: the forkserver's imports, a read of a sweep, the jobs of
a sweep in one process."""

from __future__ import annotations

import gc
import subprocess
import sys
import weakref

import pytest

from depthlab import garbage


class Node:
    """An object that can be in a reference cycle and be watched by a weakref."""

    def __init__(self) -> None:
        self.other: Node | None = None


def cycle() -> weakref.ref:
    """A reference cycle, garbage at once; a weak reference to it."""
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


def test_paused_disables_collection_and_restores_it() -> None:
    assert gc.isenabled()
    with garbage.paused():
        assert not gc.isenabled()
        ref = cycle()
        gc.collect(0)  # an explicit collection still runs
    assert gc.isenabled()
    assert ref() is None
    with pytest.raises(RuntimeError), garbage.paused():
        raise RuntimeError("inside")
    assert gc.isenabled()


def test_paused_leaves_a_disabled_collector_disabled() -> None:
    gc.disable()
    try:
        with garbage.paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_long_lived_frozen_freezes_for_the_block_only() -> None:
    before = gc.get_freeze_count()
    with garbage.long_lived_frozen():
        assert gc.get_freeze_count() > before
    assert gc.get_freeze_count() == before


def test_keep_collects_the_garbage_since_and_freezes_the_survivors() -> None:
    before = gc.get_freeze_count()
    with garbage.long_lived_frozen():
        frozen = gc.get_freeze_count()
        kept = [Node() for _ in range(1000)]
        ref = cycle()
        garbage.keep()
        # The cycle made since the freeze was collected, not frozen for good.
        assert ref() is None
        assert gc.get_freeze_count() >= frozen + len(kept)
    assert gc.get_freeze_count() == before


def collections_during(statement: str) -> tuple[bool, bool, int]:
    """In a fresh interpreter that has imported depthlab.sweep.workers: whether
    collection is enabled and nothing frozen after ``statement``, and how many
    collections ran during it."""
    code = (
        "import gc, importlib\n"
        "import depthlab.garbage, depthlab.sweep.workers\n"
        "calls = []\n"
        "gc.callbacks.append(lambda phase, info: calls.append(phase == 'start'))\n"
        f"{statement}\n"
        "print(gc.isenabled(), gc.get_freeze_count() == 0, sum(calls))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    return out[0] == "True", out[1] == "True", int(out[2])


def test_the_forkserver_preload_imports_with_collection_paused() -> None:
    enabled, unfrozen, paused = collections_during("import depthlab.sweep.preload")
    # Enabled again after, nothing frozen outside a forkserver, and no pass
    # during the imports (at most one or two while the module itself loads) ...
    assert enabled and unfrozen and paused <= 2
    # ... which, imported with the collector running, trigger many.
    plain = collections_during(
        "for name in depthlab.sweep.workers.PRELOAD: importlib.import_module(name)"
    )
    assert plain[2] > 50


def freeze_count() -> int:
    """A forkserver process's target: what it inherited frozen (from its
    forkserver, before any set-up of its own)."""
    return gc.get_freeze_count()


def test_the_workers_forkserver_freezes_what_it_imported() -> None:
    from concurrent.futures import ProcessPoolExecutor

    from depthlab.sweep import workers

    with ProcessPoolExecutor(1, mp_context=workers._context()) as pool:
        assert pool.submit(freeze_count).result(timeout=120) > 100_000


def test_a_sweep_is_read_with_collection_paused(monkeypatch) -> None:
    from depthlab.tracking import read

    seen = []

    def fake(*args: object) -> str:
        seen.append(gc.isenabled())
        return "sweep"

    monkeypatch.setattr(read, "_load_sweep", fake)
    assert read.load_sweep("sqlite:///unused.db", "run") == "sweep"
    assert seen == [False] and gc.isenabled()
