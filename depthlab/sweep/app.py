"""The Hydra application: configuration schema, the job, and the sweep.

``python -m depthlab [overrides]`` (see :mod:`depthlab.sweep.cli`) runs every
invocation as a Hydra multirun through depthlab's sweeper
(``hydra_plugins.depthlab_sweeper``), which, before any job starts:

1. expands the sweep into jobs and composes each job's config,
2. validates every job (one-line errors naming the bad value),
3. opens the tracking store (created or migrated under its file lock; a
   server that does not answer, or any store fault, is one line within
   seconds) and ends the runs of processes that are gone,
4. creates the sweep's parent run, skips jobs whose config hash already has
   a FINISHED run (``force=true`` recomputes), and logs the jobs an earlier
   run computed but could not log (:mod:`depthlab.tracking.pending`),

then runs the remaining jobs: with Hydra's basic launcher (the default) on
``n_jobs`` worker processes, one per core by default (:mod:`depthlab.sweep.workers`),
or in this process for one; with any other Hydra launcher (joblib, submitit,
ray) through that launcher. Each job claims its config hash before computing (a
job another live process claimed is not computed; the sweep waits for it at the
end). At the end it prints a summary and builds the report.
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hydra
from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf, open_dict

from depthlab.jobs import schema
from depthlab.jobs.config import Config
from depthlab.jobs.schema import ConfigError, config_hash
from depthlab.jobs.validate import validate
from depthlab.sweep.compose import compose_job_configs
from depthlab.sweep.launch import (
    _launch,
    _n_jobs,
    _wait_for_claimed,
    _warm_up_workers,
    number_jobs,
)
from depthlab.sweep.names import run_name, sweep_run_names, sweep_title


def _config_dir() -> str:
    """Hydra's config folder: the repository's top-level ``conf/`` in a source
    checkout, else the copy shipped inside the wheel (package ``depthlab.conf``)."""
    source = Path(__file__).resolve().parents[2] / "conf"
    if (source / "config.yaml").is_file():
        return str(source)
    from importlib.resources import files

    return str(files("depthlab.conf"))


CONFIG_PATH = _config_dir()

PRINT_JOB_LINES = True
"""Whether :func:`run_job` prints its own line. The sweep's process prints the
lines of the jobs it runs itself or on its workers (:mod:`depthlab.sweep.progress`);
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
    # Key by key: a masked copy of the whole config first costs 3x as much.
    d: dict[str, Any] = {}
    for key in cfg:
        if key == "hydra":
            continue
        node = cfg._get_node(key)
        if OmegaConf.is_config(node):
            d[str(key)] = OmegaConf.to_container(node, resolve=True)
        elif OmegaConf.is_missing(cfg, key):
            d[str(key)] = "???"  # as to_container gives it: validation names it
        else:
            d[str(key)] = cfg[key]
    return d


def _probe_spec(d: dict[str, Any]) -> Any:
    """The job's :class:`~depthlab.jobs.probe.ProbeSpec`."""
    from depthlab.jobs.probe import ProbeSpec

    return ProbeSpec.from_config(d)


_finished_here: list[int] = []
"""Indices of the jobs this sweep FINISHED, here or on its workers (counted in a
fault's line); appended as each job's result reaches the sweep's process."""


