"""Reading studies back: the Pareto front and trial tables as pandas DataFrames, built from each
trial's :class:`~studies.record.TrialRecord`."""
from __future__ import annotations

import json
from typing import Any

from studies.record import TrialRecord
from studies.storage import open_storage


def metric_names(study) -> list[str]:
    return study.metric_names or [f"objective_{i}" for i in range(len(study.directions))]


def feasible_trials(study) -> list:
    """Complete trials within every budget, in trial order."""
    from optuna.trial import TrialState

    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.user_attrs.get("feasible")]


def pareto_trials(study) -> list:
    """Non-dominated feasible complete trials (duplicates of one architecture kept once)."""
    signs = [1 if d.name == "MAXIMIZE" else -1 for d in study.directions]
    trials, seen = [], set()
    for t in feasible_trials(study):
        if t.user_attrs.get("arch_id") in seen:
            continue
        seen.add(t.user_attrs.get("arch_id"))
        trials.append(t)
    keys = [[s * v for s, v in zip(signs, t.values)] for t in trials]  # larger is better for every key

    def dominated(i: int) -> bool:
        a = keys[i]
        return any(all(b_ >= a_ for a_, b_ in zip(a, b)) and any(b_ > a_ for a_, b_ in zip(a, b))
                   for j, b in enumerate(keys) if j != i)

    return [t for i, t in enumerate(trials) if not dominated(i)]


def trials_frame(study):
    """One row per trial with its state, values and recorded attributes."""
    import pandas as pd

    names = metric_names(study)
    front = {t.number for t in pareto_trials(study)}
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs["retry_of"] for t in trials if "retry_of" in t.user_attrs}
    # stand-alone accuracies of a supernet search's front (`nas search --verify`), by trial number
    verified = {int(k.split(":")[1]): v["value"] for k, v in study.user_attrs.items() if k.startswith("verified:")}
    rows = []
    for t in trials:
        r = TrialRecord.from_trial(t)
        if r.reason is None and t.number in retried:
            r.reason = "interrupted: its search was killed"
        lat = r.latency
        row: dict[str, Any] = {"trial": t.number, "state": t.state.name, "feasible": r.feasible,
                               "on_front": t.number in front, "arch_id": r.arch_id, "layout": r.layout,
                               "widths": r.widths, "depths": r.depths, "params": r.params, "macs": r.macs,
                               "latency_ms": None if lat is None else lat.value, "preset": r.provenance.preset,
                               "reason": r.reason, "verified_accuracy": verified.get(t.number),
                               "seconds": (t.datetime_complete - t.datetime_start).total_seconds()
                               if t.datetime_complete and t.datetime_start else None}
        for name, value in zip(names, t.values or []):
            if name not in ("macs", "latency_ms"):
                row[name] = value
        rows.append(row)
    return pd.DataFrame(rows)


def front_frame(study):
    frame = trials_frame(study)
    if frame.empty or not frame["on_front"].any():  # no trial finished yet (nor has a metric column)
        return frame.iloc[:0]
    metric = metric_names(study)[0]
    front = frame[frame["on_front"]].sort_values(metric, ascending=False)
    verified = ("verified_accuracy",) if front["verified_accuracy"].notna().any() else ()
    return front[[c for c in ("trial", "arch_id", "layout", "widths", "depths", metric, *verified, "macs", "params",
                              "latency_ms", "preset") if c in front.columns]].reset_index(drop=True)


def verified_front(frame):
    """The final front of a supernet search: the members whose stand-alone accuracy was measured
    (``nas search --verify K``), non-dominated in (that accuracy, MACs)."""
    done = frame[frame["verified_accuracy"].notna()] if "verified_accuracy" in frame else frame.iloc[:0]
    keep = [i for i, r in done.iterrows() if not any(
        o.verified_accuracy >= r.verified_accuracy and o.macs <= r.macs
        and (o.verified_accuracy > r.verified_accuracy or o.macs < r.macs) for o in done.itertuples())]
    return done.loc[keep].sort_values("verified_accuracy", ascending=False).reset_index(drop=True)


def studies_frame(storage_url: str):
    import optuna
    import pandas as pd

    storage = open_storage(storage_url)
    rows = []
    for s in optuna.get_all_study_summaries(storage):
        study = optuna.load_study(study_name=s.study_name, storage=storage)
        feasible = feasible_trials(study)
        best = max((t.values[0] for t in feasible), default=None)
        rows.append({"study": s.study_name, "space": study.user_attrs.get("space"), "trials": s.n_trials,
                     "feasible": len(feasible), "front": len(pareto_trials(study)), "metric": metric_names(study)[0],
                     "best": best,
                     "started": s.datetime_start.isoformat(timespec="seconds") if s.datetime_start else None})
    return pd.DataFrame(rows)


def format_front(frame, metric: str) -> str:
    if frame.empty:
        return "(no feasible trial yet)"
    shown = frame.copy()
    shown["macs"] = shown["macs"].map(lambda v: f"{v / 1e6:.0f}M")
    shown["params"] = shown["params"].map(lambda v: f"{v / 1e6:.2f}M")
    shown["widths"] = shown["widths"].map(lambda w: "/".join(map(str, w)) if isinstance(w, list) else w)
    shown["depths"] = shown["depths"].map(lambda w: "/".join(map(str, w)) if isinstance(w, list) else w)
    shown[metric] = shown[metric].map(lambda v: f"{v:.4f}" if abs(v) < 1e4 else f"{v:.4g}")
    if "verified_accuracy" in shown:
        shown["verified_accuracy"] = shown["verified_accuracy"].map(lambda v: "-" if v != v or v is None else f"{v:.4f}")
    if "latency_ms" in shown and shown["latency_ms"].notna().any():
        shown["latency_ms"] = shown["latency_ms"].map(lambda v: "-" if v != v or v is None else f"{v:.2f}")
    else:
        shown = shown.drop(columns=["latency_ms"], errors="ignore")
    shown["preset"] = shown["preset"].fillna("")
    return shown.to_string(index=False)


def to_json_rows(frame) -> str:
    return json.dumps(json.loads(frame.to_json(orient="records")), indent=2)
