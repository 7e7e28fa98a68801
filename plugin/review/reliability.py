"""The reliability diagram of an evaluation: confidence against the share of labels people kept.

A point per confidence bin of :attr:`EvaluationReport.reliability`: its mean
confidence across, the share of its labels reviewers kept up; on the diagonal a
confidence means what it says, below it the labels were overconfident. When the
report's confidences were calibrated, the raw ones are drawn beside.

Two renderings of one drawing: :func:`reliability_figure` for the App and
notebooks (plotly, which FiftyOne ships), :func:`save_reliability_png` for a file
(matplotlib, which FiftyOne ships too; drawn off-screen with its Agg canvas,
so no display and no global pyplot state).
"""

from __future__ import annotations

import os
from typing import Sequence

import plotly.graph_objects as go
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..calibration import ReliabilityBin
from .evaluation import EvaluationReport
from .status import ReviewError


def _series(report: EvaluationReport) -> list[tuple[str, Sequence[ReliabilityBin]]]:
    """``(legend, bins)`` to draw, raw first; refuses a report without confidences."""
    if report.ece is None:
        raise ReviewError(f"the evaluation of {report.label_field!r} has no reviewed proposal with a "
                          "confidence: there is nothing to draw (runs with confidence=True have one)")
    if report.calibrated_runs:
        return [(f"raw (ECE {report.raw_ece:.3f})", report.raw_reliability),
                (f"calibrated (ECE {report.ece:.3f})", report.reliability)]
    return [(f"confidence (ECE {report.ece:.3f})", report.reliability)]


def _title(report: EvaluationReport) -> str:
    return f"{report.label_field}: confidence vs kept by reviewers ({report.samples} reviewed sample(s))"


def reliability_figure(report: EvaluationReport) -> go.Figure:
    """The reliability diagram as a plotly figure (hover a point for its bin and count).

    Raises:
        ReviewError: the report has no confidences.
    """
    figure = go.Figure()
    figure.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfectly calibrated",
                                line={"dash": "dash", "color": "grey"}, hoverinfo="skip"))
    for name, bins in _series(report):
        figure.add_trace(go.Scatter(
            x=[b.mean_predicted for b in bins], y=[b.observed for b in bins], mode="lines+markers", name=name,
            customdata=[[b.lower, b.upper, b.count] for b in bins],
            hovertemplate="confidence %{customdata[0]:.1f}–%{customdata[1]:.1f}<br>mean %{x:.3f}, "
                          "kept %{y:.3f}<br>%{customdata[2]} label(s)<extra></extra>",
        ))
    figure.update_layout(title=_title(report), xaxis_title="mean confidence in the bin",
                         yaxis_title="share kept by reviewers", xaxis_range=[0, 1], yaxis_range=[0, 1.02],
                         legend={"x": 0.02, "y": 0.98})
    return figure


def save_reliability_png(report: EvaluationReport, path: str) -> str:
    """Draws the reliability diagram into a PNG file, with matplotlib; each point labelled with its count.

    Returns:
        ``path``.

    Raises:
        ReviewError: the report has no confidences.
    """
    series = _series(report)
    figure = Figure(figsize=(6, 5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    for name, bins in series:
        xs, ys = [b.mean_predicted for b in bins], [b.observed for b in bins]
        axes.plot(xs, ys, marker="o", label=name)
        for b in bins:
            axes.annotate(str(b.count), (b.mean_predicted, b.observed), textcoords="offset points",
                          xytext=(4, -10), fontsize=7)
    axes.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="mean confidence in the bin", ylabel="share kept by reviewers")
    axes.set_title(_title(report), fontsize=9)
    axes.legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, format="png")
    return path
