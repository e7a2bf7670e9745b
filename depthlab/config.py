"""The typed configuration of a depthlab job, and its validation.

The dataclasses here are the schema that :mod:`depthlab.app` registers with
Hydra's ConfigStore, so that ``depth`` is an int, ``init.sigma_w`` a float, and so
on. :func:`validate` checks the values once, at the edge, and raises
:class:`ConfigError` with a one-line message naming the bad value and the valid
ones. Nothing in this module imports Hydra.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from depthlab.activations import ACTIVATION_NAMES
from depthlab.initializers import INITIALIZER_NAMES

INPUT_DISTRIBUTIONS = ("sphere", "gaussian", "uniform")
"""``sphere``: uniform on the sphere of radius sqrt(n_1), so ||x||^2/n_1 = 1 exactly;
``gaussian``: N(0, I); ``uniform``: U[0, 1]^{n_1} (like the paper's unit square)."""

DTYPE_NAMES = ("float64", "float32")
TASKS = ("probe", "train")

# Keys that say where and how a job runs, not what it computes: they are left
# out of the config hash that identifies a job for resuming.
NON_SEMANTIC_KEYS = ("tracking", "force", "report", "hydra", "n_jobs")


class ConfigError(ValueError):
    """A configuration value is not allowed; the message is one line."""


@dataclass
class InitConfig:
    """``init`` group: the scheme and its scales (standard deviations)."""

    name: str = "gaussian"
    sigma_w: float = 1.0
    sigma_b: float = 0.0


@dataclass
class ProbeConfig:
    """``probe``: how many networks and inputs a job samples."""

    networks: int = 64
    inputs: int = 8
    input_distribution: str = "sphere"
    spectra: int = 4
    """(network, input) pairs that get full per-layer and J^(l) spectra."""


@dataclass
class TrackingConfig:
    """``tracking``: where runs go. ``uri`` null means ``sqlite:///<cwd>/mlflow.db``."""

    uri: str | None = None
    experiment: str = "depthlab"
    parent_run_id: str | None = None
    """Set by the sweeper for every job; not for users."""
    jobs_total: int = 1
    """Set by the sweeper: how many jobs the sweep has."""
    job_index: int = 0
    """Set by the sweeper: this job's place in the sweep (0-based)."""


@dataclass
class TrainConfig:
    """``train``: training studies (``task=train``)."""

    dataset: str = "digits"
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    momentum: float = 0.9
    batch_size: int = 64
    steps: int = 2000
    eval_every: int = 100
    seeds: int = 3
    cost: str = "cross_entropy"


@dataclass
class Config:
    """The whole job configuration (see ``python -m depthlab --help``)."""

    task: str = "probe"
    depth: int = 10
    width: int = 64
    hidden_widths: list[int] | None = None
    """n_2..n_{L-1} one by one (e.g. [2, 3]); overrides ``width``; needs depth =
    len(hidden_widths) + 2."""
    input_dim: int = 64
    output_dim: int = 1
    activation: str = "sigmoid"
    output_activation: str | None = None
    init: InitConfig = field(default_factory=InitConfig)
    dtype: str = "float64"
    seed: int = 0
    force: bool = False
    report: bool = True
    n_jobs: int | None = None
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)


