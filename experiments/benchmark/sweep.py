"""Benchmark sections on the sweep: wall time and where it goes; job scaling.

The sweep section runs ``python -m depthlab depth=2..50`` in a fresh temporary
directory (fresh database), again with ``seed=1`` (existing database, nothing
skipped), both through ``timed_sweep.py`` (the same command in the same
process, with timers around its parts), and with ``seed=2
hydra/launcher=joblib hydra.launcher.n_jobs=2`` as a plain ``python -m
depthlab``. Imports are measured step by step in a fresh process.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import peers
from common import compare, fmt_ratio, fmt_seconds, markdown_table

HERE = Path(__file__).resolve().parent
_JOB_LINE = re.compile(r"^\[\s*\d+/\d+\].*?(\d+\.\d+) s\s*$")
_REPORT_LINE = re.compile(r"^depthlab: report .* \((\d+\.?\d*) s\)")

_IMPORT_SCRIPT = """\
import json, time
out = {}
def step(name, stmt):
    tic = time.perf_counter()
    exec(stmt, {})
    out[name] = time.perf_counter() - tic
step("depthlab (numpy, scipy, the core)", "import depthlab")
step("depthlab.sweep.app (hydra, omegaconf)", "import depthlab.sweep.app")
step("depthlab.jobs.probe (pandas, spectra, theory)", "import depthlab.jobs.probe")
step("mlflow client",
     "from mlflow.tracking import MlflowClient; import mlflow.entities")
step("mlflow SQLite store (sqlalchemy, alembic)",
     "import mlflow.store.tracking.sqlalchemy_store")
step("depthlab.report (matplotlib, seaborn)",
     "import depthlab.report, matplotlib.pyplot, seaborn")
print(json.dumps(out))
"""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("PYTHONWARNINGS", "ignore")
    return env


def _run(
    cmd: Sequence[str],
    cwd: Path,
    *,
    timeout: float = 1800,
    preexec: Any = None,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run a command: wall and CPU seconds, load, per-job seconds, report time.

    ``preexec`` runs in the child before the command (default: every CPU);
    ``env`` is added to the environment."""
    load0 = os.getloadavg()[0]
    before = os.times()
    tic = time.perf_counter()
    proc = subprocess.run(
        list(cmd),
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**_env(), **(env or {})},
        timeout=timeout,
        preexec_fn=preexec or peers.unpin,
    )
    wall = time.perf_counter() - tic
    after = os.times()
    cpu = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    jobs = []
    report = None
    for line in proc.stdout.splitlines():
        m = _JOB_LINE.match(line)
        if m:
            jobs.append(float(m.group(1)))
        m = _REPORT_LINE.match(line)
        if m:
            report = float(m.group(1))
    if proc.returncode != 0:
        print(
            f"sweep: {' '.join(cmd[1:])} failed ({proc.returncode}):\n"
            f"{proc.stderr[-2000:]}",
            flush=True,
        )
    return {
        "returncode": proc.returncode,
        "wall": wall,
        "cpu": cpu,
        "load": [load0, os.getloadavg()[0]],
        "jobs": jobs,
        "report": report,
        "stdout_tail": proc.stdout[-1500:],
        "stderr_tail": proc.stderr[-1500:],
    }


def _timed(args: Sequence[str], cwd: Path, tag: str) -> dict[str, Any]:
    out = cwd / f"timings-{tag}.json"
    run = _run([sys.executable, str(HERE / "timed_sweep.py"), str(out), *args], cwd)
    run["command"] = "python -m depthlab " + " ".join(args)
    run["timings"] = json.loads(out.read_text()) if out.exists() else None
    return run


def _python_start() -> float:
    times = []
    for _ in range(3):
        tic = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", "pass"], check=True, preexec_fn=peers.unpin
        )
        times.append(time.perf_counter() - tic)
    return statistics.median(times)


