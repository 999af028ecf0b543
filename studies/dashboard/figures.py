"""The dashboard's figures: plotly figures and HTML tables drawn from what ``data`` computed."""
from __future__ import annotations

import html
from typing import Any, Optional

import numpy as np
import pandas as pd

import math

from studies.dashboard.data import evaluated, pareto_front_2d

AXES = {"macs": ("MACs", 1e9, "G"), "params": ("params", 1e6, "M"), "latency_ms": ("latency (ms, batch 1)", 1.0, "")}
STATUS_STYLE = {  # the trials that have no score sit in a strip of their own below the plot (axis y2)
    "over budget": dict(symbol="x-thin-open", color="#e69f00", strip_y=0.3),
    "failed": dict(symbol="triangle-down-open", color="#d62728", strip_y=0.75),
}
STRIP = 0.1  # height of that strip, as a fraction of the figure's plot area
PALETTE = ("#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#17becf", "#bcbd22", "#e377c2", "#7f7f7f", "#aec7e8",
           "#98df8a")
PLOT_CONFIG = {"displaylogo": False, "responsive": True}


def _metric_title(metric: str) -> str:
    """The axis title of a study's first metric, from the evaluator that scores it."""
    from evaluators.base import list_evaluators

    ev = next((e for e in list_evaluators() if e.metric == metric), None)
    return ev.title if ev is not None else f"{metric} (higher = predicted better)"


def _hover(frame: pd.DataFrame, x: str, metric: str) -> tuple[np.ndarray, str]:
    title, scale, unit = AXES[x]
    custom = np.stack([
        frame["trial"].astype(str), frame["layout"].fillna("-").astype(str),
        frame["widths"].map(_slashes), frame["depths"].map(_slashes), frame["arch_id"].fillna("-").astype(str),
        frame["status"].astype(str), frame["macs"].map(lambda v: number_text(v, 1e6, "M")),
        frame["params"].map(lambda v: number_text(v, 1e6, "M")), frame["latency_ms"].map(lambda v: number_text(v, 1, " ms")),
        frame["preset"].fillna("").astype(str), frame["reason"].fillna("").astype(str),
        frame.get("verified_accuracy", pd.Series(math.nan, index=frame.index)).map(
            lambda v: "" if v is None or v != v else f"<br>stand-alone proxy accuracy {v:.4g} (verified)"),
    ], axis=-1) if len(frame) else np.empty((0, 12))
    template = ("trial %{customdata[0]} (%{customdata[5]}) %{customdata[9]}<br>layout %{customdata[1]}<br>"
                "widths %{customdata[2]}<br>depths %{customdata[3]}<br>arch id %{customdata[4]}<br>"
                f"{metric} %{{y:.4g}}<br>MACs %{{customdata[6]}}, params %{{customdata[7]}}, "
                "latency %{customdata[8]}%{customdata[11]}<br>%{customdata[10]}<extra></extra>")
    return custom, template


def _slashes(v: Any) -> str:
    return "/".join(map(str, v)) if isinstance(v, (list, tuple)) else "-"


def number_text(v: Any, scale: float, unit: str) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v / scale:.3g}{unit}"


