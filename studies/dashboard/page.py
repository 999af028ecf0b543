"""The dashboard page: a list of sections, each computing its data (``data``) and drawing it
(``figures``), in one self-contained HTML file with plotly.js inlined.

A new panel is one function ``section(page) -> html`` added to ``SECTIONS``; ``Page`` carries
what every section reads: the study's frame, its metric, budgets and the published references.
"""
from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import pandas as pd

from studies.dashboard.data import (MAX_DIMENSIONS, MAX_GROUPS, edf_by, evaluated, hypervolume_history, metric_name,
                                    param_importances, reference_archs, reference_point, searched_dimensions,
                                    status_counts, study_frame)
from studies.dashboard.figures import (PLOT_CONFIG, edf_figure, front_figure, hypervolume_figure, importance_figure,
                                       number_text, trial_table)
from studies.storage import InputError

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



@dataclass
class Page:
    """What the sections read, computed once: the study (and the one compared with) as frames."""

    study: object
    frame: pd.DataFrame
    metric: str
    settings: dict
    refs: pd.DataFrame
    budgets: dict
    other: Optional[tuple[str, pd.DataFrame]] = None
    figures: list[str] = field(default_factory=list)

    def figure(self, fig, name: str) -> str:
        div_id = f"fig-{len(self.figures)}-{name}"
        self.figures.append(div_id)
        html_div = fig.to_html(full_html=False, include_plotlyjs=False, config=PLOT_CONFIG, div_id=div_id)
        return f'<div class="figure">{html_div}</div>'


def fronts_section(page: Page) -> str:
    frame, metric, refs = page.frame, page.metric, page.refs
    axes = ["macs"] + (["latency_ms"] if frame["latency_ms"].notna().any() else []) + ["params"]
    plots = [page.figure(front_figure(frame, x, metric, refs, page.budgets[x], page.other if x == "macs" else None),
                         f"front-{x}") for x in axes]
    not_eval = refs[refs["value"].isna()]["name"].tolist() if not refs.empty else []
    return ("<h2>Pareto fronts</h2><p class='note'>Feasible trials coloured by stage layout; the black step line is "
            f"the front (best {html.escape(metric)} reachable at each cost); grey open circles are trials stopped "
            "early, at their last partial accuracy; over-budget and failed trials have no score and sit in the strip "
            "below the plot. Orange stars are published architectures the study evaluated (seeded presets); dotted "
            "orange lines mark those it did not" + (f" ({html.escape(', '.join(not_eval))})" if not_eval else "")
            + ": their cost is known, their accuracy here is not (hover for the paper's ImageNet top-1).</p>"
            f"<div class='grid'>{''.join(plots)}</div>")


def hypervolume_section(page: Page) -> str:
    frames = [page.frame] + ([page.other[1]] if page.other else [])
    ref = reference_point(frames, page.metric, page.budgets["macs"])

    def legend(name: str, f: pd.DataFrame) -> str:
        c = status_counts(f)
        return f"{name} ({len(evaluated(f))} evaluated, {c['over budget']} over budget, {c['stopped']} stopped)"

    histories = [(legend(page.study.study_name, page.frame), hypervolume_history(page.frame, ref))]
    if page.other:
        histories.append((legend(*page.other), hypervolume_history(page.other[1], ref)))
    note = ("Compared with " + html.escape(page.other[0]) + " against the same reference point." if page.other else
            "To compare with random sampling, run the same search with <code>--sampler random --study "
            "NAME</code> and pass <code>--compare NAME</code>.")
    return (f"<h2>Hypervolume</h2><p class='note'>Area of the {html.escape(page.metric)}-vs-MACs plane the "
            f"front dominates, after each evaluated candidate. {note}</p>"
            + page.figure(hypervolume_figure(histories, ref, page.metric), "hypervolume"))


