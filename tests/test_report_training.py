"""Training figures and summary, from a tiny real training sweep and synthetic data."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import run_cli
from matplotlib.figure import Figure

from depthlab import tracking
from depthlab.report.training import (
    FIGURE_TITLES,
    TrainingData,
    best_depth_by_step,
    best_depths,
    depth_statistics,
    prepare_training,
    summary_table,
    trainability_heatmap,
    training_figures,
    welch_p_value,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> tracking.Sweep:
    """A training sweep over three depths, two seeds, run as a user runs it (in
    the sweep's process: test_parallel.py runs training jobs on workers)."""
    cwd = tmp_path_factory.mktemp("train_sweep")
    out = run_cli(
        cwd,
        "n_jobs=1",
        "task=train",
        "depth=2,3,4",
        "width=8",
        "train.dataset=two_spirals",
        "train.steps=60",
        "train.eval_every=20",
        "train.seeds=2",
        "report=false",
        timeout=180,
    )
    assert out.returncode == 0, out.stderr
    uri = tracking.default_uri(cwd)
    return tracking.load_sweep(uri, tracking.latest_sweep_id(uri, "depthlab"))


def _png(fig: Figure) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _with_sigma_w(sweep: tracking.Sweep, values: list[float]) -> tracking.Sweep:
    """The sweep copied once per sigma_w (new run ids): a (sigma_w, depth) grid."""
    runs, finals, curves = [], [], []
    for i, sw in enumerate(values):
        ids = {r: f"{r}-{i}" for r in sweep.runs["run_id"]}
        runs.append(
            sweep.runs.assign(
                run_id=sweep.runs["run_id"].map(ids), **{"params.init.sigma_w": str(sw)}
            )
        )
        for table, parts in (
            (sweep.tables["final"], finals),
            (sweep.tables["curves"], curves),
        ):
            parts.append(table.assign(run_id=table["run_id"].map(ids), sigma_w=sw))
    return tracking.Sweep(
        parent_run_id=sweep.parent_run_id,
        parent_name=sweep.parent_name,
        runs=pd.concat(runs, ignore_index=True),
        tables={
            "final": pd.concat(finals, ignore_index=True),
            "curves": pd.concat(curves, ignore_index=True),
        },
    )


def test_prepare_training(sweep: tracking.Sweep) -> None:
    data = prepare_training(sweep)
    assert len(data.final) == 3 * 2  # depths x seeds
    assert sorted(data.final["depth"].unique()) == [2, 3, 4]
    assert data.datasets == ["two_spirals"]
    assert data.config_keys == []  # only depth varies: one config
    assert data.fixed["width"] == 8 and data.fixed["steps"] == 60
    assert set(data.curves["step"]) == {0, 20, 40, 60}


def test_every_figure_is_drawn_or_explained(sweep: tracking.Sweep) -> None:
    figures = training_figures(sweep)
    assert [f.name for f in figures] == list(FIGURE_TITLES)
    drawn = {name: fig for name, fig, _ in figures}
    for name, fig, text in figures:
        assert text, name
        if name == "training_heatmap":
            assert fig is None and "sigma_w" in text
        else:
            assert isinstance(fig, Figure), (name, text)
            assert _png(fig).startswith(PNG_SIGNATURE)
    # Axis labels name their units.
    ax = drawn["training_depth"].axes[0]
    assert ax.get_ylabel() == "test accuracy"
    assert "depth L" in drawn["training_depth"].axes[-1].get_xlabel()


def test_heatmap_with_sigma_w_swept(sweep: tracking.Sweep) -> None:
    data = prepare_training(_with_sigma_w(sweep, [0.8, 1.0, 1.5]))
    assert data.config_keys == ["sigma_w"]
    _, fig, caption = trainability_heatmap(data)
    assert isinstance(fig, Figure), caption
    assert "xi_c" in caption
    assert _png(fig).startswith(PNG_SIGNATURE)
    # The 6 xi_c line (sigmoid: ordered everywhere here, xi_c finite) is drawn.
    assert any(line.get_xdata().size >= 12 for line in fig.axes[0].get_lines())


def test_no_training_runs() -> None:
    empty = tracking.Sweep("p", "p", pd.DataFrame(), {})
    for _, fig, reason in training_figures(empty):
        assert fig is None and "no finished training runs" in reason
    assert summary_table(prepare_training(empty)).empty


def _frame(
    values: dict[int, list[float]], diverged: dict[int, int] | None = None
) -> pd.DataFrame:
    rows = []
    for depth, accs in values.items():
        for i, acc in enumerate(accs):
            bad = diverged is not None and i < diverged.get(depth, 0)
            rows.append(
                {
                    "dataset": "d",
                    "config": "c",
                    "depth": depth,
                    "diverged": bad,
                    "test_accuracy": np.nan if bad else acc,
                }
            )
    return pd.DataFrame(rows)


def test_best_depth_known_answer() -> None:
    frame = _frame(
        {
            2: [0.50, 0.55, 0.60, 0.52],  # clearly worse
            4: [0.90, 0.91, 0.93, 0.92],  # close to the best
            8: [0.92, 0.93, 0.91, 0.94],  # the best mean (0.925)
            16: [0.99, 0.99, 0.99, 0.99],  # better, but a seed diverged
        },
        diverged={16: 1},
    )
    stats = depth_statistics(frame, "test_accuracy").set_index("depth")
    assert stats["best"].tolist() == [False, False, True, False]
    assert stats["indistinguishable"].tolist() == [False, True, True, False]
    assert not stats.at[16, "eligible"] and stats.at[16, "n_diverged"] == 1
    assert stats.at[16, "n"] == 3
    assert stats.at[2, "p_vs_best"] < 0.05 <= stats.at[4, "p_vs_best"]
    # The 95% Student-t interval of depth 8: 0.925 +- t(0.975, 3) s / 2.
    s = np.std([0.92, 0.93, 0.91, 0.94], ddof=1)
    assert stats.at[8, "ci_high"] - 0.925 == pytest.approx(3.182446 * s / 2, rel=1e-5)
    best = best_depths(stats.reset_index()).iloc[0]
    assert best["best_depth"] == 8
    assert best["indistinguishable"] == [4, 8]
    assert best["ineligible"] == [16]


def test_best_depth_for_a_loss_is_the_lowest() -> None:
    frame = _frame({2: [0.3, 0.31, 0.29], 3: [0.1, 0.11, 0.09], 4: [0.5, 0.5, 0.5]})
    frame = frame.rename(columns={"test_accuracy": "test_loss"})
    stats = depth_statistics(frame, "test_loss")
    assert stats.loc[stats["best"], "depth"].tolist() == [3]
    assert stats.loc[stats["indistinguishable"], "depth"].tolist() == [3]
    # Ties go to the shallower depth.
    tie = _frame({2: [0.5, 0.6], 3: [0.5, 0.6]})
    assert depth_statistics(tie).loc[lambda s: s["best"], "depth"].tolist() == [2]


def test_welch_p_value(rng: np.random.Generator) -> None:
    from scipy import stats

    a, b = rng.normal(0, 1, 5), rng.normal(0.5, 2, 7)
    expected = stats.ttest_ind(a, b, equal_var=False).pvalue
    assert welch_p_value(a, b) == pytest.approx(expected, rel=1e-10)
    assert welch_p_value([1.0, 1.0], [1.0, 1.0]) == 1.0
    assert welch_p_value([1.0, 1.0], [0.5, 0.5]) == 0.0
    assert np.isnan(welch_p_value([1.0], [1.0, 2.0]))


def test_best_depth_by_step(sweep: tracking.Sweep) -> None:
    by_step = best_depth_by_step(prepare_training(sweep))
    assert sorted(by_step["step"]) == [0, 20, 40, 60]
    final = best_depths(depth_statistics(prepare_training(sweep).final))
    last = by_step[by_step["step"] == 60].iloc[0]
    assert last["best_depth"] == final.iloc[0]["best_depth"]


def test_summary_table_is_html_safe(sweep: tracking.Sweep) -> None:
    from depthlab.report.html import table as html_table

    data = prepare_training(sweep)
    table = summary_table(data)
    assert table.iloc[0]["dataset"] == "two_spirals"
    assert table.iloc[0]["beta_best"] == pytest.approx(
        (table.iloc[0]["best_depth"] - 2) / 8
    )
    evil = "<script>x|y</script>"
    hostile = TrainingData(
        final=data.final.assign(dataset=evil),
        curves=data.curves.assign(dataset=evil),
        runs=data.runs.assign(dataset=evil, config="a<b"),
        config_keys=[],
        fixed={"activation": "<i>"},
        configs=data.configs,
        datasets=[evil],
    )
    text = html_table(summary_table(hostile))
    assert "<script>" not in text and "a<b" not in text
    assert "&lt;script&gt;x|y&lt;/script&gt;" in text


def test_where_relabels(sweep: tracking.Sweep) -> None:
    data = prepare_training(_with_sigma_w(sweep, [0.8, 1.5]))
    assert data.configs == ["sigma_w=0.8", "sigma_w=1.5"]
    sub = data.where(sigma_w=1.5)
    assert sub.config_keys == [] and len(sub.runs) == 3
    assert sub.fixed["sigma_w"] == 1.5


def test_figures_of_a_two_config_sweep(sweep: tracking.Sweep, tmp_path: Path) -> None:
    data = prepare_training(_with_sigma_w(sweep, [0.8, 1.5]))
    for name, fig, text in training_figures(data):
        if fig is not None:
            (tmp_path / f"{name}.png").write_bytes(_png(fig))
            if name == "training_depth":
                assert (
                    fig.legends and "sigma_w" in fig.legends[0].get_title().get_text()
                )
        else:
            assert name == "training_heatmap", text
