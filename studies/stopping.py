"""Multi-fidelity stopping for a two-objective search: successive halving by Pareto rank.

A stepwise proxy (training) reports a partial accuracy after every epoch. The rungs are the
epochs 1, eta, eta^2, ... short of the last (1, 3, 9 with eta 3, as in ASHA); at a rung a
candidate goes on only if it ranks in the best ``1/eta`` of the candidates
that reached the same rung, ranked by non-dominated sorting over (partial accuracy, higher is
better; MACs, lower is better): every candidate of the rung's Pareto front goes on, whatever its
accuracy, so the cheap end of the front is never cut for being less accurate than costlier peers
(the median rule's blind spot). As in ASHA the decision is asynchronous: a candidate is compared
with the peers seen so far, and with fewer than ``min_peers`` of them it goes on.

    >>> rule = ParetoHalving(eta=3)
    >>> for acc, macs in [(0.8, 900e6), (0.7, 500e6), (0.6, 700e6), (0.5, 800e6)]:
    ...     rule.add(1, acc, macs)
    >>> rule.keeps(1, 0.4, 100e6)       # least accurate, but nothing is cheaper: on the front
    True
    >>> rule.keeps(1, 0.55, 850e6)      # dominated by three peers
    False
"""
from __future__ import annotations

import math
import statistics


def pareto_levels(points: list[tuple[float, float]]) -> list[int]:
    """Non-dominated sorting of (accuracy, macs) points: 0 for the front, 1 for the front of the
    rest, and so on."""
    levels = [-1] * len(points)
    left = set(range(len(points)))
    level = 0
    while left:
        front = {i for i in left if not any(_dominates(points[j], points[i]) for j in left if j != i)}
        for i in front:
            levels[i] = level
        left -= front
        level += 1
    return levels


def _dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] >= b[0] and a[1] <= b[1] and (a[0] > b[0] or a[1] < b[1])


class ParetoHalving:
    def __init__(self, eta: int = 3, min_peers: int = 4):
        if eta < 2:
            raise ValueError(f"eta must be >= 2, got {eta}")
        self.eta, self.min_peers = eta, min_peers
        self.rungs: dict[int, list[tuple[float, float]]] = {}

    def add(self, step: int, accuracy: float, macs: float) -> None:
        """Record a partial result (also those of finished and stopped trials, on resume)."""
        self.rungs.setdefault(step, []).append((accuracy, macs))

    def is_rung(self, step: int) -> bool:
        """Whether ``step`` is a rung: a power of ``eta`` (1, 3, 9, ...)."""
        while step > 1 and step % self.eta == 0:
            step //= self.eta
        return step == 1

    def keeps(self, step: int, accuracy: float, macs: float) -> bool:
        """Whether a candidate at ``step`` with this partial accuracy goes on (it is not recorded);
        between rungs every candidate goes on."""
        peers = self.rungs.get(step, [])
        if not self.is_rung(step) or len(peers) < self.min_peers:
            return True
        points = peers + [(accuracy, macs)]
        levels = pareto_levels(points)
        mine = levels[-1]
        ahead = sum(1 for lv in levels[:-1] if lv < mine)
        return mine == 0 or ahead < math.ceil(len(points) / self.eta)


def median_keeps(peers: list[float], accuracy: float, min_peers: int = 4) -> bool:
    """The median rule (Optuna's MedianPruner), for comparison: blind to cost."""
    return len(peers) < min_peers or accuracy >= statistics.median(peers)
