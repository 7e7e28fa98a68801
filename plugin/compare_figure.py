"""The quality-per-cost plot of a comparison: each setup a point, the Pareto front a line.

Two renderings of one drawing, from plain values (no database): :func:`pareto_figure`
for the App and notebooks (plotly, which FiftyOne ships) and :func:`save_pareto_png`
for a file (matplotlib, which FiftyOne ships too, drawn off-screen: plotly's own
PNG export needs kaleido, which is not a dependency).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional, Sequence

import plotly.graph_objects as go
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


@dataclass(frozen=True)
class PlotPoint:
    """One measured setup as drawn."""

    name: str
    cost: float
    quality: float
    on_front: bool
    recommended: bool


def _title(metric: str, samples: int) -> str:
    return f"{metric} vs cost on {samples} reference sample(s): the Pareto front, and the recommendation"


def pareto_figure(points: Sequence[PlotPoint], *, metric: str, samples: int,
                  floor: Optional[float] = None) -> go.Figure:
    """The plot as a plotly figure: setups as points (hover for name, cost, quality), the
    front as a line, the recommendation as a star, the tolerance floor as a dashed line."""
    figure = go.Figure()
    front = sorted((p for p in points if p.on_front), key=lambda p: p.cost)
    if front:
        figure.add_trace(go.Scatter(x=[p.cost for p in front], y=[p.quality for p in front], mode="lines",
                                    name="Pareto front", line={"color": "grey"}, hoverinfo="skip"))
    others = [p for p in points if not p.recommended]
    figure.add_trace(go.Scatter(
        x=[p.cost for p in others], y=[p.quality for p in others], mode="markers+text", name="setups",
        text=[p.name for p in others], textposition="top center", marker={"size": 10},
        hovertemplate="%{text}<br>$%{x:.4f}<br>" + metric + " %{y:.3f}<extra></extra>"))
    for p in points:
        if p.recommended:
            figure.add_trace(go.Scatter(
                x=[p.cost], y=[p.quality], mode="markers+text", name=f"recommended: {p.name}", text=[p.name],
                textposition="bottom center", marker={"size": 18, "symbol": "star", "color": "gold",
                                                      "line": {"color": "black", "width": 1}},
                hovertemplate="%{text} (recommended)<br>$%{x:.4f}<br>" + metric + " %{y:.3f}<extra></extra>"))
    if floor is not None:
        figure.add_hline(y=floor, line_dash="dash", line_color="grey",
                         annotation_text="best − tolerance", annotation_position="bottom right")
    figure.update_layout(title=_title(metric, samples), xaxis_title="cost on the reference samples (US$)",
                         yaxis_title=metric)
    return figure


def save_pareto_png(points: Sequence[PlotPoint], path: str, *, metric: str, samples: int,
                    floor: Optional[float] = None) -> str:
    """Draws the plot into a PNG file with matplotlib.

    Returns:
        ``path``.
    """
    figure = Figure(figsize=(7, 5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    front = sorted((p for p in points if p.on_front), key=lambda p: p.cost)
    if front:
        axes.plot([p.cost for p in front], [p.quality for p in front], color="grey", label="Pareto front")
    for p in points:
        if p.recommended:
            axes.scatter([p.cost], [p.quality], marker="*", s=260, color="gold", edgecolors="black", zorder=3,
                         label=f"recommended: {p.name}")
        else:
            axes.scatter([p.cost], [p.quality], s=40, color="tab:blue", zorder=2)
        axes.annotate(p.name, (p.cost, p.quality), textcoords="offset points", xytext=(6, 4), fontsize=8)
    if floor is not None:
        axes.axhline(floor, linestyle="--", color="grey", linewidth=1, label="best − tolerance")
    axes.set(xlabel="cost on the reference samples (US$)", ylabel=metric)
    axes.set_title(_title(metric, samples), fontsize=9)
    axes.legend(loc="lower right", fontsize=8)
    axes.margins(x=0.15, y=0.1)
    figure.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path, format="png")
    return path
