"""depthlab: depth studies of neural networks.

The library: :class:`Network` and :func:`init_network` (definitions in
:mod:`depthlab.network`), the input-gradient algorithm (:func:`input_gradient`,
:func:`backprop_log10_norms`), Jacobian spectra (:mod:`depthlab.spectra`) and
mean-field theory (:mod:`depthlab.theory`). Studies: ``python -m depthlab``.
"""

from depthlab import spectra, theory
from depthlab.gradient import backprop_log10_norms, cost_gradients, input_gradient
from depthlab.network import Network, init_network
from depthlab.spectra import jacobian_log_singular_values, layer_singular_values

__version__ = "0.1.0"

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
