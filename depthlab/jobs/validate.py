"""The one validator of depthlab's configurations, from :mod:`depthlab.jobs.schema`.

The command line's precheck (each value as typed, before Hydra composes), the
sweep (every composed job, before the tracking store is opened) and a job
(before its run is created) all call these functions, so a bad value is refused
before any run exists, with a one-line :class:`~.schema.ConfigError` that names
the key, the value and what is allowed.

- :func:`check_value`: one key's value against its type and constraint;
- :func:`check_rules`: the combinations of keys (written here once);
- :func:`memory_check`: a job's memory estimate against the machine's memory;
- :func:`validate`: all three, on a job's nested dict.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from depthlab.jobs import schema
from depthlab.jobs.schema import ConfigError, Key
from depthlab.network import depth_scaled_branch, residual_blocks

# ---------------------------------------------------------------------------
# One value


def show(value: Any) -> str:
    """A value as messages print it: ``'x'``, ``1e+308``, ``nan``, ``[2, 3]``."""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return repr(value)
    return str(value)


def _not_allowed(key: str, value: Any, allowed: str) -> ConfigError:
    return ConfigError(f"{key}={show(value)} is not allowed; {allowed}")


def _allowed(k: Key) -> str:
    c = k.constraint
    if isinstance(c, schema.Options | schema.TrackingURI):
        return c.describe()
    if c is None:
        return f"{k.key} must be {_type_noun(k)}"
    return f"{k.key} must be {c.describe()}"


def _type_noun(k: Key) -> str:
    noun = {
        int: "an integer",
        float: "a number",
        str: "a string",
        bool: "true or false",
        list: "a list of integers, e.g. [2,3]",
    }[k.type]
    return f"{noun} or null" if k.optional else noun


def coerce(k: Key, value: Any) -> Any:
    """``value`` as the key's type, or :class:`ConfigError` naming the type.

    A number is accepted for a float key, any scalar for a string key (Hydra
    reads ``tracking.experiment=2024`` as an int); ``null`` only where the key
    is optional.
    """
    if value is None:
        if k.optional:
            return None
        raise _not_allowed(k.key, value, f"{k.key} must be {_type_noun(k)}")
    kind = k.type
    ok = True
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif kind is str:
        ok = isinstance(value, str | int | float) and not isinstance(value, bool)
        value = str(value) if ok else value
    elif kind is list:
        ok = isinstance(value, Sequence) and not isinstance(value, str)
        ok = ok and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        value = list(value) if ok else value
    if not ok:
        raise _not_allowed(k.key, value, f"{k.key} must be {_type_noun(k)}")
    return value


def check_value(key: str, value: Any) -> Any:
    """Check one value of a dotted key; return it as the key's type.

    Raises
    ------
    ConfigError
        For an unknown key, a value of the wrong type, or one the key's
        constraint does not allow (non-finite and out-of-range numbers too).

    Examples
    --------
    >>> check_value("init.sigma_w", 2)
    2.0
    >>> check_value("init.sigma_w", float("nan"))
    Traceback (most recent call last):
    ...
    depthlab.jobs.schema.ConfigError: init.sigma_w=nan is not allowed; init.sigma_w \
must be a finite number in [0, 100] (a standard deviation; beyond 100 the forward \
pass and the theory overflow)
    """
    k = schema.BY_KEY.get(key)
    if k is None:
        raise unknown_key(key)
    value = coerce(k, value)
    if value is not None and k.constraint is not None:
        if not k.constraint.is_satisfied_by(value):
            raise _not_allowed(key, value, _allowed(k))
    return value


def unknown_key(key: str) -> ConfigError:
    """The error for a key the schema does not declare."""
    section = key.split(".", 1)[0]
    if section in schema.SECTIONS:
        valid = [k.key for k in schema.KEYS if k.section == section]
        return ConfigError(
            f"unknown key {key!r}; valid {section} keys: {', '.join(valid)}"
        )
    top = list(dict.fromkeys(k.key.split(".", 1)[0] for k in schema.KEYS))
    return ConfigError(f"unknown key {key!r}; valid top-level keys: {', '.join(top)}")


def check_option(group: str, option: Any, valid: Sequence[str]) -> None:
    """A config group's option (``activation=tanh``): one of its YAML files."""
    if str(option) not in valid:
        raise _not_allowed(group, str(option), f"valid: {', '.join(valid)}")


# ---------------------------------------------------------------------------
# Combinations


