"""The matrix-product backends of the gradient passes (depthlab.backend).

numpy (the default) must give the numbers it gave without a backend, bit for
bit; torch must agree with it to rounding (backend.TOLERANCE: float64 1e-12,
float32 1e-5 relative) on every activation family and architecture the gradient
supports, with torch doing every product. The torch tests are skipped where
torch is not installed.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import make_net, run_python
from test_engine import SPEC

from depthlab import backend
from depthlab.gradient import backprop_log10_norms, input_gradient
from depthlab.jobs import engine, validate
from depthlab.jobs.schema import ConfigError

ARCHITECTURES = {
    "mlp": {},
    "resnet": {"architecture": "resnet"},
    "layernorm": {"norm": "layer"},
    "resnet+layernorm": {"architecture": "resnet", "norm": "layer"},
}

LAYOUTS = [
    # (widths, networks in the stack, inputs): the code paths of the gradient
    ([6, 16, 16, 1], None, 5),  # one network, inputs as columns, small layers
    ([6, 16, 16, 3], 4, 5),  # a stack, n_L > 1 (the _step products)
    ([20, 20, 20, 20, 20, 1], 3, 100),  # a stack, groups of networks
    ([256, 256, 256, 1], None, 64),  # float64: inputs as rows (_use_rows)
    ([300, 256, 256, 256, 1], None, 8),  # torch: its rows kernel, n_1 != n_2
]


def _cases(arch: str, activation: str, dtype: type) -> list[tuple]:
    out = []
    for seed, (widths, stack, batch) in enumerate(LAYOUTS):
        net = make_net(
            widths,
            seed,
            activation=activation,
            sigma_w=1.5,
            num_networks=stack,
            dtype=dtype,
            **ARCHITECTURES[arch],
        )
        X = np.random.default_rng(seed + 10).standard_normal((batch, widths[0]))
        out.append((net, X.astype(dtype)))
    return out


def _results(net, X, **kw) -> tuple[np.ndarray, ...]:
    norms, outputs = backprop_log10_norms(net, X, return_outputs=True, **kw)
    return input_gradient(net, X, **kw), norms, outputs, input_gradient(net, X[0], **kw)


def _rel_diff(got: np.ndarray, ref: np.ndarray, floor: float = 0.0) -> float:
    """max |got - ref| / max(max |ref|, floor) over the finite entries (0 if
    both are all zeros, e.g. the outputs of a ReLU output layer); the
    non-finite ones (-inf: an exactly zero gradient) must be the same."""
    finite = np.isfinite(ref)
    assert np.array_equal(np.isfinite(got), finite)
    assert np.array_equal(got[~finite], ref[~finite])
    scale = max(float(np.max(np.abs(ref[finite]), initial=0.0)), floor)
    diff = float(np.max(np.abs(got[finite] - ref[finite]), initial=0.0))
    return diff / scale if scale else (float("inf") if diff else 0.0)


@pytest.fixture
def torch_calls(monkeypatch) -> list:
    """torch's products (matmul, and the rows kernel's addmm and mm), counted
    (and the intra-op threads of each call recorded)."""
    torch = pytest.importorskip("torch")
    calls: list[int] = []

    def counting(product):
        def counted(*args, **kwargs):
            calls.append(torch.get_num_threads())
            return product(*args, **kwargs)

        return counted

    for name in ("matmul", "addmm", "mm"):
        monkeypatch.setattr(torch, name, counting(getattr(torch, name)))
    return calls


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("activation", ["tanh", "relu", "sigmoid"])
def test_numpy_backend_is_the_default_bitwise(arch: str, activation: str) -> None:
    for dtype in (np.float64, np.float32):
        for net, X in _cases(arch, activation, dtype):
            for got, ref in zip(
                _results(net, X, backend="numpy"), _results(net, X), strict=True
            ):
                assert got.dtype == ref.dtype and np.array_equal(
                    got, ref, equal_nan=True
                )


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("activation", ["tanh", "relu", "sigmoid"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_torch_agrees_with_numpy_to_rounding(
    arch: str, activation: str, dtype: str, torch_calls: list
) -> None:
    tol = backend.TOLERANCE[dtype]
    for net, X in _cases(arch, activation, np.dtype(dtype).type):
        before = len(torch_calls)
        got = _results(net, X, backend="torch")
        assert len(torch_calls) - before >= 4 * (net.depth - 1)  # every product
        ref = _results(net, X)
        for name, g, r, floor in zip(
            ("gradient", "log10 norms", "outputs", "one input's gradient"),
            got,
            ref,
            (0.0, 1.0, 0.0, 0.0),
            strict=True,
        ):
            assert g.shape == r.shape and g.dtype == r.dtype, name
            assert _rel_diff(g, r, floor) <= tol, name


def test_torch_threads_follow_the_split_and_come_back(
    monkeypatch, torch_calls: list
) -> None:
    """Inputs split over k threads: every torch product runs on one thread,
    and torch's thread setting is what it was afterwards."""
    import depthlab.gradient as gradient

    torch = pytest.importorskip("torch")
    monkeypatch.setattr(gradient, "_MIN_PART", 16)
    monkeypatch.setattr(gradient, "threads", lambda backend: 3)
    net = make_net([8, 12, 12, 1], 0)
    X = np.random.default_rng(1).standard_normal((70, 8))
    before = torch.get_num_threads()
    got = input_gradient(net, X, backend="torch")
    assert torch_calls and set(torch_calls) == {1}
    assert torch.get_num_threads() == before
    tol = backend.TOLERANCE["float64"]
    assert _rel_diff(got, input_gradient(net, X)) <= tol


