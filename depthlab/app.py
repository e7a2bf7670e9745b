"""The Hydra application: configuration schema, the job, and the sweep.

``python -m depthlab [overrides]`` (see :mod:`depthlab.__main__`) runs every
invocation as a Hydra multirun through depthlab's sweeper
(``hydra_plugins.depthlab_sweeper``), which, before any job starts:

1. expands the sweep into jobs and composes each job's config,
2. validates every job (one-line errors naming the bad value),
3. checks the tracking store (a server that does not answer fails in seconds),
4. creates the sweep's parent run, and skips jobs whose config hash already has
   a FINISHED run (``force=true`` recomputes),

then runs the remaining jobs: with Hydra's basic launcher (the default) on
``n_jobs`` worker processes, one per core by default (:mod:`depthlab.workers`),
or in this process for one; with any other Hydra launcher (joblib, submitit,
ray) through that launcher. At the end it prints a summary and builds the
report.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from depthlab.compose import compose_job_configs
from depthlab.config import Config, ConfigError, config_hash, flatten, validate

CONFIG_PATH = str(Path(__file__).parent / "conf")

PRINT_JOB_LINES = True
"""Whether :func:`run_job` prints its own line. The sweep's process prints the
lines of the jobs it runs itself or on its workers (:mod:`depthlab.progress`);
under Hydra's other launchers (joblib, submitit, ray) each job prints its own."""


@dataclass
class DepthlabSweeperConf:
    """Hydra config node of depthlab's sweeper."""

    _target_: str = "hydra_plugins.depthlab_sweeper.depthlab_sweeper.DepthlabSweeper"
    max_batch_size: int | None = None
    params: dict[str, str] | None = field(default=None)


def register_configs() -> None:
    """Register the typed schema and the sweeper with Hydra's ConfigStore."""
    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)
    cs.store(
        group="hydra/sweeper",
        name="depthlab",
        node=DepthlabSweeperConf,
        provider="depthlab",
    )


register_configs()


# ---------------------------------------------------------------------------
# The job


def job_dict(cfg: DictConfig) -> dict[str, Any]:
    """A job's config as a plain dict, without Hydra's node."""
    keys = [k for k in cfg if k != "hydra"]
    d = OmegaConf.to_container(OmegaConf.masked_copy(cfg, keys), resolve=True)
    assert isinstance(d, dict)
    return d  # type: ignore[return-value]


def run_name(d: dict[str, Any]) -> str:
    """A run's name from what a job sets, e.g. ``L=12 tanh gaussian sw=1.0 n=64``."""
    init = d["init"]
    hidden = d.get("hidden_widths")
    parts = [
        f"L={d['depth']}",
        d["activation"],
        init["name"],
        f"sw={init['sigma_w']:g}",
        f"n={'-'.join(map(str, hidden)) if hidden else d['width']}",
    ]
    if init["sigma_b"]:
        parts.append(f"sb={init['sigma_b']:g}")
    if d["output_activation"] not in (None, d["activation"]):
        parts.append(f"out={d['output_activation']}")
    if d["dtype"] != "float64":
        parts.append(d["dtype"])
    if d["task"] == "train":
        parts.insert(0, d["train"]["dataset"])
    if d["seed"]:
        parts.append(f"seed={d['seed']}")
    return " ".join(parts)


def _probe_spec(d: dict[str, Any]) -> Any:
    from depthlab.probe import ProbeSpec

    probe = d["probe"]
    return ProbeSpec(
        depth=d["depth"],
        width=d["width"],
        input_dim=d["input_dim"],
        output_dim=d["output_dim"],
        activation=d["activation"],
        output_activation=d["output_activation"] or d["activation"],
        init=d["init"]["name"],
        sigma_w=float(d["init"]["sigma_w"]),
        sigma_b=float(d["init"]["sigma_b"]),
        dtype=d["dtype"],
        seed=d["seed"],
        networks=probe["networks"],
        inputs=probe["inputs"],
        input_distribution=probe["input_distribution"],
        spectra=probe["spectra"],
        hidden_widths=tuple(d["hidden_widths"]) if d.get("hidden_widths") else None,
    )