def run_job(cfg: DictConfig) -> dict[str, Any]:
    """One job: claim, compute, log to MLflow, print one line. Returns its summary.

    A job that FINISHED meanwhile or that another live process has claimed is
    not computed: the summary then has ``taken`` (``finished`` or ``claimed``).
    If the store fails after the numbers are computed, they are kept in the
    sweep folder (:mod:`depthlab.tracking.pending`) before the fault is raised.
    """
    import numpy as np

    from depthlab import tracking
    from depthlab.tracking.store import StoreFault

    tic = time.perf_counter()
    d = job_dict(cfg)
    validate(d)
    uri = tracking.resolve_uri(d["tracking"]["uri"])
    experiment = d["tracking"]["experiment"]
    name = d["tracking"].get("run_name") or run_name(d)
    digest = config_hash(d)
    index = d["tracking"]["job_index"] + 1
    total = d["tracking"]["jobs_total"]
    width = len(str(total))
    rng = np.random.default_rng(d["seed"])
    record: Any = None
    line = ""
    try:
        with tracking.job_run(
            uri,
            experiment,
            d["tracking"]["parent_run_id"],
            name,
            digest,
            force=bool(d["force"]),
        ) as run_id:
            if d["task"] == "train":
                from depthlab.jobs.train import run_training_job

                record, line = run_training_job(
                    d, rng=rng, run_name=name, config_hash=digest
                )
            else:
                record, line = _run_probe_job(d, run_name=name, config_hash=digest)
            record.config_yaml = OmegaConf.to_yaml(cfg)
            tracking.log_job(uri, run_id, record)
    except tracking.JobTaken as taken:
        what = (
            f"FINISHED meanwhile (run {taken.run_id})"
            if taken.finished
            else f"claimed by {taken.owner} (run {taken.run_id}): not computed here"
        )
        if PRINT_JOB_LINES:
            print(f"[{index:>{width}}/{total}] {name}  {what}", flush=True)
        return {
            "index": index,
            "run_name": name,
            "run_id": taken.run_id,
            "taken": "finished" if taken.finished else "claimed",
            "text": f"{name}  {what}",
        }
    except StoreFault as fault:
        if record is not None:
            _keep_computed(fault, _sweep_dir(), uri, record, line)
        raise
    seconds = time.perf_counter() - tic
    text = f"{name}  {line}  {seconds:5.2f} s"
    if PRINT_JOB_LINES:
        print(f"[{index:>{width}}/{total}] {text}", flush=True)
    summary = {
        "index": index,
        "run_name": name,
        "run_id": run_id,
        "seconds": seconds,
        "line": line,
        "text": text,
    }
    if d["report"]:
        # The report's tables, as logged, go back to the sweep's process with
        # the summary: its report then reads none of them back from the store.
        from depthlab.tracking.read import REPORT_TABLES

        summary["tables"] = {
            k: v for k, v in record.tables.items() if k in REPORT_TABLES
        }
    return summary


def _sweep_dir() -> Path:
    """The running sweep's folder (Hydra's ``hydra.sweep.dir``), absolute."""
    from hydra.core.hydra_config import HydraConfig

    try:
        return Path(str(HydraConfig.get().sweep.dir)).resolve()
    except ValueError:  # not run by Hydra
        return Path.cwd()


def _keep_computed(
    fault: Any, sweep_dir: Path, uri: str, record: Any, line: str
) -> None:
    """Save a computed job into ``sweep_dir/pending`` (or, if that cannot be
    written, :func:`depthlab.tracking.pending.fallback_dir`) and note it on the
    fault."""
    from depthlab.tracking import pending

    tried = []
    for folder in (sweep_dir, pending.fallback_dir(uri)):
        try:
            fault.saved.append(str(pending.save(folder, record, line)))
            return
        except OSError as err:
            tried.append(f"{folder / pending.FOLDER} ({pending.reason(err)})")
    fault.unsaved.append(" nor ".join(tried))


def _run_probe_job(
    d: dict[str, Any], *, run_name: str, config_hash: str
) -> tuple[Any, str]:
    from depthlab.jobs.probe import run_probe
    from depthlab.tracking import JobRecord

    result = run_probe(_probe_spec(d))
    s = result.summary
    line = (
        f"median |grad| {10 ** s['grad_log10_norm_median']:9.3e}  "
        f"rms {_exp10(s['grad_log10_rms'])}  "
        f"theory rms {_exp10(s['theory_grad_log10_rms'])}"
    )
    record = JobRecord(
        run_name=run_name,
        params=schema.job_params(d),
        config_hash=config_hash,
        summary=s,
        per_layer=result.per_layer,
        tables=result.tables(),
        config_yaml="",
    )
    return record, line


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
        loader = sweeper.hydra_context.config_loader
        # The loader does not see a `hydra.searchpath` given on the command line:
        # then groups are left to Hydra's composition (its error is one line too).
        searchpath = sweeper.config.hydra.get("searchpath") or []
        options = None if searchpath else lambda g: sorted(loader.get_group_options(g))
        for override in overrides:
            check_override(override, options)
        batches = sweeper.split_arguments(overrides, None)
    except HydraException as err:
        fail(_one_line(err))
    except ConfigError as err:
        fail(str(err))
    return [list(job) for batch in batches for job in batch]


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text[:500]


