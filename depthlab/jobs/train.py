"""One training job (``task=train``): a configuration in, a tracked record out.

A job trains ``train.seeds`` networks of one depth at once (a stack), on one
dataset, for a fixed budget of steps, and records next to the learning curves the
gradient statistics of the same networks at initialization, so that gradient
health at initialization can be set against trainability.

The network is the config's architecture (``arch.*``, see
:func:`depthlab.jobs.validate.architecture`); a resnet's alpha is in the
summary.

Conventions: the network's input and output sizes come from the dataset (the
``input_dim`` and ``output_dim`` keys are ignored for training and logged as the
dataset's); with ``train.cost=cross_entropy`` the output layer gives logits, so
``output_activation`` is ``linear`` (an explicit non-linear output with
cross-entropy is refused by :func:`depthlab.jobs.validate.check_rules`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from depthlab.datasets import Dataset, load_dataset
from depthlab.gradient import backprop_log10_norms
from depthlab.initializers import effective_sigma_w
from depthlab.jobs import schema
from depthlab.jobs.validate import architecture
from depthlab.jobs.validate import output_activation as training_output_activation
from depthlab.network import init_network
from depthlab.training import train

CURVE_METRICS = ("train_loss", "test_loss", "train_accuracy", "test_accuracy")


def training_widths(d: dict[str, Any], data: Dataset) -> list[int]:
    """``[n_1, ..., n_L]`` from the dataset's sizes and the hidden widths."""
    hidden = d.get("hidden_widths")
    if hidden:
        return [data.input_dim, *hidden, data.output_dim]
    return [data.input_dim] + [d["width"]] * (d["depth"] - 2) + [data.output_dim]


def _dataset(d: dict[str, Any], rng: np.random.Generator) -> Dataset:
    # The data is drawn from its own stream, so that every depth of a sweep with
    # the same seed sees the same data.
    data_rng = np.random.default_rng([d["seed"], 1])
    del rng
    return load_dataset(d["train"]["dataset"], rng=data_rng)


def _init_gradient_stats(net: Any, X: np.ndarray) -> dict[str, float]:
    """Input-gradient statistics of the initial networks on training inputs."""
    x = X[: min(len(X), 256)]
    logs = backprop_log10_norms(net, x)  # (K, B, L-1)
    g = logs[..., 0].ravel()
    finite = g[np.isfinite(g)]
    stats = {
        "init_grad_log10_norm_median": float(np.median(g)),
        "init_grad_log10_norm_std": float(np.std(finite)) if finite.size else math.nan,
    }
    if logs.shape[-1] > 1:
        mean_log = np.mean(logs.reshape(-1, logs.shape[-1]), axis=0)
        steps = logs.shape[-1] - 1
        stats["init_typical_factor"] = float(
            10 ** (2 * (mean_log[0] - mean_log[-1]) / steps)
        )
    return stats


def _train(
    net: Any, data: Dataset, t: dict[str, Any], rng: np.random.Generator, progress: Any
) -> Any:
    return train(
        net,
        data,
        num_steps=t["steps"],
        learning_rate=t["learning_rate"],
        batch_size=t["batch_size"],
        rng=rng,
        optimizer=t["optimizer"],
        momentum=t["momentum"] if t["optimizer"] == "sgd" else 0.0,
        cost=t["cost"],
        eval_every=t["eval_every"],
        callback=progress,
    )


