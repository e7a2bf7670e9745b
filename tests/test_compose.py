"""Derived job configs equal Hydra's composition of each job, hydra node included."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from omegaconf import OmegaConf

from depthlab.sweep.app import CONFIG_PATH, job_dict, register_configs
from depthlab.sweep.compose import compose_job_configs


@pytest.fixture(scope="module")
def hydra_loader() -> Iterator[tuple[Any, Any]]:
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode

    register_configs()
    with initialize_config_dir(config_dir=CONFIG_PATH, version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        master = loader.load_configuration(
            "config", overrides=[], run_mode=RunMode.MULTIRUN
        )
        yield loader, master


class CountingLoader:
    """A config loader that counts full compositions."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader
        self.repository = loader.repository
        self.compositions = 0

    def load_sweep_config(self, master: Any, overrides: list[str]) -> Any:
        self.compositions += 1
        return self.loader.load_sweep_config(master, overrides)


def _grid(**values: list[str]) -> list[list[str]]:
    jobs: list[list[str]] = [[]]
    for key, options in values.items():
        jobs = [[*job, f"{key}={v}"] for job in jobs for v in options]
    return jobs


SWEEPS = {
    "depth": (_grid(depth=[str(d) for d in range(2, 9)]), 1),
    "depth x width": (_grid(depth=["2", "5"], width=["8", "16", "32"]), 1),
    "groups": (_grid(activation=["tanh", "relu"], depth=["3", "4", "5"]), 2),
    "preset": (
        [
            ["+experiment=edge_of_chaos", f"init.sigma_w={s}", f"depth={d}"]
            for s in ("0.5", "1.5")
            for d in ("3", "7")
        ],
        1,
    ),
    "hydra key": (_grid(**{"hydra.job.name": ["a"], "seed": ["1", "2", "3"]}), 1),
    "lists compose in full": (
        _grid(hidden_widths=["[4,5]", "[6,7]"], depth=["4"]),
        2,
    ),
    "null and strings": (
        _grid(output_activation=["null", "linear", "tanh"], dtype=["float32"]),
        1,
    ),
    "mixed structures": (
        [["depth=3"], ["depth=4"], ["activation=tanh", "depth=3"], ["depth=5"]],
        2,
    ),
}


@pytest.mark.parametrize("name", list(SWEEPS))
def test_derived_configs_equal_hydras_composition(
    hydra_loader: tuple[Any, Any], name: str
) -> None:
    loader, master = hydra_loader
    jobs, expected_compositions = SWEEPS[name]
    counting = CountingLoader(loader)
    fast = compose_job_configs(counting, master, jobs)
    assert counting.compositions == expected_compositions
    assert len(fast) == len(jobs)
    for job, cfg in zip(jobs, fast, strict=True):
        reference = loader.load_sweep_config(master, list(job))
        assert OmegaConf.to_container(cfg) == OmegaConf.to_container(reference), job
        assert job_dict(cfg) == job_dict(reference)
        assert OmegaConf.is_struct(cfg)


def test_derived_configs_do_not_share_nodes(hydra_loader: tuple[Any, Any]) -> None:
    loader, master = hydra_loader
    first, second = compose_job_configs(loader, master, [["depth=3"], ["depth=4"]])
    first.probe.networks = 7
    assert second.probe.networks != 7


@pytest.mark.parametrize("bad", ["depth=x", "depth=2.5", "width=[1,2]", "nosuchkey=3"])
def test_a_bad_value_raises_hydras_own_error(
    hydra_loader: tuple[Any, Any], bad: str
) -> None:
    loader, master = hydra_loader
    with pytest.raises(Exception) as reference:
        loader.load_sweep_config(master, [bad])
    with pytest.raises(type(reference.value)) as derived:
        compose_job_configs(loader, master, [["depth=2"], [bad]])
    assert str(derived.value) == str(reference.value)