def _one_of(key: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(
            f"{key}={value!r} is not allowed; valid: {', '.join(allowed)}"
        )


def _at_least(key: str, value: Any, minimum: float, what: str) -> None:
    if value is None or value < minimum:
        raise ConfigError(f"{key}={value!r} is not allowed; {key} must be {what}")


def validate(cfg: dict[str, Any]) -> None:
    """Check a job configuration (as a plain nested dict).

    Raises
    ------
    ConfigError
        On the first bad value, with a one-line message naming it.
    """
    _one_of("task", cfg["task"], TASKS)
    _at_least(
        "depth", cfg["depth"], 2, "an integer >= 2 (depth counts the input layer)"
    )
    _at_least("width", cfg["width"], 1, "a positive integer")
    hidden = cfg.get("hidden_widths")
    if hidden is not None:
        if any(n is None or n < 1 for n in hidden):
            raise ConfigError(
                f"hidden_widths={hidden} is not allowed; each must be >= 1"
            )
        if len(hidden) + 2 != cfg["depth"]:
            raise ConfigError(
                f"depth={cfg['depth']} does not match hidden_widths={hidden}; "
                f"depth must be {len(hidden) + 2}"
            )
    _at_least("input_dim", cfg["input_dim"], 1, "a positive integer")
    _at_least("output_dim", cfg["output_dim"], 1, "a positive integer")
    _one_of("activation", cfg["activation"], ACTIVATION_NAMES)
    if cfg["output_activation"] is not None:
        _one_of("output_activation", cfg["output_activation"], ACTIVATION_NAMES)
    init = cfg["init"]
    _one_of("init.name", init["name"], INITIALIZER_NAMES)
    _at_least("init.sigma_w", init["sigma_w"], 0.0, ">= 0 (a standard deviation)")
    _at_least("init.sigma_b", init["sigma_b"], 0.0, ">= 0 (a standard deviation)")
    _one_of("dtype", cfg["dtype"], DTYPE_NAMES)
    _at_least("seed", cfg["seed"], 0, "a non-negative integer")
    probe = cfg["probe"]
    _at_least("probe.networks", probe["networks"], 1, "a positive integer")
    _at_least("probe.inputs", probe["inputs"], 1, "a positive integer")
    _at_least("probe.spectra", probe["spectra"], 0, "a non-negative integer")
    _one_of(
        "probe.input_distribution", probe["input_distribution"], INPUT_DISTRIBUTIONS
    )
    if cfg["task"] == "train":
        validate_train(cfg["train"])
        out = cfg["output_activation"]
        if cfg["train"]["cost"] == "cross_entropy" and out not in (None, "linear"):
            raise ConfigError(
                f"output_activation={out!r} is not allowed with train.cost="
                f"cross_entropy (the outputs are logits); use linear or null"
            )


def validate_train(train: dict[str, Any]) -> None:
    """Check the ``train`` section (only for ``task=train``)."""
    from depthlab.datasets import DATASET_NAMES
    from depthlab.gradient import COSTS
    from depthlab.training import OPTIMIZERS

    _one_of("train.dataset", train["dataset"], tuple(DATASET_NAMES))
    _one_of("train.optimizer", train["optimizer"], tuple(OPTIMIZERS))
    _one_of("train.cost", train["cost"], COSTS)
    if train["learning_rate"] is None or train["learning_rate"] <= 0:
        raise ConfigError(
            f"train.learning_rate={train['learning_rate']!r} is not allowed; "
            f"it must be > 0"
        )
    _at_least("train.batch_size", train["batch_size"], 1, "a positive integer")
    _at_least("train.steps", train["steps"], 1, "a positive integer")
    _at_least("train.eval_every", train["eval_every"], 1, "a positive integer")
    _at_least("train.seeds", train["seeds"], 1, "a positive integer")


def config_hash(cfg: dict[str, Any]) -> str:
    """A stable hash of what a job computes (tracking, force, report left out).

    Two jobs with the same hash produce the same numbers; a sweep that is run
    again skips every job whose hash already has a FINISHED run.
    """
    semantic = {k: v for k, v in cfg.items() if k not in NON_SEMANTIC_KEYS}
    if semantic.get("task") != "train":
        semantic.pop("train", None)
    text = json.dumps(semantic, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def flatten(cfg: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"init": {"sigma_w": 1.0}}`` -> ``{"init.sigma_w": 1.0}``."""
    flat: dict[str, Any] = {}
    for key, value in cfg.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _field_type(key: str) -> Any:
    """The annotated type of a dotted key of :class:`Config`, or None if unknown."""
    import dataclasses
    import typing

    node: Any = Config
    hints: Any = None
    for part in key.split("."):
        if not dataclasses.is_dataclass(node):
            return None
        hints = typing.get_type_hints(node)
        if part not in hints:
            return None
        node = hints[part]
    return node


def check_cli_value(key: str, raw: str) -> None:
    """Check one command-line value against the schema's type, before Hydra runs.

    Sweep expressions (``range(...)``, ``glob(...)``, ...) are left to Hydra; a
    comma list is checked element by element. Unknown keys and values of the
    wrong type raise :class:`ConfigError` with a one-line message.
    """
    import types
    import typing

    if key.startswith(("hydra", "+", "~")) or "(" in raw:
        return
    kind = _field_type(key)
    if kind is None:
        top = [f.name for f in __import__("dataclasses").fields(Config)]
        raise ConfigError(
            f"unknown key {key!r}; valid top-level keys: {', '.join(top)}"
        )
    optional = False
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        optional = len(args) < len(typing.get_args(kind))
        kind = args[0]
    if kind not in (int, float, bool):
        return
    for value in raw.split(","):
        value = value.strip()
        if optional and value == "null":
            continue
        try:
            if kind is bool:
                if value.lower() not in ("true", "false"):
                    raise ValueError
            elif kind is int:
                int(value)
            else:
                float(value)
        except ValueError:
            raise ConfigError(
                f"{key}={value!r} is not allowed; {key} must be of type {kind.__name__}"
            ) from None