def check_rules(d: Mapping[str, Any]) -> None:
    """The rules that tie keys together (each written only here)."""
    hidden = d.get("hidden_widths")
    if hidden is not None and len(hidden) + 2 != d["depth"]:
        raise ConfigError(
            f"depth={d['depth']} does not match hidden_widths={hidden}; "
            f"depth must be {len(hidden) + 2}"
        )
    _check_architecture(d)
    probe = d["probe"]
    if d["task"] == "probe" and probe["rel_err"] is not None:
        if probe["max_networks"] < probe["networks"]:
            raise ConfigError(
                f"probe.max_networks={probe['max_networks']} is not allowed with "
                f"probe.rel_err; it must be >= probe.networks={probe['networks']}"
            )
    layers = probe.get("spectra_layers")
    if d["task"] == "probe" and layers is not None:
        bad = [layer for layer in layers if layer > d["depth"]]
        if bad or not layers:
            raise ConfigError(
                f"probe.spectra_layers={layers} is not allowed; it must be null or "
                f"a non-empty list of layers l in 2..{d['depth']} (depth)"
            )
    if d["task"] == "train" and d["train"]["cost"] == "cross_entropy":
        out = d["output_activation"]
        if out not in (None, "linear"):
            raise ConfigError(
                f"output_activation={out!r} is not allowed with train.cost="
                f"cross_entropy (the outputs are logits); use linear or null"
            )


def _check_architecture(d: Mapping[str, Any]) -> None:
    """A resnet needs a block and equal hidden widths; LN needs 2 units."""
    arch, hidden = d["arch"], d.get("hidden_widths")
    widths = list(hidden) if hidden is not None else [d["width"]] * (d["depth"] - 2)
    if arch["name"] == "resnet":
        if d["depth"] < 4:
            raise ConfigError(
                f"depth={d['depth']} is not allowed with arch.name='resnet'; a "
                f"resnet needs depth >= 4 (an embedding, at least one block, a "
                f"readout)"
            )
        if len(set(widths)) > 1:
            raise ConfigError(
                f"hidden_widths={hidden} is not allowed with arch.name='resnet'; "
                f"its blocks need equal hidden widths n_2 = ... = n_(L-1)"
            )
    if arch["norm"] == "layer" and any(n < 2 for n in widths):
        key = "hidden_widths" if hidden is not None else "width"
        value = hidden if hidden is not None else d["width"]
        raise ConfigError(
            f"{key}={value} is not allowed with arch.norm='layer'; layer "
            f"normalization needs hidden widths >= 2"
        )


def output_activation(d: Mapping[str, Any]) -> str:
    """The output activation a job uses: cross-entropy training needs logits
    (``linear``); otherwise ``output_activation``, null meaning ``activation``."""
    if d["task"] == "train" and d["train"]["cost"] == "cross_entropy":
        return "linear"
    return d["output_activation"] or d["activation"]


def architecture_kwargs(
    arch: str, norm: str, branch_scale: float, depth_power: float, depth: int
) -> dict[str, Any]:
    """The config's architecture as the core's keywords.

    ``norm`` ``"none"`` becomes ``None``; a resnet's ``branch_scale`` is its
    alpha = c / blocks^p (an MLP gets 1.0, which it does not read).

    Examples
    --------
    >>> architecture_kwargs("resnet", "layer", 1.0, 0.5, 19)
    {'architecture': 'resnet', 'branch_scale': 0.25, 'norm': 'layer'}
    """
    alpha = (
        depth_scaled_branch(branch_scale, depth_power, residual_blocks(arch, depth))
        if arch == "resnet"
        else 1.0
    )
    return {
        "architecture": arch,
        "branch_scale": alpha,
        "norm": None if norm == "none" else norm,
    }


def architecture(d: Mapping[str, Any]) -> dict[str, Any]:
    """The architecture keywords of a job's network (:func:`architecture_kwargs`
    of its ``arch`` keys and depth)."""
    a = d["arch"]
    depth = len(d["hidden_widths"]) + 2 if d.get("hidden_widths") else d["depth"]
    return architecture_kwargs(
        a["name"], a["norm"], float(a["branch_scale"]), float(a["depth_power"]), depth
    )


# ---------------------------------------------------------------------------
# Memory

_EVAL_POINTS = 2000
"""Points a training job evaluates at once (the largest test sets, about)."""


def _widths(d: Mapping[str, Any]) -> list[int]:
    hidden = d.get("hidden_widths")
    inner = list(hidden) if hidden else [d["width"]] * (d["depth"] - 2)
    return [d["input_dim"], *inner, d["output_dim"]]


