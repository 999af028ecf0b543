"""`nas dashboard`: one self-contained HTML page about a study (plotly.js inlined, works offline).

Compute first, draw second: the functions above the "drawing" line are pure functions of pandas
frames (or of a study, read once) and are unit-tested; the drawing functions only turn their
output into plotly figures and HTML.

    >>> from studies.dashboard import write_dashboard
    >>> write_dashboard(study, "study.html", compare=random_study)   # doctest: +SKIP

What the page shows:

- Pareto fronts of the first metric (accuracy, or a proxy score) against MACs, params and, when
  measured, latency: feasible trials coloured by stage layout, the 2-D front as a step line,
  stopped trials at their last partial accuracy, over-budget and failed trials in a strip below
  (they have no accuracy), the budgets as dashed lines, and the space's published
  architectures: at their own trial's value when the study evaluated them (seeded presets),
  otherwise as a labelled vertical marker at their MACs / params (accuracy unknown here).
- Hypervolume of the accuracy-vs-MACs front after each evaluated candidate, for this study and
  for a second study given with ``compare`` (e.g. the same search run with ``--sampler random``),
  both against one reference point.
- Design-space views: EDFs of accuracy per stage layout and per searched dimension (binned), as
  in Radosavovic et al., "Designing Network Design Spaces"; parameter importances (PED-ANOVA).
- A sortable table of every trial.
"""
from __future__ import annotations

import html
import math
import warnings
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd

from studies.results import trials_frame

STATUSES = ("feasible", "over budget", "stopped", "failed", "invalid")
MAX_GROUPS = 4  # EDF curves per dimension
MAX_DIMENSIONS = 9  # dimension EDFs shown, most important first
MIN_IMPORTANCE_TRIALS = 5


# ============================================================================ data (pure)
def metric_name(study) -> str:
    return (study.metric_names or ["objective_0"])[0]


def study_frame(study) -> pd.DataFrame:
    """``trials_frame`` plus what the dashboard needs: ``status`` (one of STATUSES), the first
    metric as ``value`` (NaN unless the trial was evaluated: an over-budget trial records a
    placeholder), the last partial accuracy of stopped trials as ``partial``, and the searched
    values of each trial as ``dim:<label>`` columns."""
    frame = trials_frame(study)
    if frame.empty:
        return frame
    metric = metric_name(study)
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    status, partial, stopped_at, dims = [], [], [], []
    for number, state, feasible in zip(frame["trial"], frame["state"], frame["feasible"]):
        t = by_number[number]
        history = t.user_attrs.get("history") or []
        if state == "COMPLETE":
            status.append("feasible" if feasible else "over budget")
        elif state == "PRUNED":
            status.append("stopped")
        elif state == "FAIL":
            status.append("invalid" if t.user_attrs.get("invalid") else "failed")
        else:
            status.append(state.lower())  # running or waiting
        partial.append(float(history[-1]) if history and state != "COMPLETE" else math.nan)
        stopped_at.append(t.user_attrs.get("stopped_at_epoch"))
        dims.append(t.params)
    frame["status"] = status
    frame["value"] = frame[metric].where(frame["status"] == "feasible") if metric in frame else math.nan
    frame["partial"] = partial
    frame["stopped_at_epoch"] = stopped_at
    dim_frame = pd.DataFrame(dims, index=frame.index)
    dim_frame.columns = [f"dim:{c}" for c in dim_frame.columns]
    return pd.concat([frame, dim_frame], axis=1)


def evaluated(frame: pd.DataFrame) -> pd.DataFrame:
    """Feasible evaluated trials, each architecture once (a re-sampled duplicate reuses a result)."""
    if frame.empty:
        return frame
    done = frame[(frame["status"] == "feasible") & frame["value"].notna()]
    return done.sort_values("trial").drop_duplicates("arch_id")


