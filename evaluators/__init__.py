"""Evaluators: pure functions of an architecture (or model) and data, returning results with units."""
from evaluators.cost import COUNTERS, CostReport, count_params, fvcore_macs, measure_cost

__all__ = ["COUNTERS", "CostReport", "count_params", "fvcore_macs", "measure_cost"]