def import_times() -> dict[str, Any]:
    """Seconds of each import step of a sweep (fresh subprocess), and the top
    modules by cumulative import time (python -X importtime)."""
    proc = subprocess.run(
        [sys.executable, "-c", _IMPORT_SCRIPT],
        capture_output=True,
        text=True,
        env=_env(),
        check=True,
        preexec_fn=peers.unpin,
    )
    steps = json.loads(proc.stdout.strip().splitlines()[-1])
    stmt = (
        "import depthlab.sweep.app, depthlab.jobs.probe, depthlab.tracking; "
        "from mlflow.tracking import MlflowClient; "
        "import mlflow.store.tracking.sqlalchemy_store"
    )
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", stmt],
        capture_output=True,
        text=True,
        env=_env(),
        preexec_fn=peers.unpin,
    )
    top = []
    for line in proc.stderr.splitlines():
        parts = line.split("|")
        if len(parts) != 3 or not parts[0].startswith("import time:"):
            continue
        name = parts[2].rstrip()
        if name.startswith("  ") or not parts[1].strip().isdigit():
            continue  # not a top-level import
        top.append((name.strip(), int(parts[1]) / 1e6))
    top.sort(key=lambda x: -x[1])
    return {"python_start": _python_start(), "steps": steps, "top": top[:10]}


def _default_job(depth: int) -> dict[str, Any]:
    """The job dict of ``python -m depthlab depth=<depth>`` (composed by Hydra)."""
    from hydra import compose, initialize_config_dir

    import depthlab.sweep.app as app

    with initialize_config_dir(config_dir=app.CONFIG_PATH, version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"depth={depth}"])
    return app.job_dict(cfg)


_SQLITE_SCRIPT = """\
import json, statistics, sys, tempfile, time
mode, runs, depth = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
import depthlab.tracking
if mode == "stock" and hasattr(depthlab.tracking, "_use_sqlite_wal"):
    depthlab.tracking._use_sqlite_wal = lambda: None  # SQLite's defaults
if mode == "wal":
    import sqlite3
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    @event.listens_for(Engine, "connect")
    def _pragmas(conn, record):
        if isinstance(conn, sqlite3.Connection):
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
import numpy as np
import mlflow.store.tracking.sqlalchemy_store
from mlflow.tracking import MlflowClient
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
import depthlab.sweep.app as app
from depthlab import tracking
from depthlab.jobs.config import config_hash
with initialize_config_dir(config_dir=app.CONFIG_PATH, version_base="1.3"):
    cfg = compose(config_name="config", overrides=[f"depth={depth}"])
d = app.job_dict(cfg)
record, _ = app._run_probe_job(d, run_name="r", config_hash=config_hash(d))
record.config_yaml = OmegaConf.to_yaml(cfg)
uri = tracking.default_uri(tempfile.mkdtemp())
tic = time.perf_counter()
parent = tracking.start_sweep(uri, "bench", run_name="bench", params={"jobs": runs})
create = time.perf_counter() - tic
times = []
for i in range(runs):
    tic = time.perf_counter()
    with tracking.job_run(uri, "bench", parent, f"run {i}", f"h{i}") as run_id:
        tracking.log_job(uri, run_id, record)
    times.append(time.perf_counter() - tic)
print(json.dumps({"create": create, "per_run": statistics.median(times[1:])}))
"""


