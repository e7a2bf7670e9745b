"""depthlab: depth studies of neural networks.

The library: :class:`Network` and :func:`init_network` (definitions in
:mod:`depthlab.network`), the input-gradient algorithm (:func:`input_gradient`,
:func:`backprop_log10_norms`), Jacobian spectra (:mod:`depthlab.spectra`) and
mean-field theory (:mod:`depthlab.theory`). Studies: ``python -m depthlab``.

The names below are imported when first used (PEP 562), so that
``python -m depthlab``, whose sweep process only composes, tracks and
reports, does not import scipy and the numerical core it leaves to its
workers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "spectra": "depthlab.spectra",
    "theory": "depthlab.theory",
    "backprop_log10_norms": "depthlab.gradient",
    "cost_gradients": "depthlab.costs",
    "input_gradient": "depthlab.gradient",
    "Network": "depthlab.network",
    "init_network": "depthlab.network",
    "jacobian_log_singular_values": "depthlab.spectra",
    "layer_singular_values": "depthlab.spectra",
}

__all__ = [
    "Network",
    "__version__",
    "backprop_log10_norms",
    "cost_gradients",
    "init_network",
    "input_gradient",
    "jacobian_log_singular_values",
    "layer_singular_values",
    "spectra",
    "theory",
]

if TYPE_CHECKING:
    from depthlab import spectra, theory
    from depthlab.gradient import backprop_log10_norms, cost_gradients, input_gradient
    from depthlab.network import Network, init_network
    from depthlab.spectra import jacobian_log_singular_values, layer_singular_values


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'depthlab' has no attribute {name!r}")
    value = importlib.import_module(module)
    if name != module.rsplit(".", 1)[1]:
        value = getattr(value, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
