"""The dashboard's data: pure functions of a study (read once) or of pandas frames, unit-tested;
the figures module only draws what these compute."""
from __future__ import annotations

import math
import warnings
from typing import Any, Optional

import numpy as np
import pandas as pd

from studies.record import TrialRecord
from studies.results import feasible_trials, metric_names, trials_frame

STATUSES = ("feasible", "over budget", "stopped", "failed", "invalid")
MAX_GROUPS = 4  # EDF curves per dimension
MAX_DIMENSIONS = 9  # dimension EDFs shown, most important first
MIN_IMPORTANCE_TRIALS = 5


def metric_name(study) -> str:
    return metric_names(study)[0]


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
        record = TrialRecord.from_trial(t)
        if state == "COMPLETE":
            status.append("feasible" if feasible else "over budget")
        elif state == "PRUNED":
            status.append("stopped")
        elif state == "FAIL":
            status.append("invalid" if record.invalid else "failed")
        else:
            status.append(state.lower())  # running or waiting
        partial.append(float(record.history[-1]) if record.history and state != "COMPLETE" else math.nan)
        stopped_at.append(record.stopped_at_epoch)
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

    seen, trials = set(), []
    for t in feasible_trials(study):
        if t.values and t.user_attrs.get("arch_id") not in seen:
            seen.add(t.user_attrs.get("arch_id"))
            trials.append(t)
    empty = pd.Series(dtype=float)
    if len(trials) < min_trials:
        return empty, (f"needs at least {min_trials} evaluated feasible trials, the study has {len(trials)}")
    if len({t.values[0] for t in trials}) < 2:
        return empty, "every evaluated trial has the same score: nothing to attribute"
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