def pareto_front_2d(frame: pd.DataFrame, x: str, y: str = "value") -> pd.DataFrame:
    """Rows not dominated in (smaller ``x``, larger ``y``), sorted by ``x``; ties keep the first trial.

    Along the result both ``x`` and ``y`` increase, so drawn as a step line (``hv``) it is the
    best ``y`` reachable at each ``x``."""
    rows = frame.dropna(subset=[x, y]).sort_values([x, y, "trial"], ascending=[True, False, True])
    keep, best = [], -math.inf
    for idx, value in zip(rows.index, rows[y]):
        if value > best:
            keep.append(idx)
            best = value
    return rows.loc[keep]


def hypervolume_2d(points: list[tuple[float, float]], reference: tuple[float, float]) -> float:
    """Area dominated by ``points`` (x minimised, y maximised) inside the box bounded by
    ``reference`` = (worst x, worst y); points outside the box add nothing."""
    ref_x, ref_y = reference
    inside = sorted((x, y) for x, y in points if x < ref_x and y > ref_y)
    area, covered = 0.0, ref_y
    for x, y in inside:  # by increasing x; only points raising the best y so far add a slab
        if y > covered:
            area += (ref_x - x) * (y - covered)
            covered = y
    return area


def reference_point(frames: list[pd.DataFrame], metric: str, macs_budget: Optional[float]) -> tuple[float, float]:
    """One reference point for every study compared: (MACs, metric). MACs: the budget, or 10%
    above the largest evaluated; metric: 0 for accuracy, else the worst evaluated score."""
    done = pd.concat([evaluated(f) for f in frames if not f.empty]) if any(not f.empty for f in frames) else None
    if done is None or done.empty:
        return (float(macs_budget or 1.0), 0.0)
    ref_x = float(macs_budget) if macs_budget else float(done["macs"].max()) * 1.1
    ref_y = 0.0 if metric == "accuracy" else float(done["value"].min())
    return ref_x, ref_y


def hypervolume_history(frame: pd.DataFrame, reference: tuple[float, float]) -> pd.DataFrame:
    """Hypervolume of the (MACs, value) front after each evaluated candidate, in trial order.

    Columns: ``evaluated`` (1, 2, ...), ``trial`` and ``hypervolume``. Non-decreasing by construction."""
    done = evaluated(frame)
    points, rows = [], []
    for i, (trial, macs, value) in enumerate(zip(done["trial"], done["macs"], done["value"]), 1):
        points.append((float(macs), float(value)))
        rows.append({"evaluated": i, "trial": int(trial), "hypervolume": hypervolume_2d(points, reference)})
    return pd.DataFrame(rows, columns=["evaluated", "trial", "hypervolume"])


def edf(values: Any) -> pd.DataFrame:
    """Empirical distribution function: sorted ``value`` and ``fraction`` = share of samples <= it."""
    v = np.sort(np.asarray(pd.Series(values, dtype=float).dropna(), dtype=float))
    return pd.DataFrame({"value": v, "fraction": np.arange(1, len(v) + 1) / max(len(v), 1)})


def group_values(values: pd.Series, max_groups: int = MAX_GROUPS) -> pd.Series:
    """Labels that split a dimension's values into at most ``max_groups`` groups.

    Few distinct values: one group each. Many numbers: contiguous bins of the sorted distinct
    values holding about equal shares of the samples, labelled ``low-high``. Many other values:
    the most frequent ones and ``other``."""
    present = values.dropna()
    distinct = pd.unique(present)
    if len(distinct) <= max_groups:
        return values.map(lambda v: None if _missing(v) else _label(v))
    numeric = all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))
                  for v in distinct)
    if not numeric:
        top = set(present.map(_label).value_counts().index[:max_groups - 1])
        return values.map(lambda v: None if _missing(v) else (_label(v) if _label(v) in top else "other"))
    counts = present.value_counts().sort_index()
    total, before, bin_of = counts.sum(), 0, {}
    for v, c in counts.items():
        bin_of[v] = min(max_groups - 1, int(before * max_groups / total))
        before += c
    edges = {}
    for v, b in bin_of.items():
        lo, hi = edges.get(b, (v, v))
        edges[b] = (min(lo, v), max(hi, v))
    names = {b: _label(lo) if lo == hi else f"{_label(lo)}-{_label(hi)}" for b, (lo, hi) in edges.items()}
    return values.map(lambda v: None if _missing(v) else names[bin_of[v]])


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _label(v: Any) -> str:
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return f"{float(v):g}"
    return str(v)