def front_figure(frame: pd.DataFrame, x: str, metric: str, refs: pd.DataFrame, budget: Optional[float],
                 compare: Optional[tuple[str, pd.DataFrame]] = None):
    import plotly.graph_objects as go

    title, scale, unit = AXES[x]
    fig = go.Figure()
    shown = frame[frame[x].notna()] if not frame.empty else frame
    done = evaluated(shown)
    layouts = list(done["layout"].value_counts().index) if not done.empty else []
    colour = {lay: PALETTE[i % len(PALETTE)] for i, lay in enumerate(layouts)}
    for lay in layouts:
        part = done[done["layout"] == lay]
        custom, template = _hover(part, x, metric)
        fig.add_trace(go.Scatter(x=part[x] / scale, y=part["value"], mode="markers", name=lay, legendgroup="layouts",
                                 legendgrouptitle_text="stage layout", marker=dict(color=colour[lay], size=8,
                                 opacity=0.8), customdata=custom, hovertemplate=template))
    front = pareto_front_2d(done, x)
    if not front.empty:
        custom, template = _hover(front, x, metric)
        fig.add_trace(go.Scatter(x=front[x] / scale, y=front["value"], mode="lines+markers", name="Pareto front",
                                 line=dict(shape="hv", color="black", width=2),
                                 marker=dict(size=13, color="rgba(0,0,0,0)", line=dict(color="black", width=2)),
                                 customdata=custom, hovertemplate=template))
    if compare is not None:
        other_name, other = compare
        other_front = pareto_front_2d(evaluated(other[other[x].notna()]), x) if not other.empty else other
        if not other_front.empty:
            custom, template = _hover(other_front, x, metric)
            fig.add_trace(go.Scatter(x=other_front[x] / scale, y=other_front["value"], mode="lines+markers",
                                     name=f"front of {other_name}", line=dict(shape="hv", color="#999", dash="dash"),
                                     marker=dict(size=6, color="#999"), customdata=custom, hovertemplate=template))
    stopped = shown[(shown["status"] == "stopped") & shown["partial"].notna()] if not shown.empty else shown
    if not stopped.empty:
        custom, template = _hover(stopped, x, metric)
        fig.add_trace(go.Scatter(x=stopped[x] / scale, y=stopped["partial"], mode="markers", name="stopped early",
                                 marker=dict(symbol="circle-open", size=8, color="#7f7f7f"), customdata=custom,
                                 hovertemplate=template.replace(f"{metric} %{{y", "partial accuracy %{y")))
    for status, style in STATUS_STYLE.items():
        part = shown[shown["status"] == status] if not shown.empty else shown
        if part.empty:
            continue
        custom, template = _hover(part, x, metric)
        fig.add_trace(go.Scatter(x=part[x] / scale, y=[style["strip_y"]] * len(part), yaxis="y2", mode="markers",
                                 name=f"{status} (no {metric})", marker=dict(symbol=style["symbol"], size=9,
                                 color=style["color"], line=dict(width=1.5, color=style["color"])), customdata=custom,
                                 hovertemplate=template.replace(f"{metric} %{{y:.4g}}<br>", "")))
    _add_references(fig, refs, x, metric, scale, unit)
    if budget:
        fig.add_vline(x=budget / scale, line=dict(color="#d62728", dash="dash", width=1),
                      annotation_text=f"budget {budget / scale:g}{unit}", annotation_position="top right")
    fig.update_layout(
        title=f"{_metric_title(metric)} vs {title}", height=480, margin=dict(l=60, r=20, t=50, b=50),
        xaxis=dict(title=f"{title} ({unit})" if unit else title, type="log" if x != "latency_ms" else "linear",
                   anchor="y2"),  # the x axis runs below the strip
        yaxis=dict(title=_metric_title(metric), domain=[STRIP + 0.04, 1]),
        # y2: the strip of trials without a score; y3: the published architectures' markers, over the plot
        yaxis2=dict(domain=[0, STRIP], range=[0, 1], fixedrange=True, tickvals=[0.3, 0.75],
                    ticktext=["over budget", "failed"], tickfont=dict(size=9), showgrid=False, zeroline=False),
        yaxis3=dict(overlaying="y", range=[0, 1], visible=False, fixedrange=True),
        legend=dict(font=dict(size=10), groupclick="toggleitem"), hovermode="closest", template="plotly_white")
    return fig


def _add_references(fig, refs: pd.DataFrame, x: str, metric: str, scale: float, unit: str) -> None:
    import plotly.graph_objects as go

    if refs.empty:
        return
    usable = refs[refs[x].notna()]
    known = usable[usable["value"].notna()]
    unknown = usable[usable["value"].isna()]
    def hover(r) -> str:
        top1 = f"{r.published_top1:.1f}%" if r.published_top1 == r.published_top1 and r.published_top1 else "-"
        seen = (f"evaluated here as trial {int(r.trial)}: {metric} {r.value:.4g}" if r.trial == r.trial
                and r.trial is not None else f"not evaluated in this study ({metric} unknown)")
        return (f"<b>{r.name}</b> (published)<br>MACs {r.macs / 1e6:.0f}M, params {r.params / 1e6:.2f}M<br>"
                f"paper: ImageNet top-1 {top1}<br>{seen}<extra></extra>")
    if not known.empty:
        fig.add_trace(go.Scatter(x=known[x] / scale, y=known["value"], mode="markers+text", name="published (evaluated)",
                                 text=known["name"], textposition="top center", textfont=dict(size=10),
                                 marker=dict(symbol="star", size=14, color="#ff7f0e", line=dict(color="black", width=1)),
                                 hovertemplate=[hover(r) for r in known.itertuples()]))
    if not unknown.empty and x != "latency_ms":
        tops = [0.9 - 0.07 * (i % 3) for i in range(len(unknown))]  # staggered, so near labels do not overlap
        xs, ys = [], []
        for v, top in zip(unknown[x] / scale, tops):
            xs += [v, v, None]
            ys += [0.0, top, None]
        fig.add_trace(go.Scatter(x=xs, y=ys, yaxis="y3", mode="lines", name="published (not evaluated)",
                                 legendgroup="refs", line=dict(color="#ff7f0e", dash="dot", width=1), hoverinfo="skip"))
        fig.add_trace(go.Scatter(x=unknown[x] / scale, y=tops, yaxis="y3", mode="markers+text",
                                 text=unknown["name"], textposition="top center", textfont=dict(size=9, color="#b35900"),
                                 legendgroup="refs", showlegend=False,
                                 marker=dict(symbol="diamond", size=8, color="#ff7f0e"),
                                 hovertemplate=[hover(r) for r in unknown.itertuples()]))


