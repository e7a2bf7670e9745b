"""Figures and tables for training sweeps (``task=train``): is there an optimal depth?

The entry of the report is :func:`training_figures`; the pieces, for studies
(``experiments/optimal_depth/analyze.py``), live in one module each:

- :mod:`~depthlab.report.training_data`: a sweep -> :class:`TrainingData`
  (configs, labels) and :func:`summary_table` (best depth per config);
- :mod:`~depthlab.report.stats`: means, Student-t intervals, Welch's t-test
  (:func:`scipy.stats.ttest_ind`), the best depth and the depths
  indistinguishable from it (definitions there);
- :mod:`~depthlab.report.training_figures`: depth, learning curves, best depth
  against the training budget;
- :mod:`~depthlab.report.training_maps`: trainability over (sigma_w, depth),
  the gradient at initialization against trainability.
"""

from __future__ import annotations

from depthlab.report.stats import (
    ALPHA,
    CONFIDENCE,
    METRICS,
    MIN_SEEDS,
    best_depth_by_step,
    best_depths,
    depth_statistics,
    welch_p_value,
)
from depthlab.report.training_data import (
    CONFIG_KEYS,
    TrainingData,
    config_label,
    prepare_training,
    summary_table,
)
from depthlab.report.training_figures import (
    FIGURE_TITLES,
    TrainingFigure,
    depth_figure,
    learning_curves_figure,
    optimal_depth_vs_step_figure,
)
from depthlab.report.training_maps import (
    XI_MULTIPLE,
    gradient_health_figure,
    trainability_heatmap,
)
from depthlab.tracking import Sweep

__all__ = [
    "ALPHA",
    "CONFIDENCE",
    "CONFIG_KEYS",
    "FIGURE_TITLES",
    "METRICS",
    "MIN_SEEDS",
    "XI_MULTIPLE",
    "TrainingData",
    "TrainingFigure",
    "best_depth_by_step",
    "best_depths",
    "config_label",
    "depth_figure",
    "depth_statistics",
    "gradient_health_figure",
    "learning_curves_figure",
    "optimal_depth_vs_step_figure",
    "prepare_training",
    "summary_table",
    "trainability_heatmap",
    "training_figures",
    "welch_p_value",
]


def training_figures(sweep: Sweep | TrainingData) -> list[TrainingFigure]:
    """Every training figure of a sweep, drawn or with the reason it is not.

    Parameters
    ----------
    sweep : depthlab.tracking.Sweep or TrainingData
        A sweep from :func:`depthlab.tracking.load_sweep` (its training runs are
        used), or data already prepared with :func:`prepare_training`.

    Returns
    -------
    list of TrainingFigure
        ``(name, figure or None, caption or reason)`` in the order
        ``training_depth``, ``training_curves``, ``training_heatmap``,
        ``training_gradient_health``, ``training_best_depth_vs_step``; headings
        in :data:`FIGURE_TITLES`. Render with
        ``FigureCanvasAgg(fig); fig.savefig(...)``.
    """
    data = sweep if isinstance(sweep, TrainingData) else prepare_training(sweep)
    return [
        depth_figure(data),
        learning_curves_figure(data),
        trainability_heatmap(data),
        gradient_health_figure(data),
        optimal_depth_vs_step_figure(data),
    ]
