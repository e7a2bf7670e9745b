"""The ``arch`` group: composition, the refusals, run names, the hash, and real
probe and training jobs of every architecture.

Configs are composed in process with ``hydra.compose`` after depthlab's own
command-line rewrite, as in test_validate.py; the probe sweep runs the CLI as a
user does (one subprocess) and reads its tables back from MLflow.
"""

from __future__ import annotations

import dataclasses
import math
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from conftest import probe_spec
from hydra import compose

from depthlab import blocks, spectra, theory
from depthlab.jobs import engine, memory, schema, validate
from depthlab.jobs.probe import ProbeSpec, run_probe
from depthlab.jobs.schema import ConfigError
from depthlab.network import init_network
from depthlab.sweep import app
from depthlab.sweep.cli import UsageError, rewrite_argv


def job(*args: str) -> dict:
    """The composed, validated job of a command line (single job)."""
    argv = rewrite_argv(list(args))
    d = app.job_dict(compose("config", overrides=[a for a in argv if a[0] != "-"]))
    validate.validate(d)
    return d


def refusal(*args: str) -> str:
    """The one-line error of a command line, or '' if it is a valid job."""
    try:
        job(*args)
    except (UsageError, ConfigError) as err:
        return str(err)
    return ""


def test_the_group_sets_every_arch_key(hydra_config, big_machine) -> None:
    assert job()["arch"] == {
        "name": "mlp",
        "norm": "none",
        "branch_scale": 1.0,
        "depth_power": 0.0,
    }
    d = job("arch=resnet", "arch.norm=layer", "arch.depth_power=0.5", "depth=19")
    assert d["arch"] == {
        "name": "resnet",
        "norm": "layer",
        "branch_scale": 1.0,
        "depth_power": 0.5,
    }
    # 16 blocks: alpha = 1 / sqrt(16); "none" is the core's None
    assert validate.architecture(d) == {
        "architecture": "resnet",
        "branch_scale": 0.25,
        "norm": "layer",
    }
    spec = ProbeSpec.from_config(d)
    assert (spec.arch, spec.norm, spec.branch_scale, spec.depth_power) == (
        "resnet",
        "layer",
        1.0,
        0.5,
    )
    assert spec.blocks == 16 and spec.alpha == 0.25
    assert validate.architecture(job("arch.norm=none"))["norm"] is None
    mlp = ProbeSpec.from_config(job("arch.branch_scale=3"))
    assert math.isnan(mlp.alpha) and mlp.network_kwargs()["branch_scale"] == 1.0


SCALE = (
    "arch.branch_scale must be a finite number in [0, 100] (alpha's numerator; "
    "beyond 100 the residual stream overflows)"
)
POWER = (
    "arch.depth_power must be a finite number in [0, 2] (0: a fixed alpha, 0.5: "
    "alpha = c / sqrt(blocks))"
)
NO_BLOCK = (
    "is not allowed with arch.name='resnet'; a resnet needs depth >= 4 (an "
    "embedding, at least one block, a readout)"
)