def design_space_section(page: Page) -> str:
    frame, metric = page.frame, page.metric
    importances, why = param_importances(page.study)
    dims = searched_dimensions(frame)
    if not importances.empty:
        rank = {f"dim:{k}": i for i, k in enumerate(importances.index)}
        dims.sort(key=lambda c: rank.get(c, len(rank)))
    edfs = [page.figure(edf_figure(edf_by(frame, "layout"), "per stage layout", metric), "edf-layout")]
    if page.other:
        both = pd.concat([evaluated(frame).assign(study=page.study.study_name),
                          evaluated(page.other[1]).assign(study=page.other[0])])
        edfs.append(page.figure(edf_figure(edf_by(both, "study"), "per study", metric), "edf-study"))
    for col in dims[:MAX_DIMENSIONS]:
        edfs.append(page.figure(edf_figure(edf_by(frame, col), col.removeprefix("dim:"), metric), f"edf-{len(edfs)}"))
    imp = (page.figure(importance_figure(importances), "importances") + f"<p class='note'>{html.escape(why)}.</p>"
           if not importances.empty else
           f"<p class='note'>Parameter importances: not available ({html.escape(why)}).</p>")
    return ("<h2>Design space</h2><p class='note'>Empirical distribution functions (EDF) of "
            f"{html.escape(metric)} over the evaluated feasible trials, each architecture once: for a value x, the "
            "share of trials scoring at most x. A curve further right is a better part of the space. Numeric "
            f"dimensions are split into up to {MAX_GROUPS} bins of about equal counts; "
            f"{len(dims[:MAX_DIMENSIONS])} of {len(dims)} varied dimensions shown, most important first.</p>"
            f"<div class='grid small'>{''.join(edfs)}</div>{imp}")


def trials_section(page: Page) -> str:
    return ("<h2>Trials</h2><p class='note'>Click a column to sort. * = on the study's Pareto front; "
            "a stopped trial's partial accuracy is in parentheses.</p>" + trial_table(page.frame, page.metric))


SECTIONS: tuple[Callable[[Page], str], ...] = (fronts_section, hypervolume_section, design_space_section,
                                               trials_section)


def _summary(page: Page) -> str:
    settings, frame = page.settings, page.frame
    budget_text = ", ".join(f"{k} {number_text(v, s, u)}" for k, v, s, u in (
        ("MACs", page.budgets["macs"], 1e9, "G"), ("params", page.budgets["params"], 1e6, "M"),
        ("latency", page.budgets["latency_ms"], 1, " ms")) if v) or "none"
    train = settings.get("train") or {}
    train_text = (f"; proxy training {train.get('epochs')} epoch(s) at {train.get('resolution')} px on "
                  f"{train.get('train_size')} images" if train else "")
    counts = status_counts(frame)
    return (f"space <b>{html.escape(str(page.study.user_attrs.get('space')))}</b>; objective "
            f"{html.escape(page.metric)} (dataset {html.escape(str(settings.get('dataset', '-')))}"
            f"{html.escape(train_text)}); budgets {html.escape(budget_text)}<br>{len(frame)} trials: "
            + ", ".join(f"{n} {s}" for s, n in counts.items()) + f"; {int(frame['on_front'].sum())} on the front")


def build_dashboard(study, compare=None) -> str:
    """The whole page as one string; ``compare`` is a second study of the same objective."""
    import plotly.offline

    metric = metric_name(study)
    settings = study.user_attrs.get("settings") or {}
    frame = study_frame(study)
    if frame.empty:
        raise InputError(f"study {study.study_name!r} has no trials yet; nothing to show")
    other = None
    if compare is not None:
        if metric_name(compare) != metric:
            raise InputError(f"cannot compare {study.study_name!r} ({metric}) with {compare.study_name!r} "
                             f"({metric_name(compare)}): the first objectives differ")
        other = (compare.study_name, study_frame(compare))
    budgets = {"macs": settings.get("macs_budget"), "params": settings.get("params_budget"),
               "latency_ms": settings.get("latency_budget_ms")}
    page = Page(study, frame, metric, settings, reference_archs(study.user_attrs.get("space"), frame), budgets, other)
    sections = "".join(section(page) for section in SECTIONS)
    head = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>nas dashboard: "
            f"{html.escape(study.study_name)}</title><style>{STYLE}</style>"
            f"<script type='text/javascript'>{plotly.offline.get_plotlyjs()}</script></head>")
    body = (f"<body><h1>Study {html.escape(study.study_name)}</h1><div class='meta'>{_summary(page)}</div>"
            + sections + f"<script>{SORT_SCRIPT}</script></body></html>")
    return head + body


def write_dashboard(study, path: str | Path, compare=None) -> Path:
    path = Path(path)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(build_dashboard(study, compare), encoding="utf-8")
    return path