def _sqlite_modes(runs: int, depth: int) -> dict[str, dict[str, float]]:
    """Store creation and per-run time (a depth-``depth`` job's record), stock
    SQLite against WAL mode."""
    out = {}
    for mode in ("stock", "wal"):
        proc = subprocess.run(
            [sys.executable, "-c", _SQLITE_SCRIPT, mode, str(runs), str(depth)],
            capture_output=True,
            text=True,
            env=_env(),
            check=True,
            preexec_fn=peers.unpin,
        )
        out[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def levers(quick: bool) -> dict[str, Any]:
    """Measured effect of the changes the findings propose (see the README)."""
    import pandas as pd
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    import depthlab.sweep.app as app
    from depthlab.jobs.probe import run_probe
    from depthlab.sweep.compose import _derive

    out: dict[str, Any] = {"sqlite": _sqlite_modes(4 if quick else 8, 26)}
    with initialize_config_dir(config_dir=app.CONFIG_PATH, version_base="1.3"):
        base = compose(
            config_name="config", overrides=["depth=6"], return_hydra_config=True
        )
        group_exists = GlobalHydra.instance().config_loader().repository.group_exists
        job = OverridesParser.create().parse_overrides(["depth=7"])

        def compose_job() -> None:
            app.job_dict(
                compose(
                    config_name="config",
                    overrides=["depth=7"],
                    return_hydra_config=True,
                )
            )

        def update_job() -> None:
            app.job_dict(_derive(base, job, group_exists))

        t = compare(
            {"compose": compose_job, "update": update_job}, rounds=5, max_total_s=3
        )
    out["compose"] = {k: v.median for k, v in t.items()}
    depth = 30
    spec = app._probe_spec(_default_job(depth))
    result = run_probe(spec)
    cfg = spec.config_columns()
    bare = {
        name: table.drop(columns=list(cfg)) for name, table in result.tables().items()
    }

    def insert() -> None:
        for table in bare.values():
            table = table.copy()
            for key, value in reversed(cfg.items()):
                table.insert(0, key, value)

    def construct() -> None:
        for table in bare.values():
            table = table.copy()
            pd.concat([pd.DataFrame(cfg, index=table.index), table], axis=1, copy=False)

    t = compare({"insert": insert, "construct": construct}, rounds=5, max_total_s=3)
    out["config_columns"] = {k: v.median for k, v in t.items()}
    out["depth"] = depth
    return out


def _levers_table(lv: dict[str, Any], n: int) -> str:
    sq = lv["sqlite"]
    levers = [
        (
            "SQLite in WAL mode, synchronous=NORMAL (done: tracking.py's "
            "`_use_sqlite_wal`; 'now' is SQLite's default journal)",
            "fresh store",
            sq["stock"]["create"],
            sq["wal"]["create"],
            1,
        ),
        (
            "(same)",
            "one job's run (L=26)",
            sq["stock"]["per_run"],
            sq["wal"]["per_run"],
            n,
        ),
        (
            "job configs composed once per structure and derived for the other "
            "jobs (done: `depthlab.sweep.compose`; 'now' is Hydra composing each job)",
            "one job's config",
            lv["compose"]["compose"],
            lv["compose"]["update"],
            n,
        ),
        (
            "config columns built with each table, not 55 `DataFrame.insert` "
            "calls (probe.py `run_probe`)",
            f"one job, L={lv['depth']}",
            lv["config_columns"]["insert"],
            lv["config_columns"]["construct"],
            n,
        ),
    ]
    rows = [
        [change, on, fmt_seconds(now), fmt_seconds(new), f"{k * (now - new):.1f} s"]
        for change, on, now, new, k in levers
    ]
    return markdown_table(
        ["change", "measured on", "now", "with the change", f"saved per {n}-job sweep"],
        rows,
        align="llrrr",
    )


def _parts(run: dict[str, Any], n: int) -> tuple[list[tuple[str, float]], dict]:
    """The breakdown of a timed sweep: (part, seconds) rows and per-job numbers."""
    t = run["timings"]["spent"]
    g = t.get
    mlflow_job = g("job_run", 0.0) + g("log_job", 0.0)
    launcher = g("launch", 0.0) - g("job_total", 0.0) - g("compose_in_launcher", 0.0)
    job_rest = g("job_total", 0.0) - g("run_probe", 0.0) - mlflow_job
    store = g("mlflow_first_client", 0.0)
    parts = [
        ("python start and exit", run["wall"] - g("total_in_process", 0.0)),
        ("imports: depthlab, Hydra", g("imports", 0.0)),
        ("imports: mlflow client and SQLite store", g("mlflow_import", 0.0)),
        ("tracking store: open (fresh: create, migrate)", store),
        (
            "resume query, experiment, parent run",
            g("finished_runs", 0.0) - store + g("start_sweep", 0.0),
        ),
        (
            f"Hydra: {n} job configs (composed once per structure, then derived)",
            g("compose_to_validate", 0.0),
        ),
        (f"Hydra: run_job machinery, {n} jobs", launcher),
        (f"MLflow: {n} runs (create, log, artifacts, end)", mlflow_job),
        (f"computation: {n} x run_probe", g("run_probe", 0.0)),
        ("job: config to dict, record, printing", job_rest),
        ("report", g("report", 0.0)),
    ]
    rest = run["wall"] - sum(p[1] for p in parts)
    parts.append(("rest: sweeper setup, summary", rest))
    per_job = {
        "hydra": (
            g("compose_to_validate", 0.0) + g("compose_in_launcher", 0.0) + launcher
        )
        / n,
        "mlflow": mlflow_job / n,
        "compute": g("run_probe", 0.0) / n,
    }
    return parts, per_job


def sweep_section(args: Any) -> tuple[str, dict[str, Any]]:
    """Wall time of the default sweep and its breakdown; the joblib speed-up."""
    a, b = (2, 10) if args.quick else (2, 50)
    n = b - a + 1
    rng_arg = f"depth={a}..{b}"
    root = Path(tempfile.mkdtemp(prefix="depthlab-bench-"))
    try:
        work = root / "sweep"
        work.mkdir()
        print(f"sweep: {rng_arg} on a fresh database in {work} ...", flush=True)
        # n_jobs=1: the jobs run in the timed process, where the timers are
        # (the parallel default is measured by the baseline section).
        fresh = _timed([rng_arg, "n_jobs=1"], work, "fresh")
        print(f"sweep: fresh {fresh['wall']:.1f} s; again with seed=1 ...", flush=True)
        existing = _timed([rng_arg, "seed=1", "n_jobs=1"], work, "existing")
        print(f"sweep: existing {existing['wall']:.1f} s; joblib ...", flush=True)
        joblib_args = [
            rng_arg,
            "seed=2",
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=2",
        ]
        joblib = _run([sys.executable, "-m", "depthlab", *joblib_args], work)
        joblib["command"] = "python -m depthlab " + " ".join(joblib_args)
        print(f"sweep: joblib {joblib['wall']:.1f} s; imports ...", flush=True)
        imports = import_times()
        print("sweep: levers ...", flush=True)
        lv = levers(args.quick)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    data: dict[str, Any] = {
        "depths": [a, b],
        "fresh": fresh,
        "existing": existing,
        "joblib": joblib,
        "imports": imports,
        "levers": lv,
    }
    if not (fresh["timings"] and existing["timings"]):
        return "*The sweep failed; see results.json.*", data
    fresh_parts, fresh_job = _parts(fresh, n)
    existing_parts, existing_job = _parts(existing, n)
    data["per_job"] = {"fresh": fresh_job, "existing": existing_job}
    targets = {"fresh": 20.0, "existing": 12.0}

    def row(r: dict[str, Any], note: str, target: float | None) -> list[Any]:
        ok = (
            ""
            if target is None or args.quick
            else (" (met)" if r["wall"] <= target else " (not met)")
        )
        return [
            f"`{r['command']}`" + note,
            f"{r['wall']:.1f} s",
            f"{r['cpu']:.1f} s",
            f"{r['load'][0]:.1f}, {r['load'][1]:.1f}",
            fmt_seconds(r["report"]),
            (f"{target:g} s" if target and not args.quick else "-") + ok,
        ]

    summary = markdown_table(
        ["run", "wall time", "CPU time", "load before, after", "report", "target"],
        [
            row(fresh, " (fresh database)", targets["fresh"]),
            row(existing, " (existing database)", targets["existing"]),
            row(joblib, " (existing database)", None),
        ],
        align="lrrrrl",
    )
    speedup = existing["wall"] / joblib["wall"]
    overhead = existing_job["hydra"] + existing_job["mlflow"]

    def table(parts: list[tuple[str, float]], wall: float) -> str:
        rows = [[p, f"{s:.2f}", f"{100 * s / wall:.0f}%"] for p, s in parts]
        rows.append(["**total (wall time)**", f"**{wall:.2f}**", "100%"])
        return markdown_table(["part", "seconds", "share"], rows, align="lrr")

    ml = existing["timings"]["mlflow_calls"]
    spent = existing["timings"]["spent"]
    ml_rows = [
        [name, fmt_seconds(ml.get(name, 0.0) / n)]
        for name in ("create_run", "log_batch", "log_artifacts", "set_terminated")
    ]
    parquet = (
        spent.get("log_job", 0.0)
        - ml.get("log_batch", 0.0)
        - ml.get("log_artifacts", 0.0)
    )
    ml_rows.insert(
        3, ["writing the parquet tables and config", fmt_seconds(parquet / n)]
    )
    per_run = (spent.get("job_run", 0.0) + spent.get("log_job", 0.0)) / n
    ml_rows.append(["**per run**", f"**{fmt_seconds(per_run)}**"])
    md = [
        f"`python -m depthlab {rng_arg}` ({n} jobs, the default config otherwise) in "
        "a temporary directory, run through `timed_sweep.py` (the same command in "
        "the same process, with timers around its parts). CPU time is the "
        "process's own (user + system): on this shared machine a wall time well "
        "above it means other processes held the cores (load average: runnable "
        "processes on 2 cores).",
        "",
        summary,
        "",
        f"joblib launcher with 2 workers against the basic launcher (both on the "
        f"existing database): {fmt_ratio(speedup)} as fast.",
        f"Per-job overhead, Hydra + MLflow, no computation (existing database): "
        f"{fmt_seconds(existing_job['hydra'])} + {fmt_seconds(existing_job['mlflow'])}"
        f" = {fmt_seconds(overhead)} (target 80 ms: "
        f"{'met' if overhead <= 0.08 else 'not met'}); computation "
        f"{fmt_seconds(existing_job['compute'])} per job on average.",
        "",
        "Where the time goes, fresh database:",
        "",
        table(fresh_parts, fresh["wall"]),
        "",
        "Existing database:",
        "",
        table(existing_parts, existing["wall"]),
        "",
        "MLflow per run (existing database, mean over the jobs):",
        "",
        markdown_table(["part", "time"], ml_rows, align="lr"),
        "",
        "Imports, step by step in one fresh process (each step excludes what "
        f"earlier steps imported; python itself starts in "
        f"{fmt_seconds(imports['python_start'])}):",
        "",
        markdown_table(
            ["step", "seconds"],
            [[k, f"{v:.2f}"] for k, v in imports["steps"].items()],
            align="lr",
        ),
        "",
        "Heaviest top-level imports of a job process (`python -X importtime`): "
        + ", ".join(f"{name} {s:.2f} s" for name, s in imports["top"][:6])
        + ".",
        "",
        "Levers, each measured on its own in this run (what the findings in the "
        "README propose):",
        "",
        _levers_table(lv, n),
    ]
    return "\n".join(md), data


# ---------------------------------------------------------------------------
# Scaling


def _fit(xs: Sequence[float], ys: Sequence[float]) -> float:
    """The exponent p of y ~ c x^p (least squares in log-log)."""
    return float(np.polyfit(np.log(xs), np.log(ys), 1)[0])


def _spec_network(spec: Any, rng: np.random.Generator) -> Any:
    """The stack of a probe spec's ``networks`` MLPs, drawn by
    :func:`depthlab.network.init_network` from ``rng``."""
    from depthlab.network import init_network

    return init_network(
        spec.widths,
        activation=spec.activation,
        init=spec.init,
        sigma_w=spec.sigma_w,
        sigma_b=spec.sigma_b,
        rng=rng,
        num_networks=spec.networks,
        dtype=spec.dtype,
    )


def scaling(args: Any) -> tuple[str, dict[str, Any]]:
    """How run_probe's cost grows with depth, width, networks and inputs."""
    import dataclasses

    import depthlab.sweep.app as app
    from depthlab.gradient import backprop_log10_norms
    from depthlab.jobs import probe as probe_mod

    base = app._probe_spec(_default_job(16))
    axes = {
        "depth": [8, 16, 32, 64] if not args.quick else [8, 16, 32],
        "width": [16, 32, 64, 128] if not args.quick else [32, 64, 128],
        "networks": [8, 16, 32, 64] if not args.quick else [8, 16, 32],
        "inputs": [4, 8, 16, 32] if not args.quick else [4, 8, 16],
    }
    rows: list[dict[str, Any]] = []
    for axis, values in axes.items():
        for v in values:
            kw = {axis: v}
            if axis == "width":
                kw["input_dim"] = v
            spec = dataclasses.replace(base, **kw)
            rng = np.random.default_rng(0)
            net = _spec_network(spec, rng)
            X = probe_mod.sample_inputs(
                spec.input_distribution,
                (spec.networks, spec.inputs, spec.input_dim),
                rng=rng,
            ).astype(net.dtype)
            cases = {
                "run_probe": lambda spec=spec: probe_mod.run_probe(spec),
                "init_network": lambda spec=spec: _spec_network(
                    spec, np.random.default_rng(0)
                ),
                "backprop_log10_norms": lambda net=net, X=X: backprop_log10_norms(
                    net, X
                ),
            }
            if hasattr(probe_mod, "_spectra"):
                cases["spectra"] = lambda net=net, X=X, s=spec: probe_mod._spectra(
                    net, X, s.spectra
                )
            t = compare(
                cases, rounds=3, max_total_s=1.5 if args.quick else 3.0, warmup=1
            )
            rows.append({"axis": axis, "value": v, **{k: t[k].median for k in cases}})
        print(f"scaling: {axis} done", flush=True)
    parts = [
        k
        for k in ("run_probe", "init_network", "backprop_log10_norms", "spectra")
        if k in rows[0]
    ]
    fit_rows = []
    for axis, values in axes.items():
        sub = [r for r in rows if r["axis"] == axis]
        fit_rows.append(
            [
                axis,
                ", ".join(str(v) for v in values),
                *[f"{_fit(values, [r[p] for r in sub]):.2f}" for p in parts],
                ", ".join(fmt_seconds(r["run_probe"]) for r in sub),
            ]
        )
    at_default = next(r for r in rows if r["axis"] == "depth" and r["value"] == 16)
    rest = at_default["run_probe"] - sum(at_default[p] for p in parts[1:])
    split = (
        f"At the defaults one job takes {fmt_seconds(at_default['run_probe'])}: "
        + ", ".join(f"{p} {fmt_seconds(at_default[p])}" for p in parts[1:])
        + f", the rest (theory, summaries, pandas tables) {fmt_seconds(rest)}."
    )
    defaults = {
        "depth": base.depth,
        "width": base.width,
        "networks": base.networks,
        "inputs": base.inputs,
        "spectra": base.spectra,
    }
    md = (
        "Fitted exponent p of time ~ x^p (least squares in log-log) for one probe "
        "job (`depthlab.jobs.probe.run_probe`) and its main parts, varying one axis "
        "from the defaults "
        + ", ".join(f"{k}={v}" for k, v in defaults.items())
        + " (width varies n_1 too). `spectra` is the part for the "
        f"{base.spectra} (network, input) pairs that get full spectra.\n\n"
        + markdown_table(
            ["axis", "values", *[f"p ({p})" for p in parts], "run_probe times"],
            fit_rows,
            align="ll" + "r" * len(parts) + "l",
        )
        + "\n\n"
        + split
    )
    import scale

    issue_md, issue = scale.issue_table(args)
    md += "\n\n" + issue_md
    return md, {"rows": rows, "defaults": defaults, "issue9": issue}