def _group_options(group: str) -> list[str]:
    folder = Path(CONFIG_PATH) / group
    return sorted(p.stem for p in folder.glob("*.yaml"))


GROUPS = ("activation", "init", "arch", "experiment")
"""Config groups of depthlab (folders of ``conf``)."""


def check_override(
    override: Any, options: Callable[[str], list[str]] | None = _group_options
) -> None:
    """Check a parsed override's value(s) against the schema, before Hydra composes.

    Every value of a sweep (a comma list, ``range()``) is checked; a group's
    options must be among ``options(group)`` (default: the YAML files of
    depthlab's own conf/; None: groups are left to Hydra, which knows the
    user's search path). Hydra's own keys, deletions and ``glob()`` are left to
    Hydra.

    Raises
    ------
    ConfigError
    """
    from hydra.core.override_parser.types import ChoiceSweep, RangeSweep

    from depthlab.jobs.validate import check_option, check_value

    key = override.key_or_group
    if override.is_hydra_override() or override.is_delete() or "/" in key:
        return
    value = override.value()
    if override.is_sweep_override():
        if isinstance(value, ChoiceSweep):
            values = list(value.list)
        elif isinstance(value, RangeSweep):
            values = list(override.sweep_iterator())
        else:  # glob(), interval(): Hydra expands them
            return
    else:
        values = [value]
    for v in values:
        if isinstance(v, str) and "${" in v:
            continue  # an interpolation: checked once composed
        if key in GROUPS:
            if options is not None:
                check_option(key, v, options(key))
        else:
            check_value(key, v)


def sweep(sweeper: Any, arguments: list[str]) -> list[Any]:
    """Validate, resume and launch a sweep; summarize and report at the end."""
    from hydra.errors import HydraException

    from depthlab import interrupts
    from depthlab.sweep import tracker

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
        fail(_one_line(err))
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
    names = sweep_run_names(configs)
    for cfg, name in zip(composed, names, strict=True):
        with open_dict(cfg):
            cfg.tracking.run_name = name
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
    number_jobs(sweeper, composed)
    try:
        return _run_sweep(sweeper, arguments, jobs, composed, configs, sweep_dir, tic)
    finally:
        tracker.close()