def edf_by(frame: pd.DataFrame, column: str, max_groups: int = MAX_GROUPS, value: str = "value") -> pd.DataFrame:
    """EDFs of ``value`` per group of ``column`` (see ``group_values``) over the evaluated trials.

    Long format: ``group``, ``n`` (samples in the group), ``value``, ``fraction``; groups in
    their natural order (numbers ascending)."""
    done = evaluated(frame)
    cols = ["group", "n", "value", "fraction"]
    if done.empty or column not in done:
        return pd.DataFrame(columns=cols)
    groups = group_values(done[column], max_groups)
    parts = []
    for name in _ordered(groups.dropna().unique(), done[column], groups):
        curve = edf(done.loc[groups == name, value])
        curve.insert(0, "n", len(curve))
        curve.insert(0, "group", name)
        parts.append(curve)
    return pd.concat(parts, ignore_index=True)[cols] if parts else pd.DataFrame(columns=cols)


def _ordered(names: Any, raw: pd.Series, groups: pd.Series) -> list:
    def key(name: str) -> tuple:
        members = raw[groups == name].dropna()
        first = members.iloc[0] if len(members) else name
        if name == "other":
            return (2, 0, "")
        if isinstance(first, (int, float, np.integer, np.floating)) and not isinstance(first, (bool, np.bool_)):
            return (0, float(members.min()), "")
        return (1, 0, str(name))
    return sorted(names, key=key)


def searched_dimensions(frame: pd.DataFrame) -> list[str]:
    """The ``dim:`` columns whose value varies among the evaluated trials."""
    done = evaluated(frame)
    return [c for c in frame.columns if c.startswith("dim:") and done[c].dropna().map(_label).nunique() > 1]


def param_importances(study, min_trials: int = MIN_IMPORTANCE_TRIALS) -> tuple[pd.Series, str]:
    """Importances of the searched dimensions for the first objective by optuna's default
    evaluator (PED-ANOVA: how much a dimension's distribution among the top trials differs from
    all of them; no scikit-learn needed; a conditional dimension counts over the trials that have
    it), over the feasible complete trials, each architecture once. Returns (importances sorted descending, note);
    when they cannot be computed the series is empty and the note says why."""
    import optuna
    from optuna.trial import TrialState

    seen, trials = set(), []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if t.user_attrs.get("feasible") and t.values and t.user_attrs.get("arch_id") not in seen:
            seen.add(t.user_attrs.get("arch_id"))
            trials.append(t)
    empty = pd.Series(dtype=float)
    if len(trials) < min_trials:
        return empty, (f"needs at least {min_trials} evaluated feasible trials, the study has {len(trials)}")
    if len({t.values[0] for t in trials}) < 2:
        return empty, "every evaluated trial has the same score: nothing to attribute"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # a single-objective copy, so the evaluator knows which way is better without a target
    copy = optuna.create_study(direction=study.directions[0])
    copy.add_trials([optuna.trial.create_trial(params=t.params, distributions=t.distributions, value=t.values[0])
                     for t in trials])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            found = optuna.importance.get_param_importances(copy)
    except (ValueError, RuntimeError, ZeroDivisionError) as e:
        return empty, f"optuna could not compute importances: {e}"
    if not found or not any(v > 0 for v in found.values()):
        return empty, "no dimension separates the best trials from the rest"
    series = pd.Series(found, dtype=float).sort_values(ascending=False)
    return series, f"PED-ANOVA over {len(trials)} evaluated feasible trials"


