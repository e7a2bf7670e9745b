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
   run computed but could not log (:mod:`depthlab.pending`),

then runs the remaining jobs: with Hydra's basic launcher (the default) on
``n_jobs`` worker processes, one per core by default (:mod:`depthlab.sweep.workers`),
or in this process for one; with any other Hydra launcher (joblib, submitit,
ray) through that launcher. Each job claims its config hash before computing (a
job another live process claimed is not computed; the sweep waits for it at the
end). At the end it prints a summary and builds the report.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Collection, Sequence
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
    keys = [k for k in cfg if k != "hydra"]
    d = OmegaConf.to_container(OmegaConf.masked_copy(cfg, keys), resolve=True)
    assert isinstance(d, dict)
    return d  # type: ignore[return-value]


def run_name(d: dict[str, Any], first: Collection[str] = ()) -> str:
    """A run's name from what a job sets, e.g. ``L=12 tanh gaussian sw=1 n=64``
    or ``L=12 resnet LN a=1/sqrt tanh gaussian sw=1 n=64``.

    The keys and labels are :data:`depthlab.jobs.schema.RUN_NAME`'s; the keys of
    ``first`` (what varies in the job's sweep) lead, in that order, and are
    shown whatever their value: MLflow's run table cuts names at about 16
    characters.
    """
    parts: dict[str, str] = {}
    for key, label, always in schema.RUN_NAME:
        k = schema.BY_KEY[key]
        if k.task not in (None, d["task"]):
            continue
        if k.section == "arch":
            text = schema.arch_label(key, d)
            if text is not None:
                parts[key] = text
            continue
        value = schema.get(d, key)
        if key == "width" and d.get("hidden_widths"):
            value = "-".join(map(str, d["hidden_widths"]))
        if key == "output_activation" and value == d["activation"] and key not in first:
            continue
        if not always and value == k.default and key not in first:
            continue
        parts[key] = (
            f"{label}{value:g}" if isinstance(value, float) else f"{label}{value}"
        )
    lead = [parts[key] for key in schema.RUN_NAME_KEYS if key in first and key in parts]
    rest = [text for key, text in parts.items() if key not in first]
    return " ".join(lead + rest)


def _shown(d: dict[str, Any], key: str) -> Any:
    """A key's value as a name compares it (lists as tuples)."""
    value = schema.get(d, key)
    return tuple(value) if isinstance(value, list) else value


def varying_keys(configs: Sequence[dict[str, Any]]) -> list[str]:
    """The schema's semantic keys (those of the config hash) whose value
    differs between the jobs of a sweep, in the schema's order."""
    out = []
    for k in schema.KEYS:
        if not k.semantic:
            continue
        try:
            values = {repr(_shown(d, k.key)) for d in configs}
        except KeyError:
            continue
        if len(values) > 1:
            out.append(k.key)
    return out


def sweep_run_names(configs: Sequence[dict[str, Any]]) -> list[str]:
    """Every job's run name (:func:`run_name`), what varies in the sweep
    first; names that would repeat (a sweep over keys a name does not show)
    end in ``#<job number>``."""
    varying = varying_keys(configs)
    names = [run_name(d, first=varying) for d in configs]
    counts: dict[str, int] = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    return [
        f"{name} #{i + 1}" if counts[name] > 1 else name for i, name in enumerate(names)
    ]


def sweep_title(configs: Sequence[dict[str, Any]], limit: int = 200) -> str:
    """The parent run's name: the swept ranges and the number of jobs, e.g.
    ``depth=2..50 activation=tanh,relu (98 jobs)``."""

    def values(key: str) -> str:
        seen = list(dict.fromkeys(_shown(d, key) for d in configs))  # as given
        if all(isinstance(v, int | float) for v in seen):
            seen.sort()
        ints = [v for v in seen if isinstance(v, int) and not isinstance(v, bool)]
        if len(ints) == len(seen) > 2 and ints[-1] - ints[0] == len(ints) - 1:
            return f"{ints[0]}..{ints[-1]}"
        text = [f"{v:g}" if isinstance(v, float) else _text(v) for v in seen]
        return ",".join(text)

    parts = [f"{key}={values(key)}" for key in varying_keys(configs)]
    n = len(configs)
    jobs = f"({n} job{'s' if n != 1 else ''})"
    title = " ".join([*parts, jobs]) if parts else f"{run_name(configs[0])} {jobs}"
    if len(title) > limit:
        title = title[: limit - len(jobs) - 2] + "… " + jobs
    return title


def _text(value: Any) -> str:
    if isinstance(value, tuple):
        return "-".join(map(str, value))
    return str(value)


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
    sweep folder (:mod:`depthlab.pending`) before the fault is raised.
    """
    import numpy as np

    from depthlab import tracking
    from depthlab.store import StoreFault

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
    return {
        "index": index,
        "run_name": name,
        "run_id": run_id,
        "seconds": seconds,
        "line": line,
        "text": text,
    }


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
    written, :func:`depthlab.pending.fallback_dir`) and note it on the fault."""
    from depthlab import pending

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
    from hydra.core.utils import JobStatus
    from hydra.errors import HydraException

    from depthlab import tracking
    from depthlab.store import END_REASON_TAG, StoreFault
    from depthlab.sweep import interrupts

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
    uri = tracking.resolve_uri(first["uri"])
    experiment = first["experiment"]
    total = len(jobs)
    try:
        tracking.check_store(uri)
        ended = tracking.open_store(uri, experiment)
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
        done = {} if force else tracking.finished_runs(uri, experiment)
        parent = tracking.start_sweep(
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
        recovered = _recover(uri, experiment, parent, configs, todo, sweep_dir, force)
        todo = [i for i in todo if i not in recovered]
        if first_bool(configs, "report") and todo:
            _import_report_meanwhile()
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
                tracking.end_sweep(
                    uri,
                    parent,
                    status=status,
                    **(metrics if status != "KILLED" else {}),
                )
            except StoreFault as err:
                fault = err
        else:
            tracking.end_run_quietly(uri, parent, "FAILED", f"StoreFault: {fault}")
    if fault is not None:
        fail(_fault_line(fault, total, len(reused) + len(recovered)))
    summaries = [
        r.return_value
        for r in results
        if r.status == JobStatus.COMPLETED and "taken" not in r.return_value
    ]
    _print_summary(summaries, total, len(reused), failed, recovered=len(recovered))
    if first_bool(configs, "report"):
        _report(uri, parent, sweep_dir)
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
    from depthlab.store import StoreFault

    try:
        exp_id = tracking._job_experiment_id(uri, experiment)
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
    :mod:`depthlab.pending`), as children of ``parent``, without computing.

    Returns
    -------
    list of int
        The indices (into ``configs``) logged.
    """
    from depthlab import pending, tracking

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

    from depthlab import tracking

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

    from depthlab import tracking
    from depthlab.sweep import workers

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
        f"job {i + 1}: {_one_line(r._return_value)}"
        for i, r in zip(todo, results, strict=False)
        if r.status == JobStatus.FAILED
    ]
    return results, failed


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
    from hydra.core.utils import JobStatus, run_job, setup_globals

    from depthlab.sweep import workers as pool
    from depthlab.sweep.progress import Progress

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
            if "taken" not in ret.return_value:
                _finished_here.append(index)
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
    from depthlab.sweep import workers

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
    return value


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
    from depthlab.store import StoreFault

    tic = time.perf_counter()
    try:
        path = build_report_from_mlflow(
            uri, parent, out_dir=sweep_dir, log_to_parent=True
        )
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
