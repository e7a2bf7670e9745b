"""The script a researcher would write instead of depthlab: the baseline.

A stock Hydra app, run as a multirun over the depth::

    python experiments/benchmark/researcher.py -m 'depth=range(2,51)'

Each job opens one MLflow run (SQLite store ``mlflow.db`` in the working
directory) with its params, samples 64 networks of depthlab's default
architecture (width 64, 64 inputs, one output, sigmoid everywhere, Gaussian
weights of variance 1/n_{l-1}, zero biases), takes the input gradient of 8
inputs on the sphere ||x||^2 = n_1 with torch autograd, and logs two summary
metrics (the median and the RMS of the gradient norm) and one per-layer metric
(the median backprop norm ||d a^[L] / d a^[l]||, step = layer). No spectra, no
theory, no resume, no report: what depthlab does on top of this is its cost.
It uses Hydra's basic launcher and torch's default threads, as written.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import hydra
import mlflow
import torch
from hydra.core.config_store import ConfigStore


@dataclass
class Config:
    depth: int = 10
    width: int = 64
    input_dim: int = 64
    networks: int = 64
    inputs: int = 8
    sigma_w: float = 1.0
    seed: int = 0


ConfigStore.instance().store(name="config", node=Config)


@hydra.main(version_base="1.3", config_name="config")
def main(cfg: Config) -> float:
    torch.manual_seed(cfg.seed)
    k, b = cfg.networks, cfg.inputs
    widths = [cfg.input_dim] + [cfg.width] * (cfg.depth - 2) + [1]
    x = torch.randn(k, b, cfg.input_dim, dtype=torch.float64)
    x = x / x.norm(dim=-1, keepdim=True) * cfg.input_dim**0.5
    x.requires_grad_(True)
    a, activations = x, [x]
    for n_in, n_out in itertools.pairwise(widths):
        w = torch.randn(k, n_in, n_out, dtype=torch.float64) * cfg.sigma_w / n_in**0.5
        a = torch.sigmoid(a @ w)
        a.retain_grad()
        activations.append(a)
    a.sum().backward()  # each output depends on its own input only
    grad_norm = x.grad.norm(dim=-1)
    backprop = [act.grad.norm(dim=-1).median().item() for act in activations[:-1]]

    mlflow.set_tracking_uri("sqlite:///mlflow.db")
    mlflow.set_experiment("researcher")
    with mlflow.start_run(run_name=f"L={cfg.depth}"):
        mlflow.log_params(dict(cfg))
        mlflow.log_metric("grad_norm_median", grad_norm.median().item())
        mlflow.log_metric("grad_norm_rms", grad_norm.square().mean().sqrt().item())
        for layer, value in enumerate(backprop, start=1):
            mlflow.log_metric("backprop_norm_median", value, step=layer)
    return grad_norm.median().item()


if __name__ == "__main__":
    main()