@pytest.mark.parametrize("name", backend.BACKENDS)
def test_matmul_writes_into_out_and_refuses_a_wrong_one(name: str) -> None:
    if name == "torch":
        pytest.importorskip("torch")
    mm = backend.matmul_for(name)
    rng = np.random.default_rng(3)
    W = rng.standard_normal((4, 5, 6))
    A = rng.standard_normal((6, 7))  # broadcast over the stack
    out = np.empty((4, 5, 7))
    Wt = np.swapaxes(W, -1, -2)  # a transposed view: no copy needed
    np.testing.assert_allclose(mm(Wt, W, None), Wt @ W, rtol=1e-14)
    assert mm(W, A, out) is out
    np.testing.assert_allclose(out, W @ A, rtol=1e-14)
    with pytest.raises(ValueError):
        mm(W, A, np.empty((4, 5, 6)))


def test_an_unknown_backend_is_refused_in_one_line() -> None:
    net = make_net([3, 4, 1], 0)
    with pytest.raises(ValueError, match=r"^backend='cupy' cannot be used: unknown"):
        input_gradient(net, np.ones(3), backend="cupy")  # type: ignore[arg-type]


def test_the_core_does_not_import_torch(tmp_path: Path) -> None:
    code = (
        "import sys, numpy as np\n"
        "import depthlab, depthlab.gradient, depthlab.jobs.engine\n"
        "from depthlab import init_network, input_gradient\n"
        "net = init_network([3, 4, 1], activation='tanh', init='gaussian',\n"
        "    sigma_w=1.0, sigma_b=0.0, rng=np.random.default_rng(0))\n"
        "input_gradient(net, np.ones((2, 3)), backend='numpy')\n"
        "print('torch' in sys.modules)\n"
    )
    out = run_python(tmp_path, "-c", code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_the_validator_refuses_torch_when_it_is_not_installed(monkeypatch) -> None:
    monkeypatch.setattr(backend, "_torch_importable", lambda: False)
    with pytest.raises(ConfigError) as err:
        validate.check_value("probe.backend", "torch")
    assert str(err.value) == (
        "probe.backend='torch' is not allowed; probe.backend must be one of "
        "numpy, torch (torch is not installed: pip install torch)"
    )
    assert validate.check_value("probe.backend", "numpy") == "numpy"


def test_the_cli_refuses_torch_before_any_run_when_it_is_missing(
    tmp_path: Path,
) -> None:
    """``import torch`` made to fail (sys.modules["torch"] = None): exit 2, one
    line, no store."""
    code = (
        "import runpy, sys\n"
        "sys.modules['torch'] = None\n"
        "sys.argv = ['depthlab', 'probe.backend=torch', 'report=false']\n"
        "runpy.run_module('depthlab', run_name='__main__', alter_sys=True)\n"
    )
    out = run_python(tmp_path, "-c", code)
    assert out.returncode == 2, (out.stdout, out.stderr)
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "probe.backend='torch' is not allowed" in lines[0]
    assert not (tmp_path / "mlflow.db").exists()


def test_the_engine_measures_with_the_spec_backend(torch_calls: list) -> None:
    """probe.backend=torch: the chunks' norms to rounding, spectra unchanged,
    torch on one thread in every worker, its setting restored."""
    torch = sys.modules["torch"]
    before = torch.get_num_threads()
    ref = engine.run_chunks(SPEC, range(SPEC.networks), threads=2)
    assert not torch_calls
    spec = dataclasses.replace(SPEC, backend="torch")
    got = engine.run_chunks(spec, range(SPEC.networks), threads=2)
    assert torch_calls and set(torch_calls) == {1}
    assert torch.get_num_threads() == before
    tol = backend.TOLERANCE["float64"]
    for g, r in zip(got, ref, strict=True):
        assert _rel_diff(g.log10_norms, r.log10_norms, 1.0) <= tol
        assert _rel_diff(g.outputs, r.outputs) <= tol
        for a, b in zip(g.pairs.jac_log10_sv, r.pairs.jac_log10_sv, strict=True):
            assert np.array_equal(a, b)


TAIL_Z = {"float64": (20.0, 40.0), "float32": (8.0, 40.0)}
"""|z| at which the tails are tested: sigma'(z) from ~1e-17 to 1e-35 (tanh,
float64), where 1 - tanh^2 and s (1 - s) are 0 or have no correct digit;
float32 from where those lose their digits to 40 (tanh' ~ 7e-35: normal)."""


@pytest.mark.parametrize("activation", sorted(backend.TORCH_ACTIVATIONS))
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_torch_sigma_prime_keeps_numpys_exact_tails(
    activation: str, dtype: str
) -> None:
    """The torch kernel's sigma' at large |z|: numpy's exact tails, relatively
    (not 1 - tanh^2 = 0), and sigma itself, on both signs."""
    torch = pytest.importorskip("torch")
    from depthlab.activations import get_activation

    sigma = get_activation(activation)
    lo, hi = TAIL_Z[dtype]
    z = np.linspace(lo, hi, 41).astype(dtype)
    z = np.concatenate([-z, z, np.linspace(-3, 3, 14, dtype=dtype)]).reshape(3, -1)
    ref_d, ref_a = sigma.derivative(z), sigma.fn(z)
    zt, a = torch.from_numpy(z.copy()), torch.empty(z.shape, dtype=zt_dtype(dtype))
    d = backend._activate(torch, sigma, zt, a).numpy()
    assert np.all(ref_d > 0) and np.all(d > 0)
    tol = backend.TOLERANCE[dtype]
    assert np.max(np.abs(d / ref_d - 1)) <= tol
    assert _rel_diff(a.numpy(), ref_a) <= tol


def zt_dtype(dtype: str):
    return getattr(sys.modules["torch"], dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_torch_kernel_gradients_in_the_tails(dtype: str) -> None:
    """A network whose pre-activations reach |z| ~ 20-40 (float64; sigma'
    ~ 1e-17 .. 1e-35): the torch kernel's gradients and log10 norms equal
    numpy's relatively, however small (1 - tanh^2 would give 0 and -inf)."""
    pytest.importorskip("torch")
    from depthlab import Network

    rng = np.random.default_rng(5)
    n, depth = 256, 6
    lo, hi = TAIL_Z[dtype]
    weights = [rng.standard_normal((n, n)) / np.sqrt(n) for _ in range(depth - 2)]
    weights.append(rng.standard_normal((1, n)) / np.sqrt(n))
    # large biases put every neuron deep in the tails
    biases = [rng.uniform(lo, hi, n) * rng.choice([-1, 1], n) for _ in weights[:-1]]
    biases.append(np.zeros(1))
    net = Network(
        [w.astype(dtype) for w in weights], [b.astype(dtype) for b in biases], "tanh"
    )
    X = rng.standard_normal((64, n)).astype(dtype)
    ref = backprop_log10_norms(net, X)
    got = backprop_log10_norms(net, X, backend="torch")
    assert np.all(np.isfinite(ref)) and np.all(np.isfinite(got))
    assert ref[:, 0].max() < -20  # far below what 1 - tanh^2 resolves
    assert _rel_diff(got, ref, 1.0) <= backend.TOLERANCE[dtype]
    g, r = input_gradient(net, X, backend="torch"), input_gradient(net, X)
    if dtype == "float64":  # float32's gradient underflows to 0 here
        assert np.all(r != 0) and np.max(np.abs(g / r - 1)) <= 1e-10


def test_torch_inputs_with_leading_axes_on_one_network() -> None:
    """Inputs (K, B, n_1) on one wide network (not the rows kernel's one
    matrix): the same numbers to rounding, of the same shape."""
    pytest.importorskip("torch")
    net = make_net([256, 256, 256, 1], 0)
    X = np.random.default_rng(0).standard_normal((2, 16, 256))
    tol = backend.TOLERANCE["float64"]
    for fn, floor in ((input_gradient, 0.0), (backprop_log10_norms, 1.0)):
        got, ref = fn(net, X, backend="torch"), fn(net, X)
        assert got.shape == ref.shape
        assert _rel_diff(got, ref, floor) <= tol
