"""Launching a sweep's jobs: on depthlab's worker processes (Hydra's basic
launcher, the default), in this process (``n_jobs=1``), or through any other
Hydra launcher; and waiting for the jobs that another live process claimed."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from depthlab.sweep import app


def _wait_for_claimed(
    sweeper: Any,
    jobs: list[list[str]],
    composed: list[DictConfig],
    hashes: list[str],
    results: list[Any],
    failed: list[str],
    reused: list[str],
    parent: str,
    uri: str,
    experiment: str,
    force: bool,
    poll_s: float = 1.0,
) -> tuple[list[Any], list[str]]:
    """Wait for the jobs that other live processes claimed; run those whose
    claim ends without a FINISHED run (the other process died or failed).

    A job FINISHED by another process joins ``reused`` (recorded in the parent
    run), so that this sweep's report holds every job. Returns the results and
    failures of every job this process ran.
    """
    from hydra.core.utils import JobStatus

    from depthlab.sweep.tracker import store

    tracking = store()  # in the tracker process, if the sweep has one

    def claimed_in(rs: list[Any]) -> dict[int, str]:
        out = {}
        for r in rs:
            value = r.return_value if r.status == JobStatus.COMPLETED else None
            if isinstance(value, dict) and value.get("taken"):
                out[value["index"] - 1] = value["taken"]
        return out

    taken = claimed_in(results)
    reused_before = len(reused)
    reused.extend(
        next(r.return_value["run_id"] for r in results if _index_of(r) == i)
        for i, kind in taken.items()
        if kind == "finished"
    )
    waiting = sorted(i for i, kind in taken.items() if kind == "claimed")
    exp_id = tracking._job_experiment_id(uri, experiment)
    if waiting:
        print(
            f"depthlab: waiting for {len(waiting)} job(s) that another process "
            f"is computing (Ctrl-C stops; the same command resumes)",
            flush=True,
        )
    while waiting:
        time.sleep(poll_s)
        rerun = []
        for i in list(waiting):
            state = tracking.job_state(uri, exp_id, hashes[i], force=False)
            if state.state == "finished":
                reused.append(state.run_id)
                waiting.remove(i)
            elif state.state == "free":
                rerun.append(i)
                waiting.remove(i)
        if rerun:
            more, more_failed = _launch(
                sweeper, jobs, composed, rerun, [], parent, uri, experiment
            )
            results = [*results, *more]
            failed = [*failed, *more_failed]
            again = claimed_in(more)
            for i, kind in again.items():
                if kind == "claimed":
                    waiting.append(i)
                else:
                    reused.extend(
                        r.return_value["run_id"] for r in more if _index_of(r) == i
                    )
    if len(reused) > reused_before:
        tracking.record_reused_runs(uri, parent, reused)
    return results, failed


def _index_of(result: Any) -> int | None:
    value = getattr(result, "_return_value", None)
    if isinstance(value, dict) and "index" in value:
        return value["index"] - 1
    return None


def _launch(
    sweeper: Any,
    jobs: list[list[str]],
    composed: list[DictConfig],
    todo: list[int],
    reused: list[str],
    parent: str,
    uri: str,
    experiment: str,
    n_jobs: int | None = None,
) -> tuple[list[Any], list[str]]:
    """Run the jobs ``todo`` (indices into ``jobs``) as children of ``parent``.

    With Hydra's basic launcher (the default) the jobs run on
    :mod:`depthlab.sweep.workers` (``n_jobs`` workers, one per core when None) or, for
    one worker, in this process; other launchers get the jobs' overrides.

    Returns
    -------
    tuple of list
        Hydra's job results (in the order of ``todo``), and one line per
        FAILED job.
    """
    from hydra.core.utils import JobStatus

    from depthlab.sweep import workers
    from depthlab.sweep.tracker import store

    total = len(jobs)
    if reused:
        store().record_reused_runs(uri, parent, reused)
        print(
            f"depthlab: skipping {len(reused)} of {total} jobs that already "
            f"FINISHED in experiment {experiment!r} (force=true recomputes)",
            flush=True,
        )
    launch = [
        [
            *jobs[i],
            f"tracking.parent_run_id={parent}",
            f"tracking.jobs_total={total}",
            f"tracking.job_index={i}",
            f"tracking.run_name={_quoted(composed[i].tracking.run_name)}",
        ]
        for i in todo
    ]
    basic = _is_basic_launcher(sweeper.launcher)
    n_workers, threads = workers.plan(n_jobs, len(launch))
    where = (
        f" on {n_workers} workers ({threads} thread(s) a job)"
        if basic and n_workers > 1
        else ""
    )
    print(
        f"depthlab: {len(launch)} job(s) to run{where}; tracking {uri} "
        f"(experiment {experiment!r}, sweep run {parent})",
        flush=True,
    )
    results: list[Any] = []
    if launch and basic:
        sweep_info = {"parent_run_id": parent, "jobs_total": total}
        results = _run_in_process(
            sweeper,
            [(i, composed[i]) for i in todo],
            sweep_info,
            workers=n_workers,
            threads=threads,
            skipped=len(reused),
        )
    elif launch:
        results = list(sweeper.launcher.launch(launch, initial_job_idx=0))
    failed = [
        f"job {i + 1}: {app._one_line(r._return_value)}"
        for i, r in zip(todo, results, strict=False)
        if r.status == JobStatus.FAILED
    ]
    return results, failed


def number_jobs(sweeper: Any, composed: Sequence[DictConfig]) -> None:
    """Give each composed job config what a launcher gives it, but its
    parent run: its number (``hydra.job.id`` and ``hydra.job.num``), the
    sweep's folder (``hydra.sweep.dir``, resolved here: a worker's
    ``${now:...}`` would be its own time), ``tracking.jobs_total`` and
    ``tracking.job_index``.

    Called once the configs are valid, before the store is opened: a sweep
    on workers numbers them while its tracker process starts and opens the
    store. :func:`_run_in_process` adds ``tracking.parent_run_id``.
    """
    sweep_dir = str(sweeper.config.hydra.sweep.dir)
    total = len(composed)
    for index, cfg in enumerate(composed):
        with open_dict(cfg):
            cfg.hydra.job.id = index
            cfg.hydra.job.num = index
            cfg.hydra.sweep.dir = sweep_dir
            cfg.tracking.jobs_total = total
            cfg.tracking.job_index = index


def _quoted(text: str) -> str:
    """``text`` as a quoted value of a Hydra override."""
    escaped = text.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


def _is_basic_launcher(launcher: Any) -> bool:
    from hydra._internal.core_plugins.basic_launcher import BasicLauncher

    return type(launcher) is BasicLauncher


def _run_in_process(
    sweeper: Any,
    jobs: list[tuple[int, DictConfig]],
    sweep_info: dict[str, Any],
    *,
    workers: int = 1,
    threads: int = 1,
    skipped: int = 0,
) -> list[Any]:
    """Hydra's basic launcher, on the configs the sweeper already composed.

    Hydra's BasicLauncher composes every job's config again from its overrides
    (about 50 ms a job); here each job runs through Hydra's own ``run_job`` with
    the config composed for validation, plus the sweep's tracking keys: in this
    process for ``workers=1``, else on :mod:`depthlab.sweep.workers`. Other launchers
    (joblib, submitit, ray) compose in their workers as usual. The jobs' lines
    go through :class:`depthlab.sweep.progress.Progress`.

    Returns
    -------
    list of hydra.core.utils.JobReturn
        In the order of ``jobs``.
    """
    from hydra.core.utils import JobStatus, setup_globals

    from depthlab import garbage
    from depthlab.sweep import tracker
    from depthlab.sweep import workers as pool
    from depthlab.sweep.progress import Progress

    setup_globals()
    launcher = sweeper.launcher
    for _, cfg in jobs:  # numbered before (number_jobs): only the parent is new
        with open_dict(cfg):
            cfg.tracking.parent_run_id = sweep_info["parent_run_id"]

    in_tracker = tracker.current()  # which builds the report, if there is one

    def report(progress: Progress, index: int, ret: Any) -> None:
        if ret.status == JobStatus.COMPLETED and "tables_file" in ret.return_value:
            # Read now, while the other jobs run, rather than all after them:
            # by the tracker, or here.
            value = ret.return_value
            if in_tracker is None or not in_tracker.call_soon(
                tracker.keep_tables, value["run_id"], value["tables_file"]
            ):
                value["tables"] = pool.returned_tables(value.pop("tables_file"))
        if ret.status == JobStatus.COMPLETED:
            if "taken" not in ret.return_value:
                app._finished_here.append(index)
            progress.job_done(index, ret.return_value["text"])
        else:
            progress.job_failed(index, app._one_line(ret._return_value))

    with Progress(len(jobs), sweep_info["jobs_total"], skipped) as progress:
        if workers > 1:
            return pool.run_jobs(
                [cfg for _, cfg in jobs],
                workers=workers,
                threads=threads,
                hydra_context=launcher.hydra_context,
                on_result=lambda k, ret: report(progress, jobs[k][0], ret),
            )
        results = []
        saved, app.PRINT_JOB_LINES = app.PRINT_JOB_LINES, False
        try:
            with garbage.long_lived_frozen():
                for index, cfg in jobs:
                    ret = pool.run_sweep_job(
                        launcher.hydra_context, launcher.task_function, cfg
                    )
                    # Read by no one (as on the workers): a deep copy of
                    # Hydra's config and the job's, ~10,000 objects a job.
                    ret.cfg = ret.hydra_cfg = None
                    report(progress, index, ret)
                    results.append(ret)
                    garbage.keep()  # its results, kept to the end
        finally:
            app.PRINT_JOB_LINES = saved
        return results


def _warm_up_workers(sweeper: Any, jobs: int) -> None:
    """Start the workers' forkserver, and the workers, early when the sweep
    will likely use them."""
    from depthlab.sweep import workers

    n_jobs = OmegaConf.select(sweeper.config, "n_jobs", default=None)
    if not isinstance(n_jobs, int | None):
        return
    n_workers, threads = workers.plan(n_jobs, jobs)
    if n_workers > 1 and _is_basic_launcher(sweeper.launcher):
        from depthlab.sweep import tracker

        workers.warm_up()
        # The workers fork and set up while the tracker opens the store.
        workers.prestart(n_workers, threads, sweeper.launcher.hydra_context)
        tracker.start()


def _n_jobs(configs: Sequence[dict[str, Any]]) -> int | None:
    """The sweep's ``n_jobs`` (one value for the whole sweep)."""
    values = {d.get("n_jobs") for d in configs}
    if len(values) > 1:
        app.fail("n_jobs cannot vary within a sweep")
    (value,) = values
    return value
