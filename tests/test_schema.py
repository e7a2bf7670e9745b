"""The schema: every key once, the structured config and the YAML agree with it,
and the lists other modules use are derived from it."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import numpy as np
import pytest
import yaml
from hydra import compose
from omegaconf import OmegaConf

from depthlab.jobs import schema
from depthlab.jobs.config import Config
from depthlab.jobs.schema import KEYS, Interval, Key, Options
from depthlab.sweep import app


def _fields(cls: type, prefix: str = "") -> dict[str, tuple[object, object]]:
    """Every leaf field of a (nested) dataclass: dotted name -> (type, default)."""
    out: dict[str, tuple[object, object]] = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            out.update(_fields(hints[f.name], f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = (hints[f.name], f.default)
    return out


def test_every_key_and_column_is_declared_once() -> None:
    keys = [k.key for k in KEYS]
    columns = [k.column for k in KEYS]
    assert len(set(keys)) == len(keys)
    assert len(set(columns)) == len(columns)
    assert schema.BY_COLUMN["sigma_w"].key == "init.sigma_w"
    assert schema.BY_COLUMN["init"].key == "init.name"


def test_check_declared_refuses_a_second_declaration() -> None:
    twice = (*KEYS, Key("probe.sigma_w", float, 1.0, None, "again"))
    with pytest.raises(ValueError, match="declared twice"):
        schema.check_declared(twice)
    bad_default = Key("probe.chunk", int, 0, Interval(int, 1, None), "a size")
    with pytest.raises(ValueError, match=r"default of probe\.chunk"):
        schema.check_declared((*KEYS, bad_default))


def test_structured_config_is_exactly_the_schema() -> None:
    fields = _fields(Config)
    assert list(fields) == [k.key for k in KEYS]
    for k in KEYS:
        kind, default = fields[k.key]
        assert default == k.default, k.key
        expected = list[int] if k.type is list else k.type
        assert kind == (expected | None if k.optional else expected), k.key


def test_structured_config_documents_every_key() -> None:
    docs = Config.__doc__ + typing.get_type_hints(Config)["init"].__doc__
    assert "- ``depth``: L, counting the input layer" in docs
    assert "- ``init.sigma_w``: weight scale" in docs


def test_a_new_key_needs_only_its_declaration() -> None:
    """A key added to the schema reaches the structured config, the params,
    the checks and the hash with no other edit."""
    new = Key("probe.chunk", int, 8, Interval(int, 1, None), "networks at once",
              task="probe")  # fmt: skip
    cfg = schema.structured_config((*KEYS, new))
    conf = OmegaConf.structured(cfg)
    assert conf.probe.chunk == 8
    with pytest.raises(Exception, match="chunk"):
        OmegaConf.merge(conf, {"probe": {"chunk": "many"}})
    d = OmegaConf.to_container(conf)
    assert schema.config_hash(d) != schema.config_hash(schema.defaults())


def test_yaml_defaults_equal_the_schema_defaults(hydra_config) -> None:
    cfg = compose("config")
    assert app.job_dict(cfg) == schema.defaults()


def test_config_yaml_sets_every_key_and_no_other() -> None:
    text = (Path(app.CONFIG_PATH) / "config.yaml").read_text()
    data = {
        k: v for k, v in yaml.safe_load(text).items() if k not in ("defaults", "hydra")
    }
    flat = {
        f"{s}.{k}": v
        for s, d in data.items()
        if isinstance(d, dict)
        for k, v in d.items()
    }
    flat |= {k: v for k, v in data.items() if not isinstance(v, dict)}
    # activation, init.* and arch.* come from the groups in the defaults list;
    # the sweeper's tracking keys are not for users.
    from_groups = {"activation", "init.name", "init.sigma_w", "init.sigma_b"}
    from_groups |= {k.key for k in KEYS if k.section == "arch"}
    sweeper = {
        "tracking.parent_run_id",
        "tracking.jobs_total",
        "tracking.job_index",
        "tracking.run_name",
    }
    assert set(flat) == {k.key for k in KEYS} - from_groups - sweeper
    for key, value in flat.items():
        assert value == schema.BY_KEY[key].default, key


@pytest.mark.parametrize(
    "preset",
    sorted(p.stem for p in (Path(app.CONFIG_PATH) / "experiment").glob("*.yaml")),
)
def test_every_preset_composes_to_a_valid_job(hydra_config, preset: str) -> None:
    from depthlab.jobs.validate import validate

    validate(app.job_dict(compose("config", overrides=[f"+experiment={preset}"])))


def test_derived_lists_match_the_probe_tables() -> None:
    from depthlab.jobs.probe import ProbeSpec, run_probe

    d = schema.defaults()
    d.update(depth=3, width=4, input_dim=3)
    d["probe"].update(networks=2, inputs=2, spectra=1)
    result = run_probe(app._probe_spec(d))
    n = len(schema.CONFIG_COLUMNS)
    for name, table in result.tables().items():
        assert tuple(table.columns[:n]) == schema.CONFIG_COLUMNS, name
    spec_fields = {f.name for f in dataclasses.fields(ProbeSpec)}
    assert spec_fields <= set(schema.BY_COLUMN), "every ProbeSpec field is a column"


def test_derived_lists_match_the_training_tables() -> None:
    from depthlab.jobs.train import run_training_job

    d = schema.defaults()
    d.update(task="train", depth=3, width=3)
    d["train"].update(dataset="higham_example", steps=2, eval_every=1, seeds=2)
    record, _ = run_training_job(
        d, rng=np.random.default_rng(0), run_name="t", config_hash="h"
    )
    n = len(schema.TRAIN_CONFIG_COLUMNS)
    for name, table in record.tables.items():
        assert tuple(table.columns[:n]) == schema.TRAIN_CONFIG_COLUMNS, name
    assert set(record.params) == {
        k.column for k in KEYS if k.param and k.task in (None, "train")
    }
    assert record.params["sigma_w"] == 1.0 and "init.sigma_w" not in record.params


def test_probe_params_are_named_by_column() -> None:
    params = schema.job_params(schema.defaults())
    assert params["sigma_w"] == 1.0 and params["init"] == "gaussian"
    assert params["networks"] == 64
    assert not {"dataset", "uri", "experiment", "init.sigma_w"} & set(params)


def test_report_lists_are_the_schemas() -> None:
    from depthlab.report import data

    assert schema.NUMERIC_KEYS == data.NUMERIC_KEYS
    assert schema.CATEGORICAL_KEYS == data.CATEGORICAL_KEYS
    assert set(schema.PARAM_OF) == set(data.PARAM_OF)
    for column, old_param in data.PARAM_OF.items():
        assert schema.param_to_column(old_param) == column
        assert schema.param_to_column(schema.PARAM_OF[column]) == column


def test_param_to_column_reads_old_and_new_names() -> None:
    assert schema.param_to_column("init.sigma_w") == "sigma_w"
    assert schema.param_to_column("sigma_w") == "sigma_w"
    assert schema.param_to_column("train.learning_rate") == "learning_rate"
    assert schema.param_to_column("init.name") == "init"
    assert schema.param_to_column("overrides") == "overrides"
    renames = schema.param_renames(
        ["run_id", "params.init.sigma_w", "params.depth", "params.train.steps"]
    )
    assert renames == {
        "params.init.sigma_w": "params.sigma_w",
        "params.train.steps": "params.steps",
    }
    # a store holding both spellings keeps the new one
    assert schema.param_renames(["params.init.sigma_w", "params.sigma_w"]) == {}


def test_config_hash_counts_what_a_job_computes() -> None:
    """The hash changed with the streaming engine's per-network random streams
    (and its probe keys): runs of the old stream are not reused."""
    d = schema.defaults()
    base = schema.config_hash(d)
    assert base == "8d91cd6e7bf5fd58"
    d["tracking"]["uri"], d["force"], d["report"] = "sqlite:////x.db", True, False
    d["probe"]["memory_gb"], d["probe"]["threads"] = 0.5, 1
    assert schema.config_hash(d) == base, "how a job runs is not in the hash"
    d["probe"]["rel_err"] = 0.05
    assert schema.config_hash(d) != base
    d = schema.defaults()
    d["task"] = "train"
    assert schema.config_hash(d) == "9e1533d549bc7ec9"


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, "L=10 sigmoid gaussian sw=1 n=64"),
        (
            {"init": {"name": "higham", "sigma_w": 0.5, "sigma_b": 0.5}, "seed": 3},
            "L=10 sigmoid higham sw=0.5 n=64 sb=0.5 seed=3",
        ),
        (
            {"depth": 4, "hidden_widths": [2, 3], "dtype": "float32"},
            "L=4 sigmoid gaussian sw=1 n=2-3 float32",
        ),
        ({"output_activation": "sigmoid"}, "L=10 sigmoid gaussian sw=1 n=64"),
        ({"output_activation": "linear"}, "L=10 sigmoid gaussian sw=1 n=64 out=linear"),
        ({"task": "train"}, "digits L=10 sigmoid gaussian sw=1 n=64"),
    ],
)
def test_run_name(changes: dict, expected: str) -> None:
    d = schema.defaults()
    for key, value in changes.items():
        if isinstance(value, dict):
            d[key].update(value)
        else:
            d[key] = value
    assert app.run_name(d) == expected


def test_constraint_vocabulary() -> None:
    positive = Interval(int, 1, None, closed="left")
    assert positive.describe() == "an integer >= 1"
    assert not positive.is_satisfied_by(0) and positive.is_satisfied_by(1)
    unit = Interval(float, 0, 1, closed="left")
    assert unit.describe() == "a finite number in [0, 1)"
    assert unit.is_satisfied_by(0.0) and not unit.is_satisfied_by(1.0)
    assert not unit.is_satisfied_by(float("nan"))
    assert Interval(float, 0, 100, closed="right").describe() == (
        "a finite number in (0, 100]"
    )
    assert Options(("a", "b")).describe() == "valid: a, b"
    uri = schema.TrackingURI()
    for ok in ("mlruns", "/tmp/x", "sqlite:///x.db", "http://h:5000", "https://h"):
        assert uri.is_satisfied_by(ok), ok
    for bad in ("ftp://nowhere", "sqlite:x.db", "file:///tmp/x", "http://", ""):
        assert not uri.is_satisfied_by(bad), bad
