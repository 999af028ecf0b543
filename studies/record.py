"""What a trial stores, as one typed record, and the objectives read from it.

The driver writes a :class:`TrialRecord` into the trial's user attributes; results, the dashboard
and export read it back through :meth:`TrialRecord.from_trial`. The attribute keys are the ones
studies have used from the start, so every study ever written reads the same way.

The objectives of a study are defined here once (:func:`study_objectives`): the proxy's score
(maximised), MACs (minimised) and, under a latency budget, latency (minimised).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

from evaluators.base import Measurement

LATENCY_METRIC = "latency_ms"


@dataclass(frozen=True)
class Objective:
    """One objective of a study: its metric name, direction, unit and the value told to the sampler
    when a trial has no measurement of it (over budget)."""

    name: str
    direction: str  # "maximize" or "minimize"
    unit: str
    worst: float

    def value(self, record: "TrialRecord") -> Optional[float]:
        if self.name == "macs":
            return None if record.macs is None else float(record.macs)
        found = record.measurements.get(self.name)
        return None if found is None else float(found.value)


def study_objectives(proxy: str, latency: bool) -> tuple[Objective, ...]:
    """The objectives of a search scored by evaluator ``proxy``, with latency when it has a budget."""
    from evaluators.base import get_evaluator

    ev = get_evaluator(proxy)
    objectives = [Objective(ev.metric, "maximize", ev.unit, ev.worst), Objective("macs", "minimize", "MACs", math.inf)]
    if latency:
        objectives.append(Objective(LATENCY_METRIC, "minimize", "ms", math.inf))
    return tuple(objectives)


def objective_values(objectives: tuple[Objective, ...], record: "TrialRecord") -> list[float]:
    values = []
    for o in objectives:
        v = o.value(record)
        values.append(o.worst if v is None else v)
    return values


@dataclass
class Provenance:
    """Where a trial came from: the driver that ran it, a seeded preset, the trial it retries, or
    the trial whose result it reuses (a repeated architecture)."""

    driver: str = ""
    preset: Optional[str] = None
    retry_of: Optional[int] = None
    duplicate: bool = False


@dataclass
class TrialRecord:
    """Everything a trial records besides Optuna's own params and values.

    ``measurements`` maps a metric name (the proxy's, ``latency_ms``) to its measurement;
    ``history`` holds a stepwise proxy's partial scores (accuracy after each epoch); ``feasible``
    is None until the trial has a verdict; ``reason`` says why a trial is infeasible, failed or
    stopped; ``invalid`` marks a sample that made no valid architecture."""

    arch_json: Optional[str] = None
    arch_id: Optional[str] = None
    layout: Optional[str] = None
    widths: Optional[list[int]] = None
    depths: Optional[list[int]] = None
    params: Optional[int] = None
    macs: Optional[int] = None
    measurements: dict[str, Measurement] = field(default_factory=dict)
    history: list[float] = field(default_factory=list)
    feasible: Optional[bool] = None
    invalid: bool = False
    reason: Optional[str] = None
    stopped_at_epoch: Optional[int] = None
    provenance: Provenance = field(default_factory=Provenance)

    @classmethod
    def for_arch(cls, arch, params: int, macs: int, provenance: Provenance) -> "TrialRecord":
        return cls(arch.to_json(), arch.arch_id, arch.layout, [s.width for s in arch.stages],
                   [s.depth for s in arch.stages], params, macs, provenance=provenance)

    @property
    def arch(self):
        from nas.config import ArchConfig

        return None if self.arch_json is None else ArchConfig.from_json(self.arch_json)

    @property
    def latency(self) -> Optional[Measurement]:
        return self.measurements.get(LATENCY_METRIC)

    # ------------------------------------------------------------------ storage
    def attrs(self) -> dict[str, Any]:
        """The user attributes that store this record (None values are left out)."""
        p = self.provenance
        out = {"arch": self.arch_json, "arch_id": self.arch_id, "layout": self.layout, "widths": self.widths,
               "depths": self.depths, "params": self.params, "macs": self.macs, "feasible": self.feasible,
               "invalid": self.invalid or None, "reason": self.reason, "stopped_at_epoch": self.stopped_at_epoch,
               "history": self.history or None, "driver": p.driver or None, "preset": p.preset,
               "retry_of": p.retry_of, "duplicate": p.duplicate or None,
               "measurements": {k: m.to_dict() for k, m in self.measurements.items()} or None}
        lat = self.latency
        if lat is not None:  # flat copies, as studies written before measurements had them
            out["latency_ms"] = lat.value
        return {k: v for k, v in out.items() if v is not None}

    @classmethod
    def from_attrs(cls, a: Mapping[str, Any]) -> "TrialRecord":
        measurements = {k: Measurement.from_dict(m) for k, m in (a.get("measurements") or {}).items()}
        if LATENCY_METRIC not in measurements and a.get("latency_ms") is not None:  # written before measurements
            measurements[LATENCY_METRIC] = Measurement(
                a["latency_ms"], "ms", a.get("latency_device", "unknown"),
                details={"ci_ms": a.get("latency_ci_ms"), "median_ms": a.get("latency_median_ms"),
                         "threads": a.get("latency_threads")})
        return cls(
            arch_json=a.get("arch"), arch_id=a.get("arch_id"), layout=a.get("layout"), widths=a.get("widths"),
            depths=a.get("depths"), params=a.get("params"), macs=a.get("macs"), measurements=measurements,
            history=list(a.get("history") or []), feasible=a.get("feasible"), invalid=bool(a.get("invalid")),
            reason=a.get("reason") or a.get("fail_reason") or a.get("infeasible_reason") or a.get("stop_reason"),
            stopped_at_epoch=a.get("stopped_at_epoch"),
            provenance=Provenance(a.get("driver", ""), a.get("preset"), a.get("retry_of"), bool(a.get("duplicate"))))

    @classmethod
    def from_trial(cls, trial) -> "TrialRecord":
        return cls.from_attrs(trial.user_attrs)


class RecordWriter:
    """Writes records into live trials, sending only the attributes that changed since the last
    write (each attribute is a storage round trip)."""

    def __init__(self):
        self._written: dict[int, dict[str, str]] = {}

    def write(self, trial, record: TrialRecord) -> None:
        seen = self._written.setdefault(trial.number, {})
        for key, value in record.attrs().items():
            encoded = json.dumps(value, sort_keys=True)
            if seen.get(key) != encoded:
                trial.set_user_attr(key, value)
                seen[key] = encoded

    def forget(self, trial) -> None:
        self._written.pop(trial.number, None)