def reference_archs(space_name: Optional[str], frame: pd.DataFrame) -> pd.DataFrame:
    """The published architectures of a space with what is known of them here: analytic MACs
    and params (224/256 px, 1000 classes, as the study records), the paper's top-1 and MACs, and,
    when the study evaluated the architecture (a seeded preset or the same arch id), that trial
    and its ``value`` and ``latency_ms``."""
    import nas
    import search_spaces

    cols = ["name", "macs", "params", "published_top1", "published_macs_g", "arch_id", "trial", "value", "latency_ms"]
    try:
        space = search_spaces.get_space(space_name) if space_name else None
    except nas.ConfigError:
        space = None
    if space is None:
        return pd.DataFrame(columns=cols)
    done = evaluated(frame) if not frame.empty else frame
    rows = []
    for name in space.presets:
        preset = nas.get_preset(name)
        cost = nas.analytic_cost(preset.arch)
        row = {"name": name, "macs": cost.macs, "params": cost.params, "published_top1": preset.published_top1,
               "published_macs_g": preset.published_macs_g, "arch_id": preset.arch.arch_id, "trial": None,
               "value": math.nan, "latency_ms": math.nan}
        if not done.empty:
            match = done[(done["preset"] == name) | (done["arch_id"] == preset.arch.arch_id)]
            if not match.empty:
                hit = match.iloc[0]
                row.update(trial=int(hit["trial"]), value=float(hit["value"]), latency_ms=hit["latency_ms"])
        rows.append(row)
    return pd.DataFrame(rows, columns=cols)


def status_counts(frame: pd.DataFrame) -> dict[str, int]:
    counts = frame["status"].value_counts() if not frame.empty else pd.Series(dtype=int)
    return {s: int(counts.get(s, 0)) for s in STATUSES}


# ============================================================================ drawing
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
    return "proxy accuracy (short training)" if metric == "accuracy" else f"{metric} (higher = predicted better)"


def _hover(frame: pd.DataFrame, x: str, metric: str) -> tuple[np.ndarray, str]:
    title, scale, unit = AXES[x]
    custom = np.stack([
        frame["trial"].astype(str), frame["layout"].fillna("-").astype(str),
        frame["widths"].map(_slashes), frame["depths"].map(_slashes), frame["arch_id"].fillna("-").astype(str),
        frame["status"].astype(str), frame["macs"].map(lambda v: _num(v, 1e6, "M")),
        frame["params"].map(lambda v: _num(v, 1e6, "M")), frame["latency_ms"].map(lambda v: _num(v, 1, " ms")),
        frame["preset"].fillna("").astype(str), frame["reason"].fillna("").astype(str),
    ], axis=-1) if len(frame) else np.empty((0, 11))
    template = ("trial %{customdata[0]} (%{customdata[5]}) %{customdata[9]}<br>layout %{customdata[1]}<br>"
                "widths %{customdata[2]}<br>depths %{customdata[3]}<br>arch id %{customdata[4]}<br>"
                f"{metric} %{{y:.4g}}<br>MACs %{{customdata[6]}}, params %{{customdata[7]}}, "
                "latency %{customdata[8]}<br>%{customdata[10]}<extra></extra>")
    return custom, template


def _slashes(v: Any) -> str:
    return "/".join(map(str, v)) if isinstance(v, (list, tuple)) else "-"


def _num(v: Any, scale: float, unit: str) -> str:
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