BAD = [
    (["arch=resnet", "depth=3"], f"depth=3 {NO_BLOCK}"),
    (["arch=resnet", "depth=2"], f"depth=2 {NO_BLOCK}"),
    (["task=train", "arch=resnet", "depth=3"], f"depth=3 {NO_BLOCK}"),
    (
        ["arch=resnet", "depth=5", "hidden_widths=[8,16,8]"],
        "hidden_widths=[8, 16, 8] is not allowed with arch.name='resnet'; its "
        "blocks need equal hidden widths n_2 = ... = n_(L-1)",
    ),
    (
        ["arch.norm=layer", "width=1"],
        "width=1 is not allowed with arch.norm='layer'; layer normalization needs "
        "hidden widths >= 2",
    ),
    (
        ["arch.norm=layer", "depth=4", "hidden_widths=[4,1]"],
        "hidden_widths=[4, 1] is not allowed with arch.norm='layer'; layer "
        "normalization needs hidden widths >= 2",
    ),
    (["arch.branch_scale=-1"], f"arch.branch_scale=-1.0 is not allowed; {SCALE}"),
    (["arch.branch_scale=nan"], f"arch.branch_scale=nan is not allowed; {SCALE}"),
    (["arch.branch_scale=inf"], f"arch.branch_scale=inf is not allowed; {SCALE}"),
    (["arch.branch_scale=1e3"], f"arch.branch_scale=1000.0 is not allowed; {SCALE}"),
    (["arch.depth_power=-0.5"], f"arch.depth_power=-0.5 is not allowed; {POWER}"),
    (["arch.depth_power=3"], f"arch.depth_power=3.0 is not allowed; {POWER}"),
    (["arch.norm=batch"], "arch.norm='batch' is not allowed; valid: none, layer"),
    (["arch.norm=None"], "arch.norm='None' is not allowed; valid: none, layer"),
    (["arch=densenet"], "arch='densenet' is not allowed; valid: mlp, resnet"),
    (["arch.name=vit"], "arch.name='vit' is not allowed; valid: mlp, resnet"),
    (
        ["arch.width=3"],
        "unknown key 'arch.width'; valid arch keys: arch.name, arch.norm, "
        "arch.branch_scale, arch.depth_power",
    ),
]


