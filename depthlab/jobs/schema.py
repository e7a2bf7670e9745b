"""Every configuration key of a depthlab job, declared once.

Each :class:`Key` names its dotted Hydra key (``init.sigma_w``, as typed on the
command line), its type, default and constraint, and its *column*: the one name
(``sigma_w``) that the key has as an MLflow param, as a column of the tidy
tables and as a plot label. Everything else is derived from :data:`KEYS`:

- the structured config that Hydra types the YAML with
  (:func:`structured_config`, used by :mod:`depthlab.jobs.config`),
- the lists other modules use (:data:`CONFIG_COLUMNS` of the probe tables,
  :data:`TRAIN_CONFIG_COLUMNS` of the training tables, :data:`PARAM_OF`,
  :data:`NUMERIC_KEYS`, :data:`CATEGORICAL_KEYS`, :data:`RUN_NAME_KEYS`),
- the MLflow params of a job (:func:`job_params`) and the resume hash
  (:func:`config_hash`),
- the checks of :mod:`depthlab.jobs.validate` (the constraint vocabulary below, the
  idea of scikit-learn's ``_parameter_constraints``).

Adding a key means one :class:`Key` here, its line in ``conf/config.yaml`` and
the code that uses its value. This module imports neither Hydra nor MLflow.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field, make_dataclass
from typing import Any

from depthlab import backend
from depthlab.activations import ACTIVATION_NAMES
from depthlab.datasets import DATASET_NAMES
from depthlab.gradient import COSTS
from depthlab.initializers import INITIALIZER_NAMES
from depthlab.network import ARCHITECTURES
from depthlab.training import OPTIMIZERS


class ConfigError(ValueError):
    """A configuration value is not allowed; the message is one line."""


# ---------------------------------------------------------------------------
# The constraint vocabulary


class Constraint:
    """A set of allowed values; ``describe()`` says which, for messages."""

    def is_satisfied_by(self, value: Any) -> bool:
        """True if ``value`` (already of the key's type) is allowed."""
        raise NotImplementedError

    def describe(self) -> str:
        """What is allowed, e.g. ``an integer >= 1``."""
        raise NotImplementedError


@dataclass(frozen=True)
class Interval(Constraint):
    """Numbers between ``left`` and ``right`` (None: unbounded); always finite.

    ``closed`` is ``"both"``, ``"left"``, ``"right"`` or ``"neither"``; ``why``
    is said after the range (e.g. where a bound comes from).

    Examples
    --------
    >>> Interval(float, 0, 100, closed="both").describe()
    'a finite number in [0, 100]'
    >>> Interval(int, 1, None).is_satisfied_by(0)
    False
    """

    kind: type
    left: float | None
    right: float | None
    closed: str = "both"
    why: str = ""

    def is_satisfied_by(self, value: Any) -> bool:
        if isinstance(value, float) and not math.isfinite(value):
            return False
        left_ok = self.left is None or (
            value >= self.left if self.closed in ("both", "left") else value > self.left
        )
        right_ok = self.right is None or (
            value <= self.right
            if self.closed in ("both", "right")
            else value < self.right
        )
        return left_ok and right_ok

    def describe(self) -> str:
        noun = "an integer" if self.kind is int else "a finite number"
        lo_in = self.closed in ("both", "left")
        hi_in = self.closed in ("both", "right")
        lo, hi = _bound(self.left), _bound(self.right)
        if self.right is None:
            text = f"{noun} {'>=' if lo_in else '>'} {lo}"
        elif self.left is None:
            text = f"{noun} {'<=' if hi_in else '<'} {hi}"
        else:
            text = f"{noun} in {'[' if lo_in else '('}{lo}, {hi}{']' if hi_in else ')'}"
        return f"{text} ({self.why})" if self.why else text


def _bound(x: float | None) -> str:
    return str(x) if isinstance(x, int | None) else f"{x:g}"


@dataclass(frozen=True)
class Options(Constraint):
    """One of a fixed set of names (in the order they are listed)."""

    names: tuple[str, ...]

    def is_satisfied_by(self, value: Any) -> bool:
        return value in self.names

    def describe(self) -> str:
        return f"valid: {', '.join(self.names)}"


@dataclass(frozen=True)
class NonEmpty(Constraint):
    """A non-empty string."""

    def is_satisfied_by(self, value: Any) -> bool:
        return bool(str(value).strip())

    def describe(self) -> str:
        return "a non-empty name"


@dataclass(frozen=True)
class TrackingURI(Constraint):
    """A store depthlab can create and check before a sweep starts.

    A path without a scheme is a directory (its ``mlflow.db``); ``sqlite:///``
    is a SQLite file; ``http://`` and ``https://`` an MLflow tracking server.
    MLflow's deprecated file store, its other databases (no driver is installed)
    and Databricks are not: depthlab cannot check them before the runs start.
    """

    schemes: tuple[str, ...] = ("sqlite:///", "http://", "https://")

    def is_satisfied_by(self, value: Any) -> bool:
        text = str(value)
        if "://" not in text and not text.startswith("sqlite:"):
            return bool(text.strip())
        return text.startswith(self.schemes) and len(text) > len(
            next(s for s in self.schemes if text.startswith(s))
        )

    def describe(self) -> str:
        return (
            "allowed: a directory path (its mlflow.db), sqlite:///FILE, "
            "http://HOST:PORT or https://HOST (an MLflow server)"
        )


@dataclass(frozen=True)
class Each(Constraint):
    """Every element of a list satisfies ``inner``."""

    inner: Constraint

    def is_satisfied_by(self, value: Any) -> bool:
        return all(self.inner.is_satisfied_by(v) for v in value)

    def describe(self) -> str:
        return f"a list, each {self.inner.describe()}"


@dataclass(frozen=True)
class Usable(Constraint):
    """A backend of :mod:`depthlab.backend` that this Python can use (its
    library is installed)."""

    def is_satisfied_by(self, value: Any) -> bool:
        return backend.unavailable(value) is None

    def describe(self) -> str:
        why = [backend.unavailable(name) for name in backend.BACKENDS]
        missing = [text for text in why if text is not None]
        note = f" ({'; '.join(missing)})" if missing else ""
        return f"one of {', '.join(backend.BACKENDS)}{note}"


# ---------------------------------------------------------------------------
# The keys

SCALE_LIMIT = 100.0
"""The largest sigma_w and sigma_b: a forward pass of a linear or ReLU network
grows like sigma_w^(L-1), which leaves float64 (10^308) near L = 150 at 100
(float32, 10^38, near L = 20), and the theory's Gaussian integrals overflow for
scales of about 10^10. The depth studies live at scales of order 1."""


@dataclass(frozen=True)
class Key:
    """One configuration key.

    Attributes
    ----------
    key : str
        The dotted Hydra key (``init.sigma_w``).
    type : type
        ``int``, ``float``, ``str``, ``bool`` or ``list`` (of int).
    default : object
        The value when neither the YAML nor the command line sets one.
    constraint : Constraint or None
        What values are allowed (None: any value of the type).
    doc : str
        One line for humans.
    column : str
        The MLflow param, table column and plot label (default: the last part of
        ``key``).
    optional : bool
        ``null`` is allowed (and means what ``doc`` says).
    semantic : bool
        Part of the resume hash (what a job computes, not where it runs).
    param : bool
        Logged as an MLflow param of the job's run.
    task : str or None
        ``"probe"`` or ``"train"`` for keys only that task reads (params of the
        other task leave them out); None for both.
    probe_column, train_column : bool
        A configuration column of the probe's / training's tables.
    report_order : int or None
        Place among the report's colour keys (numbers) or panel keys (names).
    hashed_at_default : bool
        Part of the resume hash also where the value is the default. False for
        keys added after stores existed (the ``arch`` keys): a job at their
        defaults computes what it computed before, and keeps its hash.
    """

    key: str
    type: type
    default: Any
    constraint: Constraint | None
    doc: str
    column: str = ""
    optional: bool = False
    semantic: bool = True
    param: bool = True
    task: str | None = None
    probe_column: bool = False
    train_column: bool = False
    report_order: int | None = None
    hashed_at_default: bool = True

    def __post_init__(self) -> None:
        if not self.column:
            object.__setattr__(self, "column", self.key.rsplit(".", 1)[-1])

    @property
    def section(self) -> str | None:
        """``init`` for ``init.sigma_w``; None for a top-level key."""
        return self.key.split(".", 1)[0] if "." in self.key else None

    @property
    def numeric(self) -> bool:
        """True for int and float keys."""
        return self.type in (int, float)


_POS = Interval(int, 1, None, closed="left")
_NONNEG = Interval(int, 0, None, closed="left")
_SCALE = Interval(
    float,
    0,
    SCALE_LIMIT,
    closed="both",
    why="a standard deviation; beyond 100 the forward pass and the theory overflow",
)

BRANCH_SCALE_LIMIT = 100.0
"""The largest ``arch.branch_scale``: the residual stream grows like
(1 + alpha^2 chi)^blocks, and alpha = 100 leaves float64 within a few blocks."""

DEPTH_POWER_LIMIT = 2.0
"""The largest ``arch.depth_power``: alpha = c / blocks^p; p = 1/2 is the
1/sqrt(L) scaling of Stable ResNet and depth-muP, p = 1 the 1/L of ODE-like
limits; beyond 2 the branches vanish faster than any studied scaling."""

NORMS: tuple[str, ...] = ("none", "layer")
"""The values of ``arch.norm`` (``none`` is the core's ``norm=None``)."""

KEYS: tuple[Key, ...] = (
    Key("task", str, "probe", Options(("probe", "train")),
        "probe (gradients at initialization) or train", semantic=True),
    Key("depth", int, 10,
        Interval(int, 2, None, why="depth counts the input layer"),
        "L, counting the input layer: L - 1 weight matrices",
        probe_column=True, train_column=True),
    Key("width", int, 64, _POS, "n_2 .. n_{L-1}",
        probe_column=True, train_column=True, report_order=2),
    Key("hidden_widths", list, None, Each(_POS),
        "n_2..n_{L-1} one by one (e.g. [2,3]); overrides width; "
        "needs depth = len(hidden_widths) + 2", optional=True, report_order=0),
    Key("input_dim", int, 64, _POS, "n_1", probe_column=True, report_order=3),
    Key("output_dim", int, 1, _POS, "n_L", probe_column=True, report_order=4),
    Key("activation", str, "sigmoid", Options(ACTIVATION_NAMES),
        "the hidden layers' activation",
        probe_column=True, train_column=True, report_order=1),
    Key("output_activation", str, None, Options(ACTIVATION_NAMES),
        "null: the same as activation, as in the paper", optional=True,
        probe_column=True, report_order=2),
    Key("init.name", str, "gaussian", Options(INITIALIZER_NAMES),
        "the weight scheme (the init group sets it)", column="init",
        probe_column=True, train_column=True, report_order=4),
    Key("init.sigma_w", float, 1.0, _SCALE,
        "weight scale: Var W_ij = sigma_w^2 / n_{l-1}",
        probe_column=True, train_column=True, report_order=0),
    Key("init.sigma_b", float, 0.0, _SCALE, "bias scale: Var b_i = sigma_b^2",
        probe_column=True, train_column=True, report_order=1),
    Key("arch.name", str, "mlp", Options(ARCHITECTURES),
        "mlp or resnet (the arch group sets it)", column="arch",
        probe_column=True, train_column=True, report_order=6,
        hashed_at_default=False),
    Key("arch.norm", str, "none", Options(NORMS),
        "none or layer (layer normalization without affine parameters)",
        column="norm", probe_column=True, train_column=True, report_order=5,
        hashed_at_default=False),
    Key("arch.branch_scale", float, 1.0,
        Interval(float, 0, BRANCH_SCALE_LIMIT, closed="both",
                 why="alpha's numerator; beyond 100 the residual stream overflows"),
        "c of alpha = c / blocks^depth_power (resnet)",
        probe_column=True, train_column=True, hashed_at_default=False),
    Key("arch.depth_power", float, 0.0,
        Interval(float, 0, DEPTH_POWER_LIMIT, closed="both",
                 why="0: a fixed alpha, 0.5: alpha = c / sqrt(blocks)"),
        "p of alpha = c / blocks^p (resnet)",
        probe_column=True, train_column=True, hashed_at_default=False),
    Key("dtype", str, "float64", Options(("float64", "float32")),
        "float64 or float32", probe_column=True, report_order=3),
    Key("seed", int, 0, Interval(int, 0, 2**32 - 1), "the job's random seed",
        probe_column=True, train_column=True, report_order=5),
    Key("force", bool, False, None, "true: recompute jobs that already FINISHED",
        semantic=False),
    Key("report", bool, True, None, "build report.html at the end of a sweep",
        semantic=False),
    Key("n_jobs", int, None, _POS,
        "worker processes of a sweep; null: one per core (never more than jobs)",
        optional=True, semantic=False, param=False),
    Key("probe.networks", int, 64, _POS, "sampled networks per job", task="probe"),
    Key("probe.inputs", int, 8, _POS, "inputs per network", task="probe"),
    Key("probe.input_distribution", str, "sphere",
        Options(("sphere", "gaussian", "uniform")),
        "sphere (||x||^2 = n_1), gaussian N(0, I), uniform U[0, 1]^{n_1}",
        task="probe"),
    Key("probe.spectra", int, 4, _NONNEG,
        "(network, input) pairs that get full Jacobian spectra", task="probe"),
    Key("probe.spectra_layers", list, None,
        Each(Interval(int, 2, None, why="layers l = 2..L")),
        "layers with full J^(l) spectra; null: all up to width 256, "
        "else ~8 log-spaced + L-1, L", optional=True, task="probe"),
    Key("probe.memory_gb", float, None,
        Interval(float, 0, None, closed="neither", why="GiB"),
        "memory budget (GiB) of a job's chunks; null: half the available, <= 2",
        optional=True, semantic=False, task="probe"),
    Key("probe.threads", int, None, _POS,
        "threads per job; null: every core (shared with the sweep's workers)",
        optional=True, semantic=False, task="probe"),
    Key("probe.backend", str, "numpy", Usable(),
        "whose BLAS multiplies in the gradients: numpy, or torch (the same "
        "numbers to rounding)", semantic=False, task="probe"),
    Key("probe.rel_err", float, None,
        Interval(float, 0, 1, closed="neither"),
        "target rel. std error of the median |grad|; null: fixed probe.networks",
        optional=True, task="probe"),
    Key("probe.max_networks", int, 4096, _POS,
        "with probe.rel_err: at most this many networks", task="probe"),
    Key("train.dataset", str, "digits", Options(DATASET_NAMES), "the dataset",
        task="train", train_column=True),
    Key("train.optimizer", str, "adam", Options(OPTIMIZERS),
        "sgd (with train.momentum) or adam", task="train", train_column=True),
    Key("train.learning_rate", float, 1e-3,
        Interval(float, 0, 100, closed="right"), "the step size",
        task="train", train_column=True),
    Key("train.momentum", float, 0.9, Interval(float, 0, 1, closed="left"),
        "SGD's momentum (Adam ignores it)", task="train", train_column=True),
    Key("train.batch_size", int, 64, _POS, "points per step",
        task="train", train_column=True),
    Key("train.steps", int, 2000, _POS, "training steps",
        task="train", train_column=True),
    Key("train.eval_every", int, 100, _POS, "steps between evaluations",
        task="train"),
    Key("train.seeds", int, 3, _POS, "networks trained at once, one per seed",
        task="train"),
    Key("train.cost", str, "cross_entropy", Options(COSTS),
        "cross_entropy or quadratic (the paper's)", task="train",
        train_column=True),
    Key("tracking.uri", str, None, TrackingURI(),
        "null: sqlite:///<where you run>/mlflow.db", optional=True,
        semantic=False, param=False),
    Key("tracking.experiment", str, "depthlab", NonEmpty(), "MLflow experiment",
        semantic=False, param=False),
    Key("tracking.parent_run_id", str, None, None,
        "set by the sweeper for every job; not for users", optional=True,
        semantic=False, param=False),
    Key("tracking.jobs_total", int, 1, _POS,
        "set by the sweeper: how many jobs the sweep has",
        semantic=False, param=False),
    Key("tracking.job_index", int, 0, _NONNEG,
        "set by the sweeper: this job's place in the sweep (0-based)",
        semantic=False, param=False),
    Key("tracking.run_name", str, None, None,
        "set by the sweeper: the job's run name, what varies in the sweep first",
        optional=True, semantic=False, param=False),
)  # fmt: skip
"""Every configuration key, in the order of ``conf/config.yaml``."""

BY_KEY: dict[str, Key] = {k.key: k for k in KEYS}
"""Each :class:`Key` by its dotted Hydra key."""

BY_COLUMN: dict[str, Key] = {k.column: k for k in KEYS}
"""Each :class:`Key` by its column (= MLflow param) name."""

SECTIONS: tuple[str, ...] = tuple(dict.fromkeys(k.section for k in KEYS if k.section))
"""The nested groups of keys: ``init``, ``probe``, ``train``, ``tracking``."""


# ---------------------------------------------------------------------------
# Derived lists

CONFIG_COLUMNS: tuple[str, ...] = tuple(k.column for k in KEYS if k.probe_column)
"""Columns that identify a configuration in every probe table."""

TRAIN_CONFIG_COLUMNS: tuple[str, ...] = tuple(
    k.column for k in sorted(KEYS, key=lambda k: k.task == "train") if k.train_column
)
"""Columns that identify a configuration in the training tables (the network's
first, then the training's)."""

PARAM_OF: dict[str, str] = {
    k.column: k.column for k in KEYS if k.probe_column or k.key == "hidden_widths"
}
"""The MLflow param (``params.<name>``) of each probe config column: the same
name (stores written before params were named by column are read through
:func:`param_renames`)."""

_REPORTED = sorted(
    (k for k in KEYS if k.report_order is not None), key=lambda k: k.report_order
)

NUMERIC_KEYS: tuple[str, ...] = tuple(k.column for k in _REPORTED if k.numeric)
"""Config columns whose values are numbers: the report's colours, in order."""

CATEGORICAL_KEYS: tuple[str, ...] = tuple(k.column for k in _REPORTED if not k.numeric)
"""Config columns whose values are names: the report's panels, in order."""

NUMERIC_COLUMNS: frozenset[str] = frozenset(k.column for k in KEYS if k.numeric)
"""Every column whose param is a number (parse with ``pd.to_numeric``)."""

RUN_NAME: tuple[tuple[str, str, bool], ...] = (
    ("train.dataset", "", True),
    ("depth", "L=", True),
    ("arch.name", "", False),
    ("arch.norm", "", False),
    ("arch.branch_scale", "a=", False),
    ("activation", "", True),
    ("init.name", "", True),
    ("init.sigma_w", "sw=", True),
    ("width", "n=", True),
    ("init.sigma_b", "sb=", False),
    ("output_activation", "out=", False),
    ("dtype", "", False),
    ("seed", "seed=", False),
)
"""What a run's name shows, in order: (key, label, always); a key not marked
always is shown only where its value is not the default, a task's key only in
that task's runs (see :func:`depthlab.sweep.app.run_name`). The ``arch`` keys
show as ``resnet``, ``LN`` and the branch multiplier of a resnet, ``a=0.5`` (a
fixed alpha), ``a=1/sqrt`` (alpha = 1 / sqrt(blocks)) or ``a=2/L^1`` (alpha =
2 / blocks): :func:`arch_label`."""

RUN_NAME_KEYS: tuple[str, ...] = tuple(key for key, _, _ in RUN_NAME)
"""The keys a run's name shows."""


def arch_label(key: str, d: Mapping[str, Any]) -> str | None:
    """How a run's name shows an ``arch`` key (None: not at all).

    An MLP without normalization shows nothing (its name is as before the
    ``arch`` keys); ``arch.branch_scale`` stands for alpha = c / blocks^p of a
    resnet and shows with ``arch.depth_power``.

    Examples
    --------
    >>> d = {"arch": {"name": "resnet", "norm": "layer", "branch_scale": 1.0,
    ...               "depth_power": 0.5}}
    >>> [arch_label(k, d) for k in ("arch.name", "arch.norm", "arch.branch_scale")]
    ['resnet', 'LN', 'a=1/sqrt']
    """
    a = d["arch"]
    if key == "arch.name":
        return None if a["name"] == "mlp" else str(a["name"])
    if key == "arch.norm":
        return None if a["norm"] == "none" else "LN"
    if key == "arch.branch_scale":
        if a["name"] != "resnet":
            return None
        c, p = float(a["branch_scale"]), float(a["depth_power"])
        if p == 0:
            return f"a={c:g}"
        return f"a={c:g}/sqrt" if p == 0.5 else f"a={c:g}/L^{p:g}"
    raise KeyError(key)


NON_SEMANTIC_SECTIONS: tuple[str, ...] = tuple(
    s for s in SECTIONS if not any(k.semantic for k in KEYS if k.section == s)
)
"""Sections none of whose keys change what a job computes (``tracking``)."""


def param_to_column(name: str) -> str:
    """The column of an MLflow param, by its name now or before.

    Stores written before params were named by column have ``init.sigma_w``,
    ``init.name``, ``train.learning_rate``; both spellings give the column.

    Examples
    --------
    >>> param_to_column("init.sigma_w"), param_to_column("sigma_w")
    ('sigma_w', 'sigma_w')
    >>> param_to_column("init.name"), param_to_column("overrides")
    ('init', 'overrides')
    """
    if name in BY_KEY:
        return BY_KEY[name].column
    return name


def param_renames(columns: Iterable[str], prefix: str = "params.") -> dict[str, str]:
    """``{"params.init.sigma_w": "params.sigma_w", ...}`` for ``DataFrame.rename``.

    Only old names whose new name is not present already are renamed.
    """
    present = set(columns)
    renames = {}
    for c in present:
        if c.startswith(prefix):
            new = prefix + param_to_column(c[len(prefix) :])
            if new != c and new not in present:
                renames[c] = new
    return renames


# ---------------------------------------------------------------------------
# Nested dicts


def get(d: Mapping[str, Any], key: str) -> Any:
    """The value of a dotted key in a nested dict (``get(d, "init.sigma_w")``)."""
    node: Any = d
    for part in key.split("."):
        node = node[part]
    return node


def defaults() -> dict[str, Any]:
    """The nested dict of every key's default."""
    d: dict[str, Any] = {}
    for k in KEYS:
        node = d
        *parents, leaf = k.key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = k.default
    return d


def job_params(d: Mapping[str, Any]) -> dict[str, Any]:
    """A job's MLflow params, named by column (``sigma_w``, not ``init.sigma_w``).

    Keys of the other task and the ``tracking`` keys are left out.
    """
    task = d["task"]
    return {k.column: get(d, k.key) for k in KEYS if k.param and k.task in (None, task)}


def config_hash(cfg: Mapping[str, Any]) -> str:
    """A stable hash of what a job computes (its semantic keys).

    Two jobs with the same hash produce the same numbers; a sweep that is run
    again skips every job whose hash already has a FINISHED run. The ``train``
    keys count for training jobs only; the hash of a config is the same as
    before the schema existed, so old stores resume. Keys declared with
    ``hashed_at_default=False`` (the ``arch`` keys) count only where they differ
    from their default: an MLP without normalization keeps its old hash.
    """
    drop = {k.key for k in KEYS if not k.semantic and k.section is None}
    drop |= set(NON_SEMANTIC_SECTIONS) | {"hydra"}
    semantic = {k: v for k, v in cfg.items() if k not in drop}
    for k in KEYS:  # keys of how a job runs inside a semantic section
        if not k.semantic and k.section in semantic and k.section not in drop:
            leaf = k.key.rsplit(".", 1)[-1]
            semantic[k.section] = {
                name: v for name, v in semantic[k.section].items() if name != leaf
            }
    for k in KEYS:  # keys that count only away from their default
        if k.hashed_at_default or not k.semantic:
            continue
        leaf = k.key.rsplit(".", 1)[-1]
        node = semantic if k.section is None else semantic.get(k.section)
        if isinstance(node, Mapping) and leaf in node and node[leaf] == k.default:
            node = {name: v for name, v in node.items() if name != leaf}
            if k.section is None:
                semantic = node
            elif node:
                semantic[k.section] = node
            else:
                semantic.pop(k.section)
    if semantic.get("task") != "train":
        semantic.pop("train", None)
    text = json.dumps(semantic, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------
# The structured config


def _annotation(k: Key) -> Any:
    kind: Any = list[int] if k.type is list else k.type
    return kind | None if k.optional else kind


def structured_config(keys: Collection[Key] = KEYS, module: str = __name__) -> type:
    """The dataclass Hydra types the YAML with: ``Config`` and one per section.

    ``Config.init`` is an ``InitConfig``, and so on; every field has the key's
    type and default, and each class's docstring lists its keys' docs. The
    classes say they live in ``module``, which must bind them by name (so that
    they pickle, e.g. into the sweep's worker processes).
    """

    def namespace(title: str, members: Iterable[Key]) -> dict[str, str]:
        lines = [f"- ``{k.key}``: {k.doc}" for k in members]
        return {"__module__": module, "__doc__": "\n".join([title, "", *lines])}

    top: list[tuple[str, Any, Any]] = []
    sections: dict[str, list[tuple[str, Any, Any]]] = {}
    for k in keys:
        leaf = k.key.rsplit(".", 1)[-1]
        entry = (leaf, _annotation(k), field(default=k.default))
        if k.section is None:
            top.append(entry)
            continue
        if k.section not in sections:
            top.append((k.section, None, None))  # its place, filled in below
        sections.setdefault(k.section, []).append(entry)
    for i, (name, _, _) in enumerate(top):
        if name in sections:
            section_cls = make_dataclass(
                f"{name.capitalize()}Config",
                sections[name],
                namespace=namespace(
                    f"``{name}`` keys.", [k for k in keys if k.section == name]
                ),
            )
            top[i] = (name, section_cls, field(default_factory=section_cls))
    title = "A depthlab job's configuration (``python -m depthlab --help``)."
    plain = [k for k in keys if k.section is None]
    return make_dataclass("Config", top, namespace=namespace(title, plain))


def check_declared(keys: Iterable[Key] = KEYS) -> None:
    """Raise if a key or a column is declared twice, or a default is not allowed."""
    seen_keys: set[str] = set()
    seen_columns: set[str] = set()
    for k in keys:
        if k.key in seen_keys or k.column in seen_columns:
            raise ValueError(f"{k.key} (column {k.column}) is declared twice")
        seen_keys.add(k.key)
        seen_columns.add(k.column)
        if k.default is None and not k.optional:
            raise ValueError(f"{k.key} has no default and is not optional")
        if k.default is not None and k.constraint is not None and k.type is not bool:
            if not k.constraint.is_satisfied_by(k.default):
                raise ValueError(f"the default of {k.key} is not allowed")


check_declared()