SORT_SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, col) {
    th.addEventListener("click", function () {
      var ascending = th.getAttribute("data-order") !== "asc";
      table.querySelectorAll("th").forEach(function (h) { h.removeAttribute("data-order"); });
      th.setAttribute("data-order", ascending ? "asc" : "desc");
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = a.cells[col].getAttribute("data-v"), y = b.cells[col].getAttribute("data-v");
        if (x === "" || y === "") { return (x === "") - (y === ""); }  /* blanks last either way */
        var nx = Number(x), ny = Number(y);
        var d = (isNaN(nx) || isNaN(ny)) ? x.localeCompare(y) : nx - ny;
        return ascending ? d : -d;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""

STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; max-width: 1500px; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 18px; margin-top: 32px; border-bottom: 1px solid #ddd; }
p.note, .meta { color: #555; font-size: 13px; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(600px, 1fr)); gap: 12px; }
.grid.small { grid-template-columns: repeat(auto-fit, minmax(400px, 1fr)); }
table.sortable { border-collapse: collapse; font-size: 12px; }
table.sortable th { cursor: pointer; background: #f3f3f3; position: sticky; top: 0; padding: 4px 8px; }
table.sortable th[data-order=asc]::after { content: " \\25B2"; } table.sortable th[data-order=desc]::after { content: " \\25BC"; }
table.sortable td { padding: 2px 8px; border-bottom: 1px solid #eee; font-variant-numeric: tabular-nums; }
tr.over-budget td, tr.invalid td { color: #a60; } tr.failed td { color: #b00; } tr.stopped td { color: #777; }
"""


def _figure_html(fig, div_id: str) -> str:
    return fig.to_html(full_html=False, include_plotlyjs=False, config=PLOT_CONFIG, div_id=div_id)


def build_dashboard(study, compare=None) -> str:
    """The whole page as one string; ``compare`` is a second study of the same objective."""
    import plotly.offline

    from studies.search import SearchError

    metric = metric_name(study)
    settings = study.user_attrs.get("settings") or {}
    space = study.user_attrs.get("space")
    frame = study_frame(study)
    if frame.empty:
        raise SearchError(f"study {study.study_name!r} has no trials yet; nothing to show")
    other = None
    if compare is not None:
        if metric_name(compare) != metric:
            raise SearchError(f"cannot compare {study.study_name!r} ({metric}) with {compare.study_name!r} "
                              f"({metric_name(compare)}): the first objectives differ")
        other = (compare.study_name, study_frame(compare))
    refs = reference_archs(space, frame)
    budgets = {"macs": settings.get("macs_budget"), "params": settings.get("params_budget"),
               "latency_ms": settings.get("latency_budget_ms")}
    sections: list[str] = []
    figures = []

    def add(fig, name: str) -> str:
        div_id = f"fig-{len(figures)}-{name}"
        figures.append(div_id)
        return f'<div class="figure">{_figure_html(fig, div_id)}</div>'

    # -- fronts
    axes = ["macs"] + (["latency_ms"] if frame["latency_ms"].notna().any() else []) + ["params"]
    plots = [add(front_figure(frame, x, metric, refs, budgets[x], other if x == "macs" else None), f"front-{x}")
             for x in axes]
    not_eval = refs[refs["value"].isna()]["name"].tolist() if not refs.empty else []
    sections.append(
        "<h2>Pareto fronts</h2><p class='note'>Feasible trials coloured by stage layout; the black step line is the "
        f"front (best {html.escape(metric)} reachable at each cost); grey open circles are trials stopped early, at "
        "their last partial accuracy; over-budget and failed trials have no score and sit in the strip below the "
        "plot. Orange stars are published architectures the study evaluated (seeded presets); dotted orange "
        "lines mark those it did not" + (f" ({html.escape(', '.join(not_eval))})" if not_eval else "")
        + ": their cost is known, their accuracy here is not (hover for the paper's ImageNet top-1).</p>"
        f"<div class='grid'>{''.join(plots)}</div>")

    # -- hypervolume
    frames = [frame] + ([other[1]] if other else [])
    ref = reference_point(frames, metric, budgets["macs"])
    def legend(name: str, f: pd.DataFrame) -> str:
        c = status_counts(f)
        return f"{name} ({len(evaluated(f))} evaluated, {c['over budget']} over budget, {c['stopped']} stopped)"

    histories = [(legend(study.study_name, frame), hypervolume_history(frame, ref))]
    if other:
        histories.append((legend(*other), hypervolume_history(other[1], ref)))
    hv_note = ("Compared with " + html.escape(other[0]) + " against the same reference point." if other else
               "To compare with random sampling, run the same search with <code>--sampler random --study "
               "NAME</code> and pass <code>--compare NAME</code>.")
    sections.append(f"<h2>Hypervolume</h2><p class='note'>Area of the {html.escape(metric)}-vs-MACs plane the "
                    f"front dominates, after each evaluated candidate. {hv_note}</p>"
                    + add(hypervolume_figure(histories, ref, metric), "hypervolume"))

    # -- design space
    importances, why = param_importances(study)
    dims = searched_dimensions(frame)
    if not importances.empty:
        rank = {f"dim:{k}": i for i, k in enumerate(importances.index)}
        dims.sort(key=lambda c: rank.get(c, len(rank)))
    edfs = [add(edf_figure(edf_by(frame, "layout"), "per stage layout", metric), "edf-layout")]
    if other:
        both = pd.concat([evaluated(frame).assign(study=study.study_name),
                          evaluated(other[1]).assign(study=other[0])])
        edfs.append(add(edf_figure(edf_by(both, "study"), "per study", metric), "edf-study"))
    for col in dims[:MAX_DIMENSIONS]:
        edfs.append(add(edf_figure(edf_by(frame, col), col.removeprefix("dim:"), metric), f"edf-{len(edfs)}"))
    shown_dims = len(dims[:MAX_DIMENSIONS])
    imp = (add(importance_figure(importances), "importances") + f"<p class='note'>{html.escape(why)}.</p>"
           if not importances.empty else f"<p class='note'>Parameter importances: not available ({html.escape(why)}).</p>")
    sections.append(
        "<h2>Design space</h2><p class='note'>Empirical distribution functions (EDF) of "
        f"{html.escape(metric)} over the evaluated feasible trials, each architecture once: for a value x, the "
        "share of trials scoring at most x. A curve further right is a better part of the space. Numeric "
        f"dimensions are split into up to {MAX_GROUPS} bins of about equal counts; "
        f"{shown_dims} of {len(dims)} varied dimensions shown, most important first.</p>"
        f"<div class='grid small'>{''.join(edfs)}</div>{imp}")

    # -- table
    sections.append("<h2>Trials</h2><p class='note'>Click a column to sort. * = on the study's Pareto front; "
                    "a stopped trial's partial accuracy is in parentheses.</p>" + trial_table(frame, metric))

    counts = status_counts(frame)
    budget_text = ", ".join(f"{k} {_num(v, s, u)}" for k, v, s, u in (
        ("MACs", budgets["macs"], 1e9, "G"), ("params", budgets["params"], 1e6, "M"),
        ("latency", budgets["latency_ms"], 1, " ms")) if v) or "none"
    train = settings.get("train") or {}
    train_text = (f"; proxy training {train.get('epochs')} epoch(s) at {train.get('resolution')} px on "
                  f"{train.get('train_size')} images" if train else "")
    meta = (f"space <b>{html.escape(str(space))}</b>; objective {html.escape(metric)} "
            f"(dataset {html.escape(str(settings.get('dataset', '-')))}{html.escape(train_text)}); budgets "
            f"{html.escape(budget_text)}<br>{len(frame)} trials: " + ", ".join(f"{n} {s}" for s, n in counts.items())
            + f"; {int(frame['on_front'].sum())} on the front")
    head = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>nas dashboard: "
            f"{html.escape(study.study_name)}</title><style>{STYLE}</style>"
            f"<script type='text/javascript'>{plotly.offline.get_plotlyjs()}</script></head>")
    body = (f"<body><h1>Study {html.escape(study.study_name)}</h1><div class='meta'>{meta}</div>"
            + "".join(sections) + f"<script>{SORT_SCRIPT}</script></body></html>")
    return head + body


def write_dashboard(study, path: str | Path, compare=None) -> Path:
    path = Path(path)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(build_dashboard(study, compare), encoding="utf-8")
    return path

