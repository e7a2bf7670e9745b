"""Run names: a job's from its config, leading with what varies in its sweep,
and the sweep's own from its swept ranges (MLflow's run table shows about 16
characters of a name). The keys a name may show are
:data:`depthlab.jobs.schema.RUN_NAME`'s."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from depthlab.jobs import schema


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
