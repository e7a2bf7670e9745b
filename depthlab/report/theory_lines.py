"""Mean-field lines drawn over the report's figures, computed once per report.

The critical sigma_w (chi_1 = 1) and the correlation depth scale xi_c on a grid of
sigma_w, for the hidden layers. Both are cached per (activation, sigma_b, ratio,
range), so the probe heatmap, the training heatmap and the text ask the theory
once for each config. ``ratio`` is the hidden layers' effective sigma_w over the
nominal one (1 except for schemes such as ``xavier_normal`` on non-square
layers); lines are drawn at the nominal sigma_w.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import pandas as pd

CHAOTIC_POINTS = 7
"""xi_c on the chaotic side costs a 2-D quadrature each: this many points."""
ORDERED_POINTS = 30
"""Points of the xi_c grid on the ordered side of the critical sigma_w."""


def sigma_w_ratio(runs: pd.DataFrame) -> float:
    """The hidden layers' effective sigma_w over the nominal one, for these runs.

    Read from what the probe jobs logged (``theory_sigma_w_eff``); for runs that
    did not log it (training jobs), from the scheme's fan-in scale at the runs'
    width (:func:`depthlab.initializers.effective_sigma_w`).
    """
    if "theory_sigma_w_eff" in runs:
        logged = runs["theory_sigma_w_eff"].to_numpy(dtype=float)
        r = float(np.nanmedian(logged / runs["sigma_w"].to_numpy(dtype=float)))
        if math.isfinite(r) and r > 0:
            return r
    from depthlab.initializers import effective_sigma_w

    first = runs.iloc[0]
    try:
        width = int(first["width"])
        return float(effective_sigma_w(str(first["init"]), width, width, 1.0))
    except (KeyError, ValueError, TypeError, ZeroDivisionError):
        return 1.0


@lru_cache(maxsize=256)
def critical_sigma_w(activation: str, sigma_b: float, ratio: float = 1.0) -> float:
    """The nominal sigma_w at which chi_1 = 1 for the hidden layers.

    Raises
    ------
    ValueError, ArithmeticError
        Where the activation has no critical point.
    """
    from depthlab import theory

    return float(theory.critical_sigma_w(activation, sigma_b)) / ratio


@lru_cache(maxsize=256)
def xi_c_curve(
    activation: str, sigma_b: float, ratio: float, x_range: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray, str]:
    """xi_c on a grid of nominal sigma_w over ``x_range``, dense where it is cheap.

    Returns
    -------
    grid, xi : ndarray
        xi_c is NaN where the theory has no value.
    note : str
        A caption note when there is no critical sigma_w (else empty).
    """
    from depthlab import theory

    note = ""
    critical = None
    try:
        critical = critical_sigma_w(activation, sigma_b, ratio)
    except (ValueError, ArithmeticError) as err:
        note = f" No critical sigma_w for {activation}: {err}."
    lo, hi = x_range
    if critical is not None and lo < critical < hi:
        ordered = np.linspace(lo, critical, ORDERED_POINTS)[:-1]
        chaotic = np.linspace(critical, hi, CHAOTIC_POINTS + 1)[1:]
        grid = np.concatenate([ordered, [critical], chaotic])
    else:
        n = ORDERED_POINTS if critical is None or critical >= hi else 12
        grid = np.linspace(lo, hi, n)
    grid = grid[grid > 0]
    xi = np.full(grid.shape, np.nan)
    for i, sw in enumerate(grid):
        try:
            xi[i] = theory.depth_scales(activation, ratio * sw, sigma_b)[1]
        except (ValueError, ArithmeticError):
            pass
    grid.flags.writeable = False
    xi.flags.writeable = False
    return grid, xi, note
