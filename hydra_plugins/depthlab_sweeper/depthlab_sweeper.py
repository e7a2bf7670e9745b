"""A Hydra sweeper that validates, resumes and reports depthlab sweeps.

It expands a sweep exactly as Hydra's basic sweeper does (ranges, lists,
``choice()``, ``glob()``, ``hydra.sweeper.params``) and hands the jobs to the
configured Hydra launcher (with Hydra's basic launcher, the default, the jobs
run on depthlab's worker processes, :mod:`depthlab.sweep.workers`); the
depthlab-specific work (validation before any job starts, the parent run,
resume, the workers, progress, summary and report) lives in
:func:`depthlab.sweep.app.sweep`.
"""

from __future__ import annotations

from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper


class DepthlabSweeper(BasicSweeper):
    """Hydra's basic sweeper plus depthlab's validation, resume and report."""

    def sweep(self, arguments: list[str]) -> Any:
        from depthlab.sweep.app import sweep

        return sweep(self, arguments)
