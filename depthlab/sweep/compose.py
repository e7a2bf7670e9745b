"""The job configs of a sweep, composed by Hydra once per structure.

Hydra composes a job's config from its defaults list (the config files of every
group choice) and then applies the command-line overrides; for a sweep such as
``depth=2..50`` that means reading, merging and validating the same files 49
times (about 60 ms a job) to change one number. Jobs whose overrides differ only
in the *values* of plain keys share everything up to the last step, so this
module composes the first of them with Hydra and derives the others from a copy
of it, applying their values with Hydra's own override code
(``ConfigLoaderImpl._apply_overrides_to_config``) and recomputing the two
fields of the ``hydra`` node that record a job's overrides
(``hydra.overrides.task`` and ``hydra.job.override_dirname``).

A job takes the full composition whenever the shortcut could differ from it:
any override that selects a config group, touches ``hydra``, adds (``+``),
force-adds (``++``) or deletes (``~``) a key, or whose value is a dict or list
(those merge into the template's value instead of replacing it); and any job
whose derived config fails to build, so that errors are Hydra's.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Sequence
from typing import Any

from omegaconf import DictConfig, open_dict

Structure = tuple[Any, ...]


def _is_plain(override: Any, group_exists: Callable[[str], bool]) -> bool:
    """True for ``key=value`` with a scalar value on a config key (not a group)."""
    from hydra.core.override_parser.types import OverrideType

    return (
        override.type == OverrideType.CHANGE
        and override.package is None
        and not override.is_hydra_override()
        and not override.is_sweep_override()
        and not isinstance(override.value(), dict | list)
        and "/" not in override.key_or_group
        and not group_exists(override.key_or_group)
    )


def _structure(
    overrides: Sequence[Any], group_exists: Callable[[str], bool]
) -> Structure:
    """What two jobs must share for one to be derived from the other: every
    override's text, except the values of plain overrides."""
    return tuple(
        ("value", o.key_or_group) if _is_plain(o, group_exists) else o.input_line
        for o in overrides
    )


def _derive(
    template: DictConfig,
    overrides: Sequence[Any],
    group_exists: Callable[[str], bool],
) -> DictConfig:
    """``template`` with this job's values applied, as Hydra would compose it.

    The template was composed from overrides of the same structure, so everything
    but the plain values is already in it.
    """
    from hydra._internal.config_loader_impl import (
        ConfigLoaderImpl,
        get_overrides_dirname,
    )

    # A pickle round trip is OmegaConf's deep copy (flags, parents, node types)
    # at ~40% of copy.deepcopy's cost, which dominates composing a large sweep.
    cfg = pickle.loads(pickle.dumps(template))
    plain = [o for o in overrides if _is_plain(o, group_exists)]
    ConfigLoaderImpl._apply_overrides_to_config(plain, cfg)
    app_overrides = [o for o in overrides if not o.is_hydra_override()]
    with open_dict(cfg.hydra):
        # A sweep job's task overrides are exactly its own non-hydra overrides.
        cfg.hydra.overrides.task = [o.input_line for o in app_overrides]
        dirname = cfg.hydra.job.config.override_dirname
        cfg.hydra.job.override_dirname = get_overrides_dirname(
            overrides=app_overrides,
            kv_sep=dirname.kv_sep,
            item_sep=dirname.item_sep,
            exclude_keys=dirname.exclude_keys,
        )
    return cfg


def compose_job_configs(
    loader: Any, master_config: DictConfig, jobs: Sequence[Sequence[str]]
) -> list[DictConfig]:
    """Every job's config, equal to ``loader.load_sweep_config(master, job)``.

    Parameters
    ----------
    loader : hydra.core.config_loader.ConfigLoader
        The sweep's config loader (``sweeper.hydra_context.config_loader``).
    master_config : omegaconf.DictConfig
        The sweep's config (``sweeper.config``).
    jobs : sequence of sequence of str
        Each job's overrides, as Hydra's sweeper splits them.

    Returns
    -------
    list of omegaconf.DictConfig

    Raises
    ------
    hydra.errors.HydraException, omegaconf.errors.OmegaConfBaseException
        As Hydra's composition raises them, for a job that cannot be composed.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    repository = getattr(loader, "repository", None)
    group_exists = repository.group_exists if repository is not None else lambda _: True
    templates: dict[Structure, DictConfig] = {}
    configs: list[DictConfig] = []
    for job in jobs:
        lines = list(job)
        try:
            parsed = parser.parse_overrides(lines)
            structure = _structure(parsed, group_exists)
        except Exception:  # Hydra's composition reports it properly
            structure = None
        template = templates.get(structure) if structure is not None else None
        cfg = None
        if template is not None:
            try:
                cfg = _derive(template, parsed, group_exists)
            except Exception:
                cfg = None
        if cfg is None:
            cfg = loader.load_sweep_config(master_config, lines)
            if structure is not None:
                templates.setdefault(structure, cfg)
        configs.append(cfg)
    return configs