@pytest.mark.parametrize(("args", "expected"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_combinations_are_refused_with_one_line(
    hydra_config, big_machine, args: list[str], expected: str
) -> None:
    assert refusal(*args) == expected


def test_a_sweep_value_is_checked_before_hydra_composes() -> None:
    with pytest.raises(UsageError, match=r"^arch.depth_power=5.0 is not allowed"):
        rewrite_argv(["arch=mlp,resnet", "arch.depth_power=0,0.5,5"])
    argv = rewrite_argv(["arch=mlp,resnet", "arch.norm=none,layer", "depth=4..24:10"])
    assert argv == [
        "--multirun",
        "arch=mlp,resnet",
        "arch.norm=none,layer",
        "depth=range(4,25,10)",
    ]


def test_valid_edge_cases(hydra_config, big_machine) -> None:
    assert refusal("arch=resnet", "depth=4") == ""
    assert refusal("arch=resnet", "depth=5", "hidden_widths=[8,8,8]") == ""
    assert refusal("arch=resnet", "arch.branch_scale=0") == ""
    assert refusal("arch=resnet", "arch.depth_power=2") == ""
    assert refusal("arch=mlp", "depth=2", "arch.norm=layer") == ""


@pytest.mark.parametrize(
    ("args", "name"),
    [
        ([], "L=10 sigmoid gaussian sw=1 n=64"),
        (["arch.norm=layer"], "L=10 LN sigmoid gaussian sw=1 n=64"),
        (["arch=resnet"], "L=10 resnet a=1 sigmoid gaussian sw=1 n=64"),
        (
            ["arch=resnet", "arch.norm=layer", "arch.depth_power=0.5"],
            "L=10 resnet LN a=1/sqrt sigmoid gaussian sw=1 n=64",
        ),
        (
            ["arch=resnet", "arch.branch_scale=0.5"],
            "L=10 resnet a=0.5 sigmoid gaussian sw=1 n=64",
        ),
        (
            ["arch=resnet", "arch.branch_scale=2", "arch.depth_power=1"],
            "L=10 resnet a=2/L^1 sigmoid gaussian sw=1 n=64",
        ),
        (
            ["task=train", "arch=resnet", "arch.depth_power=0.5"],
            "digits L=10 resnet a=1/sqrt sigmoid gaussian sw=1 n=64",
        ),
    ],
)
def test_run_names_show_the_architecture(
    hydra_config, big_machine, args: list[str], name: str
) -> None:
    assert app.run_name(job(*args)) == name


def test_the_hash_includes_the_arch_keys_and_keeps_old_mlp_hashes(
    hydra_config, big_machine
) -> None:
    base = schema.config_hash(job())
    assert base == "8d91cd6e7bf5fd58", "an MLP without LN keeps its old hash"
    assert schema.config_hash(job("arch=mlp", "arch.norm=none")) == base
    others = [
        ("arch=resnet",),
        ("arch.norm=layer",),
        ("arch.branch_scale=0.5",),
        ("arch.depth_power=0.5",),
        ("arch=resnet", "arch.depth_power=0.5"),
        ("arch=resnet", "arch.norm=layer"),
    ]
    hashes = {schema.config_hash(job(*a)) for a in others}
    assert len(hashes) == len(others) and base not in hashes


def test_the_probe_passes_the_architecture_to_networks_and_theory() -> None:
    spec = probe_spec(
        depth=9, arch="resnet", norm="layer", branch_scale=2.0, depth_power=0.5
    )
    chunk = engine.make_chunk(spec, range(spec.networks))
    net = chunk.net
    assert (net.architecture, net.norm) == ("resnet", "layer")
    assert net.branch_scale == pytest.approx(2.0 / math.sqrt(6))
    result = run_probe(spec)
    expected = theory.predict_from_q1(
        float(np.mean(chunk.X**2)),
        spec.widths,
        activation="tanh",
        sigma_w=spec.sigma_w,
        sigma_b=spec.sigma_b,
        architecture="resnet",
        branch_scale=2.0 / math.sqrt(6),
        norm="layer",
    )
    table = result.theory.set_index("layer")
    np.testing.assert_allclose(table.loc[2:, "chi"], expected.chi, rtol=1e-12)
    assert result.summary["alpha"] == pytest.approx(2.0 / math.sqrt(6))
    # J^[l] of every layer against the architecture's own SVD of J^[l] =
    # I + alpha W D J_LN (depthlab.blocks.jacobian); pairs are networks 0..4
    # at input 0.
    reference = spectra.layer_singular_values(net, chunk.X)
    layers = result.layers.dropna(subset=["sv_max"])
    for (k, layer), row in layers.set_index(["net", "layer"]).iterrows():
        sv = reference[layer - 2][k, 0]
        assert row["sv_max"] == pytest.approx(sv[0], rel=1e-10)
        assert row["sv_min"] == pytest.approx(sv[-1], rel=1e-10)


def test_block_singular_values_cluster_around_one_for_a_small_alpha() -> None:
    """J^[l] = I + alpha W D: every singular value within alpha ||W D|| of 1."""
    net = init_network(
        [8, 64, 64, 64, 1],
        activation="relu",
        init="he_normal",
        sigma_w=math.sqrt(2),
        sigma_b=0.0,
        rng=np.random.default_rng(1),
        architecture="resnet",
        branch_scale=0.05,
    )
    X = np.random.default_rng(2).standard_normal((3, 8))
    fp = net.forward(X)
    for i in (1, 2):  # the blocks, layers 3 and 4
        sv = engine.layer_spectra(net, X, [i + 2])[0]
        wd_rows = net.weights[i] * blocks.derivative(net, fp, i)[:, None, :]
        wd = np.linalg.norm(wd_rows, ord=2, axis=(1, 2))
        assert np.all(np.abs(sv - 1) <= 0.05 * wd[:, None] + 1e-12)
        assert np.all(np.abs(sv - 1) < 0.2)


@pytest.mark.parametrize(
    "shape",
    [
        {"depth": 120, "width": 64, "input_dim": 64, "inputs": 16},
        {"depth": 1000, "width": 32, "input_dim": 32, "inputs": 8},
    ],
)
@pytest.mark.parametrize(
    ("arch", "norm"),
    [("mlp", "none"), ("mlp", "layer"), ("resnet", "none"), ("resnet", "layer")],
)
def test_the_memory_estimate_bounds_every_architecture(
    arch: str, norm: str, shape: dict[str, int]
) -> None:
    """tracemalloc's peak of one network's measurement (weights aside) is at
    most the model's estimate, and at least 90% of it: the plain MLP's kernels
    keep two arrays a layer, the other architectures' lean forward pass one."""
    spec = probe_spec(**shape, arch=arch, norm=norm, networks=1, spectra=0)
    chunk = engine.make_chunk(spec, [0])
    engine.measure_chunk(chunk, spec)  # first-call allocations
    tracemalloc.start()
    engine.measure_chunk(chunk, spec)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    weights = sum(
        w.nbytes + b.nbytes
        for w, b in zip(chunk.net.weights, chunk.net.biases, strict=True)
    )
    estimate = memory.network_bytes(engine.job_shape(spec)) - weights
    assert 0.9 * estimate <= peak <= estimate, (shape, peak, estimate)


def test_a_resnet_trains(big_machine) -> None:
    from depthlab.jobs.train import run_training_job

    d = schema.defaults()
    d.update(task="train", depth=8, width=16, activation="relu")
    d["init"].update(name="he_normal", sigma_w=math.sqrt(2))
    d["arch"].update(name="resnet", norm="layer", depth_power=0.5)
    d["train"].update(dataset="two_spirals", steps=150, eval_every=50, seeds=2)
    d["train"].update(learning_rate=0.01)
    validate.validate(d)
    record, _ = run_training_job(
        d, rng=np.random.default_rng(0), run_name="t", config_hash="h"
    )
    curves = record.tables["curves"]
    assert {"arch", "norm", "branch_scale", "depth_power"} <= set(curves)
    assert set(curves["arch"]) == {"resnet"} and set(curves["norm"]) == {"layer"}
    assert record.summary["alpha"] == pytest.approx(1 / math.sqrt(5))
    assert record.params["arch"] == "resnet" and record.params["depth_power"] == 0.5
    first = curves[curves.step == 0].train_loss.to_numpy()
    last = curves[curves.step == curves.step.max()].train_loss.to_numpy()
    assert np.all(last < 0.8 * first), (first, last)
    assert record.summary["diverged_fraction"] == 0.0


def test_a_probe_sweep_over_architectures_lands_in_mlflow(tmp_path: Path) -> None:
    """The sweep of the issue, tiny: its runs, tables and report."""
    from depthlab import tracking
    from depthlab.report import data as report_data
    from depthlab.report.figures import draw_all

    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    out = subprocess.run(
        [sys.executable, "-m", "depthlab", "arch=mlp,resnet", "arch.norm=none,layer",
         "arch.depth_power=0,0.5", "depth=4..5", "width=8", "input_dim=4",
         "probe.networks=2", "probe.inputs=2", "probe.spectra=1", "report=false",
         f"tracking.uri={tmp_path}", f"hydra.sweep.dir={tmp_path / 'sweep'}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    uri = tracking.resolve_uri(str(tmp_path))
    sweep = tracking.load_sweep(uri, tracking.latest_sweep_id(uri, "depthlab"))
    runs = sweep.runs
    assert len(runs) == 16 and set(runs["status"]) == {"FINISHED"}
    assert set(zip(runs["params.arch"], runs["params.norm"], strict=True)) == {
        ("mlp", "none"),
        ("mlp", "layer"),
        ("resnet", "none"),
        ("resnet", "layer"),
    }
    assert "L=5 resnet LN a=1 sigmoid gaussian sw=1 n=8" in set(runs["run_name"])
    assert "L=5 resnet LN a=1/sqrt sigmoid gaussian sw=1 n=8" in set(runs["run_name"])
    n = len(schema.CONFIG_COLUMNS)
    for name in ("samples", "layers", "theory", "per_layer"):
        table = sweep.tables[name]
        assert tuple(table.columns[:n]) == schema.CONFIG_COLUMNS, name
        assert set(table["arch"]) == {"mlp", "resnet"}
        assert set(table["norm"]) == {"none", "layer"}
    resnet = runs["params.arch"] == "resnet"
    power = runs["params.depth_power"].astype(float)
    blocks = runs["params.depth"].astype(int) - 3
    np.testing.assert_allclose(
        runs.loc[resnet, "alpha"], blocks[resnet] ** -power[resnet]
    )
    assert runs.loc[~resnet, "alpha"].isna().all()

    # The report: the architecture is the colour, LN the panel; the MLP runs
    # of depth_power 0 and 0.5 computed the same and are drawn once.
    data = report_data.prepare(sweep)
    assert data.hue_keys == ["arch"] and data.facet_keys == ["norm"]
    assert data.hue_order == ["mlp", "resnet a=1", "resnet a=1/sqrt"]
    assert data.facet_order == ["norm=layer", "norm=none"]
    assert len(data.summary) == 12
    assert data.summary.groupby(["hue", "facet", "depth"]).size().max() == 1
    drawn = {d.name: d for d in draw_all(data)}
    for name in ("grad_norm_vs_depth", "backprop_profile", "layer_singular_values",
                 "jacobian_spectrum"):  # fmt: skip
        assert drawn[name].png, (name, drawn[name].reason)


def _training_sweep(configs: list[dict]):
    """A Sweep (as load_sweep returns it) of tiny training jobs, one per config."""
    import pandas as pd

    from depthlab import tracking
    from depthlab.jobs.train import run_training_job

    rows, finals, curves = [], [], []
    for i, arch in enumerate(configs):
        d = schema.defaults()
        d.update(task="train", depth=5, width=4)
        d["arch"].update(arch)
        d["train"].update(dataset="higham_example", steps=4, eval_every=2, seeds=2)
        record, _ = run_training_job(
            d, rng=np.random.default_rng(0), run_name="t", config_hash="h"
        )
        run_id = f"run{i}"
        rows.append(
            {
                "run_id": run_id,
                "status": "FINISHED",
                **{f"params.{k}": str(v) for k, v in record.params.items()},
                **record.summary,
            }
        )
        finals.append(record.tables["final"].assign(run_id=run_id))
        curves.append(record.tables["curves"].assign(run_id=run_id))
    return tracking.Sweep(
        "p",
        "sweep",
        pd.DataFrame(rows),
        {"final": pd.concat(finals), "curves": pd.concat(curves)},
    )


def test_the_training_report_tells_architectures_apart() -> None:
    from depthlab.report.training import prepare_training

    sweep = _training_sweep(
        [
            {"name": "mlp", "depth_power": 0.0},
            {"name": "mlp", "depth_power": 0.5},  # the same computation
            {"name": "resnet", "depth_power": 0.5},
            {"name": "resnet", "norm": "layer", "depth_power": 0.5},
        ]
    )
    data = prepare_training(sweep)
    assert data.config_keys == ["arch", "norm"]
    assert data.configs == [
        "mlp, norm=none",
        "resnet a=1/sqrt, norm=layer",
        "resnet a=1/sqrt, norm=none",
    ]
    assert len(data.runs) == 3 and len(data.final) == 3 * 2  # runs x seeds
    assert "steps" in data.final and "steps_x" not in data.final
    assert len(data.where(arch="resnet a=1/sqrt").runs) == 2

    # a store from before the arch keys: every run is an MLP without LN
    old = sweep.tables["final"].drop(
        columns=["arch", "norm", "branch_scale", "depth_power"]
    )
    runs = sweep.runs.drop(
        columns=[
            c
            for c in sweep.runs
            if c.split(".")[-1] in ("arch", "norm", "branch_scale", "depth_power")
        ]
    ).iloc[:1]
    first = old[old.run_id == "run0"]
    curves = sweep.tables["curves"]
    legacy = dataclasses.replace(
        sweep,
        runs=runs,
        tables={"final": first, "curves": curves[curves.run_id == "run0"]},
    )
    data = prepare_training(legacy)
    assert data.fixed["arch"] == "mlp" and data.fixed["norm"] == "none"