def hypervolume_figure(histories: list[tuple[str, pd.DataFrame]], reference: tuple[float, float], metric: str):
    import plotly.graph_objects as go

    fig = go.Figure()
    for (name, hist), colour in zip(histories, ("black", "#999")):
        fig.add_trace(go.Scatter(x=hist["evaluated"], y=hist["hypervolume"] / 1e9, mode="lines+markers", name=name,
                                 line=dict(shape="hv", color=colour), marker=dict(size=5), customdata=hist["trial"],
                                 hovertemplate="after %{x} evaluated (trial %{customdata})<br>"
                                               "hypervolume %{y:.4g}<extra></extra>"))
    fig.update_layout(
        title=f"hypervolume of the {metric}-vs-MACs front (reference: {reference[0] / 1e9:.3g} GMACs, "
              f"{metric} {reference[1]:.4g})", height=400, margin=dict(l=60, r=20, t=50, b=50),
        xaxis=dict(title="evaluated feasible candidates"), yaxis=dict(title=f"hypervolume ({metric} x GMACs)"),
        template="plotly_white", legend=dict(orientation="h", y=-0.2))
    return fig


def edf_figure(curves: pd.DataFrame, title: str, metric: str, height: int = 330):
    import plotly.graph_objects as go

    fig = go.Figure()
    for i, (group, curve) in enumerate(curves.groupby("group", sort=False)):
        xs = [curve["value"].iloc[0]] + list(curve["value"])
        ys = [0.0] + list(curve["fraction"])
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=f"{group} (n={int(curve['n'].iloc[0])})",
                                 line=dict(shape="hv", color=PALETTE[i % len(PALETTE)], width=2),
                                 hovertemplate=f"{html.escape(str(group))}<br>{metric} %{{x:.4g}}: "
                                               "%{y:.0%} of trials at or below<extra></extra>"))
    fig.update_layout(title=dict(text=title, font=dict(size=13)), height=height, template="plotly_white",
                      showlegend=True,
                      margin=dict(l=50, r=10, t=40, b=40), xaxis=dict(title=metric),
                      yaxis=dict(title="cumulative fraction", range=[0, 1.02]),
                      legend=dict(font=dict(size=10), orientation="h", y=-0.25))
    return fig


def importance_figure(importances: pd.Series, top: int = 15):
    import plotly.graph_objects as go

    shown = importances[importances > 0].iloc[:top].iloc[::-1]
    fig = go.Figure(go.Bar(x=shown.values, y=list(shown.index), orientation="h", marker_color="#1f77b4",
                           hovertemplate="%{y}: %{x:.3f}<extra></extra>"))
    title = "parameter importances (PED-ANOVA, first objective)"
    if len(importances) > len(shown):
        title += f": the {len(shown)} largest of {len(importances)}"
    fig.update_layout(title=title, template="plotly_white",
                      height=max(260, 26 * len(shown) + 90), margin=dict(l=260, r=20, t=40, b=40),
                      xaxis=dict(title="importance (sums to 1)"))
    return fig


TABLE_COLUMNS = (("trial", "trial"), ("status", "status"), ("value", None), ("macs", "MACs (M)"),
                 ("params", "params (M)"), ("latency_ms", "latency (ms)"), ("layout", "layout"), ("widths", "widths"),
                 ("depths", "depths"), ("arch_id", "arch id"), ("preset", "preset"), ("reason", "note"))


def trial_table(frame: pd.DataFrame, metric: str) -> str:
    """A plain HTML table; every cell carries its sort key in ``data-v``."""
    head = "".join(f"<th>{html.escape(title or metric)}</th>" for _, title in TABLE_COLUMNS)
    rows = []
    for r in frame.sort_values("trial").itertuples(index=False):
        cells = []
        for key, _ in TABLE_COLUMNS:
            v = getattr(r, key)
            if key == "value" and (v is None or v != v) and r.status == "stopped" and r.partial == r.partial:
                sort, text = r.partial, f"({r.partial:.4g})"  # partial accuracy of a stopped trial
            elif key in ("macs", "params"):
                sort, text = v, "-" if v is None or v != v else f"{v / 1e6:,.{0 if key == 'macs' else 2}f}"
            elif key in ("widths", "depths"):
                sort, text = (sum(v) if isinstance(v, (list, tuple)) else None), _slashes(v)
            elif isinstance(v, float):
                sort, text = v, "-" if v != v else f"{v:.4g}"
            else:
                sort, text = v, "-" if v is None or v != v else str(v)
            if key == "trial" and r.on_front:
                text += " *"
            key_text = "" if sort is None or (isinstance(sort, float) and sort != sort) else str(sort)
            cells.append(f'<td data-v="{html.escape(key_text)}">{html.escape(text)}</td>')
        rows.append(f'<tr class="{r.status.replace(" ", "-")}">' + "".join(cells) + "</tr>")
    return (f'<table class="sortable"><thead><tr>{head}</tr></thead><tbody>' + "\n".join(rows)
            + "</tbody></table>")