def run_job(cfg: DictConfig) -> dict[str, Any]:
    """One job: compute, log to MLflow, print one line. Returns its summary."""
    import numpy as np

    from depthlab import tracking

    tic = time.perf_counter()
    d = job_dict(cfg)
    validate(d)
    uri = tracking.resolve_uri(d["tracking"]["uri"])
    experiment = d["tracking"]["experiment"]
    name = run_name(d)
    digest = config_hash(d)
    rng = np.random.default_rng(d["seed"])
    with tracking.job_run(
        uri, experiment, d["tracking"]["parent_run_id"], name, digest
    ) as run_id:
        if d["task"] == "train":
            from depthlab.train_job import run_training_job

            record, line = run_training_job(
                d, rng=rng, run_name=name, config_hash=digest
            )
        else:
            record, line = _run_probe_job(d, rng=rng, run_name=name, config_hash=digest)
        record.config_yaml = OmegaConf.to_yaml(cfg)
        tracking.log_job(uri, run_id, record)
    seconds = time.perf_counter() - tic
    index = d["tracking"]["job_index"] + 1
    total = d["tracking"]["jobs_total"]
    text = f"{name}  {line}  {seconds:5.2f} s"
    if PRINT_JOB_LINES:
        width = len(str(total))
        print(f"[{index:>{width}}/{total}] {text}", flush=True)
    return {
        "index": index,
        "run_name": name,
        "run_id": run_id,
        "seconds": seconds,
        "line": line,
        "text": text,
    }


def _run_probe_job(
    d: dict[str, Any], *, rng: Any, run_name: str, config_hash: str
) -> tuple[Any, str]:
    from depthlab.probe import run_probe
    from depthlab.tracking import JobRecord

    result = run_probe(_probe_spec(d), rng=rng)
    s = result.summary
    line = (
        f"median |grad| {10 ** s['grad_log10_norm_median']:9.3e}  "
        f"rms {_exp10(s['grad_log10_rms'])}  "
        f"theory rms {_exp10(s['theory_grad_log10_rms'])}"
    )
    record = JobRecord(
        run_name=run_name,
        params=flatten({k: v for k, v in d.items() if k not in _NOT_PARAMS}),
        config_hash=config_hash,
        summary=s,
        per_layer=result.per_layer,
        tables=result.tables(),
        config_yaml="",
    )
    return record, line


_NOT_PARAMS = ("tracking", "train", "n_jobs")
"""Config keys that are not a probe job's MLflow params."""


def _exp10(log10_value: float) -> str:
    """``10**x`` formatted, also where it would underflow or overflow a float."""
    if log10_value != log10_value:  # nan
        return "      nan"
    if abs(log10_value) < 300:
        return f"{10**log10_value:9.3e}"
    mantissa_exp = int(log10_value // 1)
    return f"{10 ** (log10_value - mantissa_exp):.3f}e{mantissa_exp:+d}"


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="config")
def main(cfg: DictConfig) -> dict[str, Any]:
    """Hydra's entry point: one job (the sweeper adds the sweep around it)."""
    return run_job(cfg)


# ---------------------------------------------------------------------------
# The sweep (called by hydra_plugins.depthlab_sweeper)


