"""Every bad input is refused with one exact line, in process.

A command line goes through what the CLI and the sweep do before any run or
store exists: depthlab's rewrite (ranges, the precheck of every value against
the schema), Hydra's composition (``hydra.compose``), then
:func:`depthlab.jobs.validate.validate` on the composed job. The CLI's own wiring
(exit status 2, stderr, no store) is tested with subprocesses in test_sweep.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose
from hydra.core.override_parser.overrides_parser import OverridesParser

from depthlab.jobs import validate
from depthlab.jobs.schema import ConfigError
from depthlab.sweep import app
from depthlab.sweep.cli import UsageError, rewrite_argv

GIB = 2**30


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, big_machine: None) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def refusal(*args: str) -> str:
    """The one-line error for a command line, or '' if every job is valid."""
    try:
        argv = rewrite_argv(list(args))
    except UsageError as err:
        return str(err)
    overrides = [a for a in argv if not a.startswith("-")]
    parsed = OverridesParser.create().parse_overrides(overrides)
    if any(o.is_sweep_override() for o in parsed):
        raise AssertionError("refusal() takes single jobs")
    try:
        validate.validate(app.job_dict(compose("config", overrides=overrides)))
    except ConfigError as err:
        return str(err)
    return ""


SCALE = (
    "must be a finite number in [0, 100] (a standard deviation; beyond 100 the "
    "forward pass and the theory overflow)"
)
URIS = (
    "allowed: a directory path (its mlflow.db), sqlite:///FILE, http://HOST:PORT "
    "or https://HOST (an MLflow server)"
)
PROBE_MEMORY = (
    "is not allowed: one job needs about {} GiB of memory and this machine has "
    "16 GiB; allowed: sizes that fit (lower depth, width, input_dim, "
    "probe.networks or probe.inputs)"
)
DEPTH_1 = (
    "depth=1 is not allowed; depth must be an integer >= 2 (depth counts the "
    "input layer)"
)

BAD_INPUTS = [
    # non-finite and overflowing numbers
    (["init.sigma_w=nan"], f"init.sigma_w=nan is not allowed; init.sigma_w {SCALE}"),
    (["init.sigma_w=inf"], f"init.sigma_w=inf is not allowed; init.sigma_w {SCALE}"),
    (["init.sigma_w=-inf"], f"init.sigma_w=-inf is not allowed; init.sigma_w {SCALE}"),
    (
        ["init.sigma_w=1e308"],
        f"init.sigma_w=1e+308 is not allowed; init.sigma_w {SCALE}",
    ),
    (["init.sigma_b=1e3"], f"init.sigma_b=1000.0 is not allowed; init.sigma_b {SCALE}"),
    (["init.sigma_w=-1"], f"init.sigma_w=-1.0 is not allowed; init.sigma_w {SCALE}"),
    (
        ["init.sigma_w=0.5,1,nan"],
        f"init.sigma_w=nan is not allowed; init.sigma_w {SCALE}",
    ),
    # ranges
    (["depth=1"], DEPTH_1),
    (["depth=1..3"], DEPTH_1),
    (["width=0"], "width=0 is not allowed; width must be an integer >= 1"),
    (["width=-4"], "width=-4 is not allowed; width must be an integer >= 1"),
    (
        ["probe.networks=0"],
        "probe.networks=0 is not allowed; probe.networks must be an integer >= 1",
    ),
    (["seed=-1"], "seed=-1 is not allowed; seed must be an integer in [0, 4294967295]"),
    (
        ["seed=1" + "0" * 30],
        "seed=1" + "0" * 30 + " is not allowed; seed must be an integer in "
        "[0, 4294967295]",
    ),
    (
        ["width=1" + "0" * 400],
        "depth=10 width=1" + "0" * 400 + " input_dim=64 probe.networks=64 "
        "probe.inputs=8 " + PROBE_MEMORY.format("1.71e+793"),
    ),
    (
        ["hidden_widths=[2,0]", "depth=4"],
        "hidden_widths=[2, 0] is not allowed; hidden_widths must be a list, each "
        "an integer >= 1",
    ),
    (
        ["task=train", "train.learning_rate=0"],
        "train.learning_rate=0.0 is not allowed; train.learning_rate must be a "
        "finite number in (0, 100]",
    ),
    (
        ["task=train", "train.momentum=1"],
        "train.momentum=1.0 is not allowed; train.momentum must be a finite number "
        "in [0, 1)",
    ),
    # names and types
    (
        ["activation=swish"],
        "activation='swish' is not allowed; valid: elu, erf, gelu, hard_tanh, "
        "leaky_relu, linear, relu, sigmoid, silu, softplus, tanh",
    ),
    (
        ["init=kaiming"],
        "init='kaiming' is not allowed; valid: gaussian, he_normal, higham, "
        "lecun_normal, orthogonal, uniform, xavier_normal, xavier_uniform",
    ),
    (
        ["experiment=nope"],
        "experiment='nope' is not allowed; valid: depth_to_width, edge_of_chaos, "
        "higham_example, optimal_depth, orthogonal_vs_gaussian, vanishing",
    ),
    (["dtype=float16"], "dtype='float16' is not allowed; valid: float64, float32"),
    (["depth=x"], "depth='x' is not allowed; depth must be an integer"),
    (["depth=2.5"], "depth=2.5 is not allowed; depth must be an integer"),
    (
        ["init.sigma_w=abc"],
        "init.sigma_w='abc' is not allowed; init.sigma_w must be a number",
    ),
    (["force=yes"], "force='yes' is not allowed; force must be true or false"),
    (
        ["output_activation=swish"],
        "output_activation='swish' is not allowed; valid: sigmoid, tanh, relu, "
        "leaky_relu, linear, hard_tanh, softplus, elu, gelu, silu, erf",
    ),
    (
        ["widht=3"],
        "unknown key 'widht'; valid top-level keys: task, depth, width, "
        "hidden_widths, input_dim, output_dim, activation, output_activation, init, "
        "arch, dtype, seed, force, report, n_jobs, probe, train, tracking",
    ),
    (
        ["probe.network=3"],
        "unknown key 'probe.network'; valid probe keys: probe.networks, "
        "probe.inputs, probe.input_distribution, probe.spectra, "
        "probe.spectra_layers, probe.memory_gb, probe.threads, probe.backend, "
        "probe.rel_err, probe.max_networks",
    ),
    (
        ["depth=50..2"],
        "depth='50..2' is a reversed range; use depth=2..50",
    ),
    (
        ["depth=2..x"],
        "depth='2..x' is not a range; use depth=a..b or depth=a..b:step with "
        "integers a <= b and step >= 1",
    ),
    # URI schemes
    (
        ["tracking.uri=ftp://nowhere"],
        f"tracking.uri='ftp://nowhere' is not allowed; {URIS}",
    ),
    (
        ["tracking.uri=file:///tmp/x"],
        f"tracking.uri='file:///tmp/x' is not allowed; {URIS}",
    ),
    # combinations
    (
        ["task=train", "output_activation=tanh"],
        "output_activation='tanh' is not allowed with train.cost=cross_entropy "
        "(the outputs are logits); use linear or null",
    ),
    (
        ["depth=5", "hidden_widths=[2,3]"],
        "depth=5 does not match hidden_widths=[2, 3]; depth must be 4",
    ),
    # sizes. The probe streams its networks (depthlab.jobs.memory): width=100000
    # needs one network's 7 hidden matrices of 1e10 weights (5.6e11 B = 521 GiB)
    # with its forward, backward and spectra workspace (1.71e3 GiB in all);
    # networks=1e9 keeps every network's norms for exact quantiles (~44 KB each).
    # The training job: 3 seeds x 7.0e10 params x 5 copies x 8 B + 3 x 2000
    # points x 8e5 neurons x 3 x 8 B = 8.5e12 B.
    (
        ["width=100000"],
        "depth=10 width=100000 input_dim=64 probe.networks=64 probe.inputs=8 "
        + PROBE_MEMORY.format("1.71e+03"),
    ),
    (
        ["probe.networks=1000000000"],
        "depth=10 width=64 input_dim=64 probe.networks=1000000000 probe.inputs=8 "
        + PROBE_MEMORY.format("4.07e+04"),
    ),
    (
        ["task=train", "width=100000"],
        "depth=10 width=100000 train.seeds=3 train.batch_size=64 is not allowed: "
        "one job needs about 7.93e+03 GiB of memory and this machine has 16 GiB; "
        "allowed: sizes that fit (lower depth, width, train.seeds or "
        "train.batch_size)",
    ),
]


@pytest.mark.parametrize(
    ("args", "expected"), BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS]
)
def test_bad_input_is_refused_with_one_exact_line(
    hydra_config, in_tmp: Path, args: list[str], expected: str
) -> None:
    assert refusal(*args) == expected
    assert "\n" not in expected
    assert not (in_tmp / "mlflow.db").exists()


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["init.sigma_w=100", "init.sigma_b=0"],
        ["tracking.uri=sqlite:///x.db"],
        ["tracking.uri=http://127.0.0.1:5000"],
        ["tracking.uri=some/dir"],
        ["task=train", "output_activation=linear"],
        ["task=train", "train.cost=quadratic", "output_activation=tanh"],
        ["depth=4", "hidden_widths=[2,3]"],
        ["+experiment=higham_example"],
        ["width=4096", "depth=3"],
        ["input_dim=${width}"],
    ],
)
def test_good_input_passes(hydra_config, in_tmp: Path, args: list[str]) -> None:
    assert refusal(*args) == ""


def test_every_value_of_a_sweep_is_checked() -> None:
    parse = OverridesParser.create().parse_override
    app.check_override(parse("depth=range(2,5)"))
    with pytest.raises(ConfigError, match=r"^depth=1 is not allowed"):
        app.check_override(parse("depth=range(1,5)"))
    with pytest.raises(ConfigError, match=r"^activation='swish' is not allowed"):
        app.check_override(parse("activation=tanh,swish"))
    app.check_override(parse("activation=glob(*)"))  # Hydra expands globs
    app.check_override(parse("hydra.sweep.dir=/anywhere"))


def test_memory_check_uses_the_estimate_it_is_given() -> None:
    from depthlab.jobs import schema

    d = schema.defaults()
    validate.memory_check(d, estimate=lambda _: 10, available=10)
    with pytest.raises(ConfigError, match=r"needs about 1 GiB .* has 0\.5 GiB"):
        validate.memory_check(d, estimate=lambda _: GIB, available=GIB // 2)


def test_probe_estimate_grows_with_every_size() -> None:
    from depthlab.jobs import schema

    d = schema.defaults()
    base = validate.estimate_job_bytes(d)
    for key, value in [
        ("depth", 20),
        ("width", 128),
        ("input_dim", 128),
        ("probe.networks", 128),
        ("probe.inputs", 16),
    ]:
        bigger = schema.defaults()
        section, _, leaf = key.rpartition(".")
        (bigger[section] if section else bigger)[leaf] = value
        assert validate.estimate_job_bytes(bigger) > base, key
    half = schema.defaults()
    half["dtype"] = "float32"
    assert validate.estimate_job_bytes(half) < base