def _probe_bytes(d: Mapping[str, Any]) -> int:
    """The streaming probe's peak: one network at a time, its spectra workspace
    and the kept results of every network (:mod:`depthlab.jobs.memory`)."""
    from depthlab.jobs import memory
    from depthlab.jobs.engine import job_shape
    from depthlab.jobs.probe import ProbeSpec

    return memory.estimate_job_bytes(job_shape(ProbeSpec.from_config(dict(d))))


def _train_bytes(d: Mapping[str, Any]) -> int:
    """Every seed's weights, gradients and optimizer state, and one evaluation
    (whose forward pass keeps 2 or, with LN, 3 arrays a layer:
    :func:`depthlab.jobs.memory.forward_arrays`)."""
    from depthlab.jobs.memory import forward_arrays

    n = _widths(d)
    item = 4 if d["dtype"] == "float32" else 8
    seeds = d["train"]["seeds"]
    params = sum(n[i] * n[i - 1] + n[i] for i in range(1, len(n)))
    points = max(d["train"]["batch_size"], _EVAL_POINTS)
    arrays = forward_arrays(d["arch"]["norm"])
    return item * seeds * (5 * params + (1 + arrays) * points * sum(n))


ESTIMATORS: dict[str, Callable[[Mapping[str, Any]], int]] = {
    "probe": _probe_bytes,
    "train": _train_bytes,
}
"""The bytes one job of each task needs, by task."""


def estimate_job_bytes(d: Mapping[str, Any]) -> int:
    """About how many bytes a job needs at its peak (see :data:`ESTIMATORS`)."""
    return int(ESTIMATORS[d["task"]](d))


def machine_bytes() -> int:
    """This machine's physical memory in bytes."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _allowed_bytes(d: Mapping[str, Any]) -> tuple[int, str]:
    """The memory a job may use, and what it is: ``probe.memory_gb`` if set,
    else the machine's physical memory."""
    budget = d["probe"].get("memory_gb") if d["task"] == "probe" else None
    if budget is not None:
        return int(budget * 2**30), f"probe.memory_gb={show(budget)} allows"
    return machine_bytes(), "this machine has"


_SIZE_KEYS = {
    "probe": ("depth", "width", "input_dim", "probe.networks", "probe.inputs"),
    "train": ("depth", "width", "train.seeds", "train.batch_size"),
}


def memory_check(
    d: Mapping[str, Any],
    *,
    estimate: Callable[[Mapping[str, Any]], int] | None = None,
    available: int | None = None,
) -> None:
    """Refuse a job whose memory estimate exceeds the machine's memory.

    Parameters
    ----------
    d : mapping
        The job's nested config.
    estimate : callable, optional
        Bytes the job needs (default :func:`estimate_job_bytes`).
    available : int, optional
        Bytes allowed (default :func:`machine_bytes`).
    """
    need = (estimate or estimate_job_bytes)(d)
    if available is None:
        have, where = _allowed_bytes(d)
    else:
        have, where = available, "this machine has"
    if need <= have:
        return
    keys = list(_SIZE_KEYS[d["task"]])
    if d.get("hidden_widths"):
        keys[keys.index("width")] = "hidden_widths"
    sizes = " ".join(f"{k}={schema.get(d, k)}" for k in keys)
    lower = ", ".join(keys[:-1]) + " or " + keys[-1]
    raise ConfigError(
        f"{sizes} is not allowed: one job needs about {_gib(need)} of memory and "
        f"{where} {_gib(have)}; allowed: sizes that fit (lower {lower})"
    )


def _gib(n: int) -> str:
    try:
        return f"{n / 2**30:.3g} GiB"
    except OverflowError:  # beyond a float: the same format, from the digits
        digits = str(n // 2**30)
        return f"{digits[0]}.{digits[1:3]}e+{len(digits) - 1} GiB"


# ---------------------------------------------------------------------------
# A whole job


def validate(d: Mapping[str, Any], *, memory: bool = True) -> None:
    """Check a job's nested config: every key, the rules, the memory.

    Keys of the other task (``train.*`` for a probe job) are not read by the
    job and not checked.

    Raises
    ------
    ConfigError
        On the first bad value, with a one-line message naming it.
    """
    task = check_value("task", d["task"])
    for k in schema.KEYS:
        if k.task in (None, task):
            check_value(k.key, schema.get(d, k.key))
    check_rules(d)
    if memory:
        memory_check(d)