def _run_sweep(
    sweeper: Any,
    arguments: list[str],
    jobs: list[list[str]],
    composed: list[DictConfig],
    configs: list[dict[str, Any]],
    sweep_dir: Path,
    tic: float,
) -> list[Any]:
    """The valid sweep: open the store, resume, launch, end, report."""
    from hydra.core.utils import JobStatus

    from depthlab import tracking
    from depthlab.sweep import tracker
    from depthlab.tracking.store import END_REASON_TAG, StoreFault

    first = configs[0]["tracking"]
    store = tracker.store()  # its calls run in the tracker process, if any
    uri = tracking.resolve_uri(first["uri"])
    experiment = first["experiment"]
    total = len(jobs)
    try:
        store.check_store(uri)
        ended = store.open_store(uri, experiment)
    except tracking.TrackingError as err:
        fail(str(err))
    except StoreFault as err:
        fail(err.line("no job was started"))
    if ended:
        print(
            f"depthlab: ended {ended} RUNNING run(s) whose process is gone "
            f"(KILLED, reason in tag {END_REASON_TAG})",
            flush=True,
        )

    n_jobs = _n_jobs(configs)
    force = any(d["force"] for d in configs)
    hashes = [config_hash(d) for d in configs]
    try:
        done = {} if force else store.finished_runs(uri, experiment)
        parent = store.start_sweep(
            uri,
            experiment,
            run_name=sweep_title(configs),
            params={
                "overrides": " ".join(arguments)[:6000],
                "jobs": total,
                "sweep_dir": str(sweep_dir.resolve()),
            },
        )
    except tracking.TrackingError as err:
        fail(str(err))
    except StoreFault as err:
        fail(err.line("no job was started"))
    todo = [i for i, h in enumerate(hashes) if h not in done]
    reused = [done[h] for h in hashes if h in done]
    results: list[Any] = []
    failed: list[str] = []
    recovered: list[int] = []
    status = "KILLED"
    fault: StoreFault | None = None
    try:
        recovered = tracker.run(
            _recover, uri, experiment, parent, configs, todo, sweep_dir, force
        )
        todo = [i for i in todo if i not in recovered]
        if first_bool(configs, "report") and todo:
            _import_report_meanwhile(tracker.current())
        results, failed = _launch(
            sweeper, jobs, composed, todo, reused, parent, uri, experiment, n_jobs
        )
        results, failed = _wait_for_claimed(
            sweeper,
            jobs,
            composed,
            hashes,
            results,
            failed,
            reused,
            parent,
            uri,
            experiment,
            force,
        )
        status = "FAILED" if failed else "FINISHED"
    except StoreFault as err:
        fault = err
        status = "FAILED"
    finally:
        from depthlab.sweep import workers

        workers.discard_prestarted()  # unused: every job was done before
        # The workers' table files were read as their jobs ended (or are of
        # jobs whose results never came: interrupted).
        shutil.rmtree(sweep_dir / workers.SPILL_DIR, ignore_errors=True)
        # Runs on an interrupt too: the sweep run never stays RUNNING.
        metrics = {
            "jobs": total,
            "jobs_skipped": len(reused),
            "jobs_recovered": len(recovered),
            "jobs_failed": len(failed),
            "seconds": time.perf_counter() - tic,
        }
        if fault is None:
            try:
                store.end_sweep(
                    uri,
                    parent,
                    status=status,
                    **(metrics if status != "KILLED" else {}),
                )
            except StoreFault as err:
                fault = err
        else:
            store.end_run_quietly(uri, parent, "FAILED", f"StoreFault: {fault}")
    if fault is not None:
        fail(_fault_line(fault, total, len(reused) + len(recovered)))
    summaries = [
        r.return_value
        for r in results
        if r.status == JobStatus.COMPLETED and "taken" not in r.return_value
    ]
    _print_summary(summaries, total, len(reused), failed, recovered=len(recovered))
    if first_bool(configs, "report"):
        known = {
            r.return_value["run_id"]: r.return_value.get("tables")
            or r.return_value["tables_file"]
            for r in results
            if r.status == JobStatus.COMPLETED
            and ("tables" in r.return_value or "tables_file" in r.return_value)
        }
        _report(uri, parent, sweep_dir, known)
    print(f"depthlab: {_dashboard_line(uri, experiment)}", flush=True)
    if failed:
        for line in failed:
            print(f"depthlab: FAILED {line}", file=sys.stderr)
        raise SystemExit(1)
    return [results]


def _dashboard_line(uri: str, experiment: str) -> str:
    """Where the runs are and the page of them to open: ``mlflow ui`` on a
    SQLite store (it serves on 127.0.0.1:5000), the server's page otherwise
    (:func:`depthlab.tracking.dashboard_url`: the runs, not MLflow's GenAI
    overview)."""
    from depthlab import tracking
    from depthlab.sweep.tracker import store
    from depthlab.tracking.store import StoreFault

    try:
        exp_id = store()._job_experiment_id(uri, experiment)
    except (Exception, StoreFault):
        exp_id = None
    where = f"runs in {uri}, experiment {experiment!r}"
    if uri.startswith("sqlite:///"):
        ui = f"run mlflow ui --backend-store-uri {uri}"
        if exp_id is None:
            return f"{where}; dashboard: {ui}"
        page = tracking.dashboard_url("http://127.0.0.1:5000", exp_id)
        return f"{where}; dashboard: {ui}, then open {page}"
    if exp_id is None:
        return f"{where}; dashboard: open {uri} in a browser"
    return f"{where}; dashboard: open {tracking.dashboard_url(uri, exp_id)}"


def _fault_line(fault: Any, total: int, kept_before: int) -> str:
    """The one line of a store fault mid-sweep: what is kept, what to do."""
    finished = kept_before + len(_finished_here)
    kept = f"{finished} of {total} jobs finished and are kept"
    if fault.saved:
        n = len(fault.saved)
        folder = str(Path(fault.saved[0]).parent)
        kept += (
            f", {n} computed job{'s' if n > 1 else ''} kept in {folder} "
            f"(the next run logs {'them' if n > 1 else 'it'} without computing)"
        )
    if fault.unsaved:
        kept += f", {len(fault.unsaved)} computed job(s) lost: cannot write "
        kept += fault.unsaved[0]
    return fault.line(kept)


