"""The structured configuration Hydra types a depthlab job with.

:data:`Config` and its sections (``Config.init`` is an ``InitConfig``, and so
on) are generated from :data:`depthlab.jobs.schema.KEYS`, so that ``depth`` is an
int, ``init.sigma_w`` a float, and every default is the schema's;
:mod:`depthlab.sweep.app` registers :data:`Config` with Hydra's ConfigStore. The
checks are :mod:`depthlab.jobs.validate`'s. Nothing in this module imports Hydra.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from depthlab.jobs.schema import ConfigError, config_hash, structured_config

__all__ = ["Config", "ConfigError", "config_hash", "flatten"]

Config: Any = structured_config(module=__name__)
"""The whole job configuration (see ``python -m depthlab --help``)."""

# The section classes (InitConfig, ProbeConfig, ...) are bound here by name, so
# that Hydra's configs pickle into the sweep's worker processes.
for _section in dataclasses.fields(Config):
    if isinstance(_section.type, type) and dataclasses.is_dataclass(_section.type):
        globals()[_section.type.__name__] = _section.type


def flatten(cfg: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"init": {"sigma_w": 1.0}}`` -> ``{"init.sigma_w": 1.0}``.

    Examples
    --------
    >>> flatten({"depth": 3, "init": {"sigma_w": 1.0}})
    {'depth': 3, 'init.sigma_w': 1.0}
    """
    flat: dict[str, Any] = {}
    for key, value in cfg.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat
