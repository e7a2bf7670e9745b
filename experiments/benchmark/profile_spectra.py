"""Where one spectra pair of a probe job spends its CPU time, call by call.

``python experiments/benchmark/profile_spectra.py [override ...]``
(default: ``width=1024 input_dim=1024 depth=50``, issue 9's width-1024 case)

Draws network 0 of the job (``engine.make_chunk``), measures it as the probe
does (``engine.measure_chunk``: the gradient at every input and the spectra of
the pairs of that network) with BLAS at one thread, and reports the thread CPU
time (``time.thread_time``: other processes change it little) of every LAPACK
call the spectra make (``dgeqp3``, ``dgejsv``), of the graded QR steps and the
finishing SVDs around them, of the layer SVDs and of the gradient.
"""

from __future__ import annotations

import collections
import sys
import time
from collections.abc import Callable
from typing import Any

import common
import scale
from threadpoolctl import threadpool_limits

from depthlab import spectra
from depthlab.jobs import engine
from depthlab.jobs.probe import ProbeSpec

SECONDS: dict[str, float] = collections.defaultdict(float)
CALLS: collections.Counter[str] = collections.Counter()


def _timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    return common.timed(name, fn, SECONDS, CALLS, clock=time.thread_time)


class _TimedLapack:
    """``scipy.linalg.lapack`` with every function timed (for ``spectra``)."""

    def __init__(self, module: Any) -> None:
        self._module = module

    def __getattr__(self, name: str) -> Any:
        return _timed(name, getattr(self._module, name))


def main(overrides: list[str]) -> None:
    spec = ProbeSpec.from_config(scale._job(overrides))
    layers = engine.spectra_layers(spec)
    print(f"{' '.join(overrides)}: {spec.activation}, spectra layers {layers}")
    spectra.lapack = _TimedLapack(spectra.lapack)
    spectra._graded_qr = _timed("graded QR steps", spectra._graded_qr)
    spectra._log_singular_values = _timed(
        "finishing SVDs", spectra._log_singular_values
    )
    with threadpool_limits(limits=1):
        chunk = _timed("make_chunk (draws)", engine.make_chunk)(spec, [0])
        _timed("measure_chunk", engine.measure_chunk)(chunk, spec)
        _timed("  of which layer SVDs (sv_*)", engine.layer_spectra)(
            chunk.net, chunk.X[:, :1], layers
        )
        _timed("  of which the gradient", engine.backprop_log10_norms)(
            chunk.net, chunk.X
        )
    print("\n| part | calls | CPU seconds |\n| :--- | ---: | ---: |")
    for name, seconds in SECONDS.items():
        print(f"| {name} | {CALLS[name]} | {seconds:.2f} |")
    print(
        "\n(the two `of which` rows are timed again, outside `measure_chunk`; "
        "`dgeqp3` is inside the graded QR steps, `dgejsv` inside the finishing SVDs)"
    )


if __name__ == "__main__":
    main(sys.argv[1:] or ["width=1024", "input_dim=1024", "depth=50"])
