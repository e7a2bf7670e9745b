"""Users' own presets: ``--config-dir`` and ``hydra.searchpath`` beside conf/."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_cli

from depthlab.sweep.cli import UsageError, rewrite_argv

PRESET = """# @package _global_
depth: 3
width: 8
input_dim: 8
probe:
  networks: 2
  inputs: 2
  spectra: 1
report: false
"""


@pytest.fixture
def presets(tmp_path: Path) -> Path:
    folder = tmp_path / "mine" / "experiment"
    folder.mkdir(parents=True)
    (folder / "tiny.yaml").write_text(PRESET)
    return tmp_path / "mine"


@pytest.mark.parametrize("form", ["--config-dir", "--config-dir=", "searchpath"])
def test_a_users_preset_is_a_valid_option(presets: Path, form: str) -> None:
    if form == "--config-dir":
        args = ["--config-dir", str(presets)]
    elif form == "--config-dir=":
        args = [f"--config-dir={presets}"]
    else:
        args = [f"hydra.searchpath=[file://{presets}]"]
    assert "+experiment=tiny" in rewrite_argv([*args, "experiment=tiny"])
    with pytest.raises(UsageError) as err:
        rewrite_argv([*args, "+experiment=nope"])
    message = str(err.value)
    assert message.startswith("experiment='nope' is not allowed; valid: ")
    assert "tiny" in message and "vanishing" in message and "\n" not in message


def test_without_the_folder_the_preset_is_refused() -> None:
    with pytest.raises(UsageError, match=r"^experiment='tiny' is not allowed"):
        rewrite_argv(["+experiment=tiny"])


def test_a_sweep_runs_a_users_preset(presets: Path, tmp_path: Path) -> None:
    preset = ["--config-dir", str(presets), "+experiment=tiny"]
    out = run_cli(tmp_path, *preset, "depth=3,4", "n_jobs=1")
    assert out.returncode == 0, out.stderr
    assert "sweep done: 2 ran, 0 skipped, 0 failed of 2" in out.stdout
