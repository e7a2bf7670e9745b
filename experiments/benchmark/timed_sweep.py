"""``python -m depthlab`` with timers around its parts (for the sweep benchmark).

Usage: ``python timed_sweep.py OUT.json [depthlab arguments]``. Runs the real
sweep in this process, with the same code and output as ``python -m
depthlab``, and writes the seconds spent in each part to ``OUT.json``:

- ``imports``: from this script's start to Hydra's entry (depthlab, Hydra);
- ``compose_to_validate``: the sweeper building every job's config
  (``depthlab.sweep.compose.compose_job_configs``: Hydra composes one job per
  structure, the others are derived from it), ``compose_in_launcher``: a
  launcher composing them again (``load_sweep_config``; the basic launcher runs
  the sweeper's configs in this process and composes nothing);
- ``mlflow_import``: importing mlflow's client and SQLite store (done here
  up front; depthlab imports it lazily at its first tracking call);
- ``mlflow_first_client``: the first MlflowClient's creation and first use
  (for a fresh database: creating it, a copy of the store template in
  depthlab's cache folder, or MLflow's schema migrations the first time);
- ``start_sweep``: creating the store (if new), the experiment and parent run;
- ``finished_runs``: the resume query;
- ``job_total``: depthlab's job function, whole; inside it ``run_probe`` (the
  computation), ``job_run`` (create_run and set_terminated), ``log_job``
  (log_batch, parquet tables and log_artifacts);
- ``mlflow_calls``: time in each MlflowClient method;
- ``launch``: running the jobs, whole (``launch._run_in_process`` for the basic
  launcher, the launcher's ``launch`` otherwise); its per-job machinery is
  ``launch`` minus the job function and the launcher's composing;
- ``report``: building the report;
- ``main``: Hydra's entry to the end.

Only the basic launcher with ``n_jobs=1`` runs jobs in this process (the
script adds ``n_jobs=1`` unless ``n_jobs`` is given); on depthlab's workers or
with joblib the job parts are not seen.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import common

START = time.perf_counter()
spent: dict[str, float] = defaultdict(float)
calls: dict[str, int] = defaultdict(int)
mlflow_calls: dict[str, float] = defaultdict(float)


def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` with its time added to ``spent[name]``."""
    return common.timed(name, fn, spent, calls)


def main() -> None:
    """Patch the timers in, run depthlab's command line, write the JSON."""
    out = sys.argv[1]
    sys.argv = [sys.argv[0], *sys.argv[2:]]
    if not any(a.startswith("n_jobs=") for a in sys.argv[1:]):
        # The timers see the jobs only in this process, not on workers.
        sys.argv.append("n_jobs=1")
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    import depthlab.jobs.probe as probe
    import depthlab.sweep.app as app
    import depthlab.sweep.launch as launch
    from depthlab import tracking

    in_launch = [False]
    compose = ConfigLoaderImpl.load_sweep_config

    def load_sweep_config(*args: Any, **kwargs: Any) -> Any:
        if in_launch[0]:
            return timed("compose_in_launcher", compose)(*args, **kwargs)
        return compose(*args, **kwargs)

    ConfigLoaderImpl.load_sweep_config = load_sweep_config
    app.compose_job_configs = timed("compose_to_validate", app.compose_job_configs)

    def launching(fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            in_launch[0] = True
            try:
                return timed("launch", fn)(*args, **kwargs)
            finally:
                in_launch[0] = False

        return wrapper

    launch._run_in_process = launching(launch._run_in_process)
    sweep = app.sweep

    def sweep_timed(sweeper: Any, arguments: list[str]) -> Any:
        # Hydra loads its launcher plugins as fresh module objects: wrap the
        # instance's method instead of the class's.
        sweeper.launcher.launch = launching(sweeper.launcher.launch)
        return sweep(sweeper, arguments)

    app.sweep = sweep_timed
    probe.run_probe = timed("run_probe", probe.run_probe)
    app.run_job = timed("job_total", app.run_job)
    app._report = timed("report", app._report)
    tracking.log_job = timed("log_job", tracking.log_job)
    tracking.start_sweep = timed("start_sweep", tracking.start_sweep)
    tracking.finished_runs = timed("finished_runs", tracking.finished_runs)
    original_job_run = tracking.job_run

    @contextlib.contextmanager
    def job_run(*args: Any, **kwargs: Any) -> Iterator[str]:
        tic = time.perf_counter()
        cm = original_job_run(*args, **kwargs)
        run_id = cm.__enter__()
        spent["job_run"] += time.perf_counter() - tic
        calls["job_run"] += 1
        try:
            yield run_id
        except BaseException:
            tic = time.perf_counter()
            if not cm.__exit__(*sys.exc_info()):
                raise
        else:
            tic = time.perf_counter()
            cm.__exit__(None, None, None)
        finally:
            spent["job_run"] += time.perf_counter() - tic

    tracking.job_run = job_run
    original_client = tracking._client
    wrapped: set[int] = set()

    def client(uri: str) -> Any:
        first = not wrapped
        tic = time.perf_counter()
        c = original_client(uri)
        if first:
            spent["mlflow_first_client"] += time.perf_counter() - tic
        if id(c) not in wrapped:
            wrapped.add(id(c))
            for name in (
                "create_run",
                "log_batch",
                "log_artifacts",
                "log_artifact",
                "log_text",
                "set_terminated",
                "set_tag",
                "get_experiment_by_name",
                "create_experiment",
                "search_runs",
                "get_run",
                "list_artifacts",
                "download_artifacts",
            ):
                method = getattr(c, name, None)
                if method is None:
                    continue

                def wrapper(*a: Any, _m: Any = method, _n: str = name, **k: Any) -> Any:
                    tic = time.perf_counter()
                    try:
                        return _m(*a, **k)
                    finally:
                        mlflow_calls[_n] += time.perf_counter() - tic

                setattr(c, name, wrapper)
        return c

    tracking._client = client
    from depthlab.sweep.cli import exit_now
    from depthlab.sweep.cli import main as depthlab_main

    spent["imports"] = time.perf_counter() - START
    # mlflow is imported lazily by the first tracking call; import it here so
    # that the first call's time is the store's, not the import's.
    tic = time.perf_counter()
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401
    from mlflow.tracking import MlflowClient  # noqa: F401

    spent["mlflow_import"] = time.perf_counter() - tic
    tic = time.perf_counter()
    code = 0
    try:
        depthlab_main()
    except SystemExit as err:
        code = err.code if isinstance(err.code, int) else 1
    finally:
        spent["main"] = time.perf_counter() - tic
        spent["total_in_process"] = time.perf_counter() - START
        with open(out, "w") as f:
            json.dump(
                {
                    "spent": spent,
                    "calls": calls,
                    "mlflow_calls": mlflow_calls,
                },
                f,
                indent=1,
            )
    exit_now(code)  # as `python -m depthlab` ends


if __name__ == "__main__":
    main()