def fail(message: str) -> None:
    """Print a one-line error and exit with status 2."""
    print(f"depthlab: error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(2)


def _compose_jobs(sweeper: Any, arguments: list[str]) -> list[list[str]]:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    params_conf = sweeper._parse_config()
    params_conf.extend(arguments)
    parser = OverridesParser.create(config_loader=sweeper.hydra_context.config_loader)
    try:
        overrides = parser.parse_overrides(params_conf)
        batches = sweeper.split_arguments(overrides, None)
    except HydraException as err:
        fail(_one_line(err))
    return [list(job) for batch in batches for job in batch]


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text[:500]


def _group_options(group: str) -> list[str]:
    folder = Path(CONFIG_PATH) / group
    return sorted(p.stem for p in folder.glob("*.yaml"))


def _explain_composition_error(err: BaseException) -> str:
    text = " ".join(str(err).split())
    for group in ("activation", "init", "experiment"):
        if f"'{group}/" in text or f"{group}=" in text.split(" ")[0:1]:
            import re

            m = re.search(rf"'{group}/([^']*)'", text)
            value = m.group(1) if m else "?"
            return (
                f"{group}={value!r} is not allowed; valid: "
                f"{', '.join(_group_options(group))}"
            )
    import re

    m = re.search(
        r"Value '([^']*)' (?:of type '\w+' )?could not be converted to "
        r"(\w+).*?full_key: ([\w.]+)",
        text,
    )
    if m:
        value, kind, key = m.groups()
        return f"{key}={value!r} is not allowed; {key} must be of type {kind.lower()}"
    return text[:500]


def sweep(sweeper: Any, arguments: list[str]) -> list[Any]:
    """Validate, resume and launch a sweep; summarize and report at the end."""
    from hydra.core.utils import JobStatus
    from hydra.errors import HydraException

    from depthlab import interrupts, tracking

    if threading.current_thread() is threading.main_thread():
        interrupts.install()
    tic = time.perf_counter()
    jobs = _compose_jobs(sweeper, arguments)
    loader = sweeper.hydra_context.config_loader
    configs: list[dict[str, Any]] = []
    try:
        composed = compose_job_configs(loader, sweeper.config, jobs)
        dicts = [job_dict(cfg) for cfg in composed]
    except (HydraException, ValueError, KeyError) as err:
        fail(_explain_composition_error(err))
    for d in dicts:
        try:
            validate(d)
        except ConfigError as err:
            fail(str(err))
        configs.append(d)
    first = configs[0]["tracking"]
    for d in configs:
        if (d["tracking"]["uri"], d["tracking"]["experiment"]) != (
            first["uri"],
            first["experiment"],
        ):
            fail("tracking.uri and tracking.experiment cannot vary within a sweep")
    sweep_dir = Path(str(sweeper.config.hydra.sweep.dir))
    try:
        sweep_dir.mkdir(parents=True, exist_ok=True)
        probe_file = sweep_dir / ".depthlab-write-test"
        probe_file.write_text("")
        probe_file.unlink()
    except OSError as err:
        fail(
            f"output directory {sweep_dir} is not writable ({err.strerror}); "
            f"set hydra.sweep.dir"
        )
    # Valid: the workers' imports may start, beside the store's checks.
    _warm_up_workers(sweeper, len(jobs))
    uri = tracking.resolve_uri(first["uri"])
    experiment = first["experiment"]
    try:
        tracking.check_store(uri)
    except tracking.TrackingError as err:
        fail(str(err))

    total = len(jobs)
    n_jobs = _n_jobs(configs)
    force = any(d["force"] for d in configs)
    hashes = [config_hash(d) for d in configs]
    try:
        done = {} if force else tracking.finished_runs(uri, experiment)
        parent = tracking.start_sweep(
            uri,
            experiment,
            run_name=f"sweep {time.strftime('%Y-%m-%d %H:%M:%S')} ({total} jobs)",
            params={
                "overrides": " ".join(arguments)[:6000],
                "jobs": total,
                "sweep_dir": str(sweep_dir.resolve()),
            },
        )
    except tracking.TrackingError as err:
        fail(str(err))
    todo = [i for i, h in enumerate(hashes) if h not in done]
    reused = [done[h] for h in hashes if h in done]
    results: list[Any] = []
    failed: list[str] = []
    status = "KILLED"
    try:
        if first_bool(configs, "report") and todo:
            _import_report_meanwhile()
        results, failed = _launch(
            sweeper, jobs, composed, todo, reused, parent, uri, experiment, n_jobs
        )
        status = "FAILED" if failed else "FINISHED"
    finally:
        # Runs on an interrupt too: the sweep run never stays RUNNING.
        metrics = {
            "jobs": total,
            "jobs_skipped": len(reused),
            "jobs_failed": len(failed),
            "seconds": time.perf_counter() - tic,
        }
        tracking.end_sweep(
            uri, parent, status=status, **(metrics if status != "KILLED" else {})
        )
    summaries = [r.return_value for r in results if r.status == JobStatus.COMPLETED]
    _print_summary(summaries, total, len(reused), failed)
    if first_bool(configs, "report"):
        _report(uri, parent, sweep_dir)
    db = uri.removeprefix("sqlite:///") if uri.startswith("sqlite:///") else None
    ui = (
        f"mlflow ui --backend-store-uri sqlite:///{db}"
        if db
        else f"open {uri} in a browser"
    )
    print(
        f"depthlab: runs in {uri}, experiment {experiment!r}; dashboard: {ui}",
        flush=True,
    )
    if failed:
        for line in failed:
            print(f"depthlab: FAILED {line}", file=sys.stderr)
        raise SystemExit(1)
    return [results]


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
    :mod:`depthlab.workers` (``n_jobs`` workers, one per core when None) or, for
    one worker, in this process; other launchers get the jobs' overrides.

    Returns
    -------
    tuple of list
        Hydra's job results (in the order of ``todo``), and one line per
        FAILED job.
    """
    from hydra.core.utils import JobStatus

    from depthlab import tracking, workers

    total = len(jobs)
    if reused:
        tracking.record_reused_runs(uri, parent, reused)
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
        f"job {i + 1}: {_one_line(r._return_value)}"
        for i, r in zip(todo, results, strict=False)
        if r.status == JobStatus.FAILED
    ]
    return results, failed


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
    process for ``workers=1``, else on :mod:`depthlab.workers`. Other launchers
    (joblib, submitit, ray) compose in their workers as usual. The jobs' lines
    go through :class:`depthlab.progress.Progress`.

    Returns
    -------
    list of hydra.core.utils.JobReturn
        In the order of ``jobs``.
    """
    from hydra.core.utils import JobStatus, run_job, setup_globals
    from omegaconf import open_dict

    from depthlab import workers as pool
    from depthlab.progress import Progress

    global PRINT_JOB_LINES
    setup_globals()
    launcher = sweeper.launcher
    sweep_dir = str(sweeper.config.hydra.sweep.dir)
    for index, cfg in jobs:
        with open_dict(cfg):
            cfg.hydra.job.id = index
            cfg.hydra.job.num = index
            # Resolved here: a worker's ${now:...} would be its own time.
            cfg.hydra.sweep.dir = sweep_dir
            cfg.tracking.parent_run_id = sweep_info["parent_run_id"]
            cfg.tracking.jobs_total = sweep_info["jobs_total"]
            cfg.tracking.job_index = index

    def report(progress: Progress, index: int, ret: Any) -> None:
        if ret.status == JobStatus.COMPLETED:
            progress.job_done(index, ret.return_value["text"])
        else:
            progress.job_failed(index, _one_line(ret._return_value))

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
        saved, PRINT_JOB_LINES = PRINT_JOB_LINES, False
        try:
            for index, cfg in jobs:
                ret = run_job(
                    hydra_context=launcher.hydra_context,
                    task_function=launcher.task_function,
                    config=cfg,
                    job_dir_key="hydra.sweep.dir",
                    job_subdir_key="hydra.sweep.subdir",
                )
                report(progress, index, ret)
                results.append(ret)
        finally:
            PRINT_JOB_LINES = saved
        return results


def _warm_up_workers(sweeper: Any, jobs: int) -> None:
    """Start the workers' forkserver early when the sweep will likely use it."""
    from depthlab import workers

    n_jobs = OmegaConf.select(sweeper.config, "n_jobs", default=None)
    if not isinstance(n_jobs, int | None):
        return
    if workers.plan(n_jobs, jobs)[0] > 1 and _is_basic_launcher(sweeper.launcher):
        workers.warm_up()


def _n_jobs(configs: Sequence[dict[str, Any]]) -> int | None:
    """The sweep's ``n_jobs`` (one value for the whole sweep)."""
    values = {d.get("n_jobs") for d in configs}
    if len(values) > 1:
        fail("n_jobs cannot vary within a sweep")
    (value,) = values
    if value is not None and value < 1:
        fail(
            f"n_jobs={value} is not allowed; n_jobs must be an integer >= 1, "
            f"or null for one worker per CPU core"
        )
    return value


def first_bool(configs: Sequence[dict[str, Any]], key: str) -> bool:
    """True if any job asks for ``key``."""
    return any(bool(d.get(key)) for d in configs)


def _print_summary(
    summaries: list[dict[str, Any]], total: int, skipped: int, failed: list[str]
) -> None:
    ran = len(summaries)
    print(
        f"depthlab: sweep done: {ran} ran, {skipped} skipped, {len(failed)} failed "
        f"of {total}",
        flush=True,
    )
    if not summaries:
        return
    rows = sorted(summaries, key=lambda s: s["index"])
    if len(rows) > 12:
        # The first, the last and ten in between.
        keep = sorted({round(i * (len(rows) - 1) / 11) for i in range(12)})
        rows = [rows[i] for i in keep]
    width = max(len(s["run_name"]) for s in rows)
    for s in rows:
        print(f"  {s['run_name']:<{width}}  {s['line']}  {s['seconds']:5.2f} s")


def _import_report_meanwhile() -> None:
    """Import the report's stack (matplotlib, seaborn: ~1 s) in a background
    thread while the jobs run, instead of after them."""

    def target() -> None:
        try:
            import matplotlib.figure  # noqa: F401
            import seaborn  # noqa: F401

            import depthlab.report  # noqa: F401
        except Exception:  # _report says what is wrong, on the main thread
            pass

    threading.Thread(target=target, name="depthlab-report-import", daemon=True).start()


def _report(uri: str, parent: str, sweep_dir: Path) -> None:
    try:
        from depthlab.report import build_report_from_mlflow
    except ImportError:
        return
    tic = time.perf_counter()
    try:
        path = build_report_from_mlflow(
            uri, parent, out_dir=sweep_dir, log_to_parent=True
        )
    except Exception as err:  # a report must never lose the sweep's runs
        print(f"depthlab: report failed: {_one_line(err)}", file=sys.stderr)
        return
    print(f"depthlab: report {path} ({time.perf_counter() - tic:.1f} s)", flush=True)