def run_training_job(
    d: dict[str, Any], *, rng: np.random.Generator, run_name: str, config_hash: str
) -> tuple[Any, str]:
    """Train ``train.seeds`` networks of one configuration; return its record.

    Returns
    -------
    record : depthlab.tracking.JobRecord
        Params, summary metrics, learning curves (metrics with step = training
        step: the mean over seeds that have not diverged) and tables.
    line : str
        The one-line result printed by the sweep.
    """
    from depthlab import theory
    from depthlab.tracking import JobRecord

    t = d["train"]
    data = _dataset(d, rng)
    output_activation = training_output_activation(d)
    widths = training_widths(d, data)
    net = init_network(
        widths,
        activation=d["activation"],
        output_activation=output_activation,
        init=d["init"]["name"],
        sigma_w=float(d["init"]["sigma_w"]),
        sigma_b=float(d["init"]["sigma_b"]),
        dtype=d["dtype"],
        rng=rng,
        num_networks=t["seeds"],
        **architecture(d),
    )
    summary: dict[str, float] = _init_gradient_stats(net, data.X_train)
    summary["alpha"] = net.branch_scale if net.architecture == "resnet" else math.nan
    last_report = [-1]

    def progress(evaluation: Any) -> None:
        quarter = 4 * evaluation.step // max(evaluation.num_steps, 1)
        if quarter > last_report[0] and evaluation.step:
            last_report[0] = quarter
            loss = (
                np.nanmean(evaluation.test_loss)
                if not np.all(np.isnan(evaluation.test_loss))
                else math.nan
            )
            print(
                f"    {run_name}: step {evaluation.step}/{evaluation.num_steps} "
                f"test loss {loss:.4g}",
                flush=True,
            )

    # One BLAS thread: a training step is many small products, for which
    # threads cost more than they give (measured 2.2x slower with 2 threads on
    # digits, width 64, depth 16), and parallel sweeps use the cores already.
    with threadpool_limits(limits=1):
        result = _train(net, data, t, rng, progress)
    final = result.final()
    ok = ~final["diverged"].to_numpy()
    for metric in CURVE_METRICS:
        values = final[metric].to_numpy(dtype=float)[ok]
        summary[f"final_{metric}_mean"] = (
            float(np.mean(values)) if values.size else math.nan
        )
        summary[f"final_{metric}_std"] = (
            float(np.std(values)) if values.size else math.nan
        )
        summary[f"final_{metric}_median"] = (
            float(np.median(values)) if values.size else math.nan
        )
    summary["diverged_fraction"] = float(np.mean(~ok))
    train_acc = final["train_accuracy"].to_numpy(dtype=float)
    # Seeds that classify every training point (the paper's example asks this).
    summary["seeds_all_train_correct"] = float(np.mean(train_acc == 1.0))
    hidden_sw = effective_sigma_w(
        d["init"]["name"], d["width"], d["width"], float(d["init"]["sigma_w"])
    )
    for name, fn in (("theory_chi1", theory.chi1),):
        try:
            summary[name] = float(
                fn(d["activation"], hidden_sw, float(d["init"]["sigma_b"]))
            )
        except (ValueError, ArithmeticError):
            pass
    try:
        _, xi_c = theory.depth_scales(
            d["activation"], hidden_sw, float(d["init"]["sigma_b"])
        )
        summary["theory_xi_c"] = float(xi_c)
    except (ValueError, ArithmeticError):
        pass
    summary["beta"] = float(sum(1.0 / n for n in widths[1:-1]))

    curves = result.curves()
    extra: list[tuple[str, float, int]] = []
    mean_curves = curves.groupby("step")[list(CURVE_METRICS)].mean()
    for step, row in mean_curves.iterrows():
        for metric in CURVE_METRICS:
            extra.append((metric, float(row[metric]), int(step)))

    cfg_cols = {
        c: schema.get(d, schema.BY_COLUMN[c].key) for c in schema.TRAIN_CONFIG_COLUMNS
    }
    cfg_cols["depth"] = len(widths)
    cfg_cols["momentum"] = t["momentum"] if t["optimizer"] == "sgd" else 0.0
    tables = {"curves": curves, "final": final.astype({"diverged_at_step": "float64"})}
    for table in tables.values():
        for key, value in reversed(cfg_cols.items()):
            table.insert(0, key, value)
    params = {
        **schema.job_params(d),
        "input_dim": widths[0],
        "output_dim": widths[-1],
        "output_activation": output_activation,
    }
    record = JobRecord(
        run_name=run_name,
        params=params,
        config_hash=config_hash,
        summary=summary,
        per_layer=None,
        tables=tables,
        config_yaml="",
        extra_metrics=extra,
    )
    acc = summary["final_test_accuracy_mean"]
    line = (
        f"test loss {summary['final_test_loss_mean']:.4g} "
        f"(median {summary['final_test_loss_median']:.3g})  "
        f"test acc {acc:.3f}  diverged {summary['diverged_fraction']:.0%}  "
        f"init |grad| 10^{summary['init_grad_log10_norm_median']:.1f}"
    )
    return record, line
