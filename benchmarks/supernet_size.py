"""How large must a space's weight-sharing supernet be? Parameters of the tensors that hold every
point of a space within a MACs budget, as ``nas.Supernet`` keys them (per stage position and block
type), and as they would be if every stage position shared one set per block type.

    python benchmarks/supernet_size.py [--spaces hybrid coatnet_ctt] [--budget 1gflop] [--points 1000]

For each space: ``--points`` random points fitted to the budget as a search samples them; the
per-factor maximum of their tensors is a lower bound on any supernet that holds them all (a
supernet holds every point, not only those drawn). Beside it, the size the space's supernet is
built with: over its supernet sub-space (``Space.supernet_space``, the whole space for most),
from ``Space.envelope``'s probes, which reach the budget's extremes. Nothing is allocated: shapes come from modules built on the meta device. Training
needs about 16 bytes per parameter in float32 with AdamW (weights, gradients, two moments).
"""
from __future__ import annotations

import argparse
import math
import re
import time
from collections import Counter

import optuna

import nas
from nas.config import ConfigError
from nas.supernet import SUPPORTED, _is_statistic, _placed_slots, unsupported_types
from search_spaces import get_space
from studies.budgets import BudgetError, parse_macs

BYTES_PER_PARAM = 16  # float32 weights, gradients and AdamW's two moments


def envelope_params(archs, shared_positions: bool = False) -> tuple[int, Counter]:
    """(parameters, parameters per stage path) of the per-factor maximum of ``archs``' trained tensors,
    keyed as the supernet keys them; ``shared_positions``: the stage index dropped from the keys."""
    sizes: dict[str, tuple[int, ...]] = {}
    for arch in archs:
        for _, rel, slot in _placed_slots(arch, 1000, supported_only=False):
            if _is_statistic(rel):  # BatchNorm's running statistics are not trained
                continue
            key = re.sub(r"^stages\.\d+\.", "stages.*.", slot.shared) if shared_positions else slot.shared
            sizes[key] = tuple(map(max, sizes[key], slot.factors)) if key in sizes else slot.factors
    by_path: Counter = Counter()
    for key, factors in sizes.items():
        by_path[re.match(r"stages\.\d+\.(blocks|embed)[^.]*|[^.]+", key).group(0)] += math.prod(factors)
    return sum(by_path.values()), by_path


def random_points(space, count: int, budget: float, seed: int) -> list:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    out = []
    while len(out) < count:
        trial = study.ask()
        arch = space.fit(space.sample(trial), macs_budget=budget)
        study.tell(trial, 0.0)
        if nas.analytic_cost(arch).macs <= budget:
            out.append(arch)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spaces", nargs="+", default=["hybrid", "coatnet_ctt", "metaformer"])
    ap.add_argument("--budget", default="1gflop")
    ap.add_argument("--points", type=int, default=1000)
    ap.add_argument("--top", type=int, default=5, help="largest stage paths listed per space")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        spaces = [get_space(name) for name in args.spaces]
        budget = float(parse_macs(args.budget))
    except (ConfigError, BudgetError) as e:
        ap.error(str(e))
    print(f"| space | largest of {args.points} random points | their tensors, per stage position and type "
          f"(lower bound) | shared across positions (lower bound) | the supernet as built (over its supernet "
          f"sub-space) | AdamW training memory "
          f"(as built, else the lower bound) |\n|---|---|---|---|---|---|")
    details = []
    for space in spaces:
        name = space.name
        start = time.perf_counter()
        points = random_points(space, args.points, budget, args.seed)
        largest = max(nas.analytic_cost(a).params for a in points)
        per_position, by_path = envelope_params(points)
        shared, _ = envelope_params(points, shared_positions=True)
        built = None
        if not unsupported_types(space.supernet_space().component_types()):
            built, _ = envelope_params(space.supernet_space().envelope(budget))
        memory = (built or per_position) * BYTES_PER_PARAM / 2 ** 30
        print(f"| {name} | {largest / 1e6:.1f} M | {per_position / 1e6:,.0f} M | {shared / 1e6:,.0f} M | "
              f"{f'{built / 1e6:,.0f} M' if built else 'not supported'} | {memory:,.1f} GiB |", flush=True)
        details.append((name, by_path, time.perf_counter() - start))
    for name, by_path, seconds in details:
        print(f"\n{name}: largest stage paths of the lower bound ({seconds:.0f} s)")
        for path, count in by_path.most_common(args.top):
            print(f"  {path:<40} {count / 1e6:8.1f} M")
    print(f"\nsupported block types: {', '.join(SUPPORTED['block'])}")


if __name__ == "__main__":
    main()