def _recover(
    uri: str,
    experiment: str,
    parent: str,
    configs: list[dict[str, Any]],
    todo: list[int],
    sweep_dir: Path,
    force: bool,
) -> list[int]:
    """Log the jobs of ``todo`` that an earlier run of the sweep computed but
    could not log (kept in a sweep folder's ``pending/``, see
    :mod:`depthlab.tracking.pending`), as children of ``parent``, without computing.

    Returns
    -------
    list of int
        The indices (into ``configs``) logged.
    """
    from depthlab import tracking
    from depthlab.tracking import pending

    hashes = {i: config_hash(configs[i]) for i in todo}
    folders = [
        sweep_dir.resolve(),
        *tracking.sweep_folders(uri, experiment),
        pending.fallback_dir(uri),
    ]
    done = {config_hash(d) for d in configs} - set(hashes.values())
    for folder in pending.find(folders, sorted(done)).values():
        # Its run reached FINISHED although the store's answer was lost.
        pending.remove(folder)
    if not hashes:
        return []
    found = pending.find(folders, list(hashes.values()))
    recovered: list[int] = []
    total = len(configs)
    width = len(str(total))
    for i in todo:
        folder = found.get(hashes[i])
        if folder is None:
            continue
        record, line = pending.load(folder)
        try:
            with tracking.job_run(
                uri, experiment, parent, record.run_name, hashes[i], force=force
            ) as run_id:
                tracking.log_job(uri, run_id, record)
        except tracking.JobTaken as taken:
            if taken.finished:
                pending.remove(folder)
            continue
        pending.remove(folder)
        recovered.append(i)
        print(
            f"[{i + 1:>{width}}/{total}] {record.run_name}  {line}  "
            f"recovered from {folder}",
            flush=True,
        )
    if recovered:
        print(
            f"depthlab: recovered {len(recovered)} job(s) computed by an earlier "
            f"run of this sweep: logged, not computed again",
            flush=True,
        )
    return recovered


def first_bool(configs: Sequence[dict[str, Any]], key: str) -> bool:
    """True if any job asks for ``key``."""
    return any(bool(d.get(key)) for d in configs)


def _print_summary(
    summaries: list[dict[str, Any]],
    total: int,
    skipped: int,
    failed: list[str],
    *,
    recovered: int = 0,
) -> None:
    ran = len(summaries)
    back = f"{recovered} recovered, " if recovered else ""
    print(
        f"depthlab: sweep done: {ran} ran, {back}{skipped} skipped, "
        f"{len(failed)} failed of {total}",
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


def _import_report_meanwhile(tracker: Any = None) -> None:
    """Import the report's stack (matplotlib, seaborn: ~1 s) while the jobs
    run, instead of after them: in the tracker process that builds the report
    (:mod:`depthlab.sweep.tracker`), else in a background thread here (what
    fails is left for :func:`_report` to say, on the main thread)."""
    from depthlab.sweep.tracker import import_report_stack

    if tracker is not None:
        tracker.call_soon(import_report_stack)
        return
    threading.Thread(
        target=import_report_stack, name="depthlab-report-import", daemon=True
    ).start()


def _report(
    uri: str, parent: str, sweep_dir: Path, known_tables: dict[str, Any]
) -> None:
    """Build the sweep's report and say where it is (or why it is not): in the
    tracker process if the sweep has one, else here
    (:func:`depthlab.sweep.tracker.build_report`; ``known_tables``: run id ->
    its tables, or the file a worker left them in)."""
    from depthlab.sweep import tracker as tracking_process
    from depthlab.tracking.store import StoreFault

    tracker = tracking_process.current()
    args = (uri, parent, sweep_dir, known_tables)
    tic = time.perf_counter()
    try:
        if tracker is not None:
            path = tracker.call_now(tracking_process.build_report, *args)
        else:
            path = tracking_process.build_report(*args)
    except ImportError:  # the report's extras are not installed
        return
    except OSError as err:  # the sweep folder is read-only, full, gone
        where = err.filename or sweep_dir
        print(
            f"depthlab: report not written: cannot write {where} "
            f"({err.strerror or err}); the runs are kept in {uri}",
            file=sys.stderr,
        )
        return
    except (Exception, StoreFault) as err:  # a report never loses the runs
        print(f"depthlab: report failed: {_one_line(err)}", file=sys.stderr)
        return
    print(f"depthlab: report {path} ({time.perf_counter() - tic:.1f} s)", flush=True)
