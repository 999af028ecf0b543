"""Human units for budgets: ``500mflop``, ``1gflop``, ``1.5GMAC`` (MACs), ``20ms``, ``10m`` params.

"FLOPs" budgets are multiply-accumulates, the convention of every paper we reproduce.
"""
from __future__ import annotations

import re
from typing import Optional

_SCALE = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}
_NUMBER = r"(\d+(?:\.\d*)?(?:e[+-]?\d+)?|\.\d+)"


class BudgetError(ValueError):
    """A budget string that cannot be read; the message shows the accepted forms."""


def parse_macs(text: str) -> int:
    """``500mflop``, ``1gflop``, ``1.5GMAC``, ``800M``, ``2e9`` -> MACs."""
    m = re.fullmatch(_NUMBER + r"\s*([kmgt]?)\s*(flops?|macs?)?", text.strip().lower())
    if not m:
        raise BudgetError(f"cannot read MAC budget {text!r}; write e.g. 500mflop, 1gflop, 1.5GMAC (FLOPs = MACs)")
    return _positive(float(m.group(1)) * _SCALE[m.group(2)], text)


def parse_latency_ms(text: str) -> float:
    """``20ms``, ``0.5s``, ``1500us`` -> milliseconds."""
    m = re.fullmatch(_NUMBER + r"\s*(ms|s|us)?", text.strip().lower())
    if not m:
        raise BudgetError(f"cannot read latency budget {text!r}; write e.g. 20ms, 0.5s")
    return float(_positive(float(m.group(1)) * {"ms": 1, None: 1, "s": 1000, "us": 1e-3}[m.group(2)], text, integer=False))


def parse_params(text: str) -> int:
    """``10m``, ``500k``, ``3.5M`` params -> a count."""
    m = re.fullmatch(_NUMBER + r"\s*([kmg]?)\s*(params?)?", text.strip().lower())
    if not m:
        raise BudgetError(f"cannot read parameter budget {text!r}; write e.g. 10m, 500k")
    return _positive(float(m.group(1)) * _SCALE[m.group(2)], text)


def parse_duration_s(text: str) -> float:
    """``30m``, ``1h``, ``90s``, ``45`` (seconds) -> seconds."""
    m = re.fullmatch(_NUMBER + r"\s*(s|m|min|h)?", text.strip().lower())
    if not m:
        raise BudgetError(f"cannot read duration {text!r}; write e.g. 30m, 1h, 90s")
    return float(_positive(float(m.group(1)) * {None: 1, "s": 1, "m": 60, "min": 60, "h": 3600}[m.group(2)], text,
                           integer=False))


def format_macs(macs: float) -> str:
    return f"{macs / 1e9:.3g} GMACs" if macs >= 1e9 else f"{macs / 1e6:.3g} MMACs"


def unreachable(space, macs_budget: Optional[float] = None, params_budget: Optional[float] = None) -> Optional[str]:
    """Why a budget below the cheapest architecture of ``space`` (a ``search_spaces.Space``)
    cannot be met, naming that cost; None when every budget given can be."""
    if not (macs_budget or params_budget):
        return None
    least = space.smallest_cost()
    for budget, reached, what in ((macs_budget, least.macs, "MAC"), (params_budget, least.params, "parameter")):
        if budget is not None and budget < reached:
            shown = (format_macs(budget), format_macs(reached)) if what == "MAC" else (
                f"{budget / 1e6:.3g} M", f"{reached / 1e6:.3g} M")
            return (f"the {what} budget {shown[0]} is below what space {space.name!r} can reach: its smallest "
                    f"architecture has {shown[1]}")
    return None


def _positive(value: float, text: str, integer: bool = True):
    if value <= 0:
        raise BudgetError(f"budget {text!r} must be positive")
    return int(round(value)) if integer else value
