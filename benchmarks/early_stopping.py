"""What early stopping saves: training epochs spent, and the hypervolume of the final front, with
Pareto successive halving (the search's rule, ``studies.stopping.ParetoHalving``) and with the
median rule, against training every candidate to the end.

    python benchmarks/early_stopping.py [--space hybrid] [--candidates 40] [--epochs 9]

Every candidate is first trained to the end (``--epochs`` epochs; ``--train-size`` Fashion-MNIST
images per epoch at 32 px, at ``--width-mult`` of its widths, validated after each epoch on
images held out of the training split) and its validation accuracy after every epoch kept. The
candidates are random points of the space fitted to the MAC budget, as a search samples them.
Each rule is then replayed on those curves, candidates arriving one after another (as with one
worker) in ``--orders`` random orders: at each rung (epochs 1, 3, 9, ... short of the last) the
rule sees the partial results of the candidates that reached that rung before, exactly as in a
search, and a stopped candidate spends only the epochs it ran. The front is made of the candidates
trained to the end; its hypervolume is taken in the (MACs, accuracy) box bounded by the budget and
accuracy 0, as the dashboard draws it.

Curves are appended to ``--out`` (JSON lines), so an interrupted run resumes.
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path

import optuna

import nas
from evaluators.data import load_dataset
from evaluators.train import TrainConfig, train_proxy
from search_spaces import get_space
from studies.budgets import parse_macs
from studies.dashboard.data import hypervolume_2d
from studies.stopping import ParetoHalving, median_keeps, pareto_levels


def sample(space_name: str, count: int, budget: float, seed: int) -> list:
    """``count`` distinct random points of the space, fitted to the budget as a search fits them."""
    space = get_space(space_name)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    archs, seen = [], set()
    while len(archs) < count:
        trial = study.ask()
        arch = space.fit(space.sample(trial), macs_budget=budget)
        study.tell(trial, 0.0)
        if arch.arch_id not in seen and nas.analytic_cost(arch).macs <= budget:
            seen.add(arch.arch_id)
            archs.append(arch)
    return archs


def replay(rows: list[dict], order: list[int], epochs: int, rule: str, eta: int) -> tuple[int, list[dict]]:
    """(epochs spent, candidates trained to the end) when ``rule`` decides at the rungs."""
    halving = ParetoHalving(eta)
    medians: dict[int, list[float]] = {}
    spent, finished = 0, []
    for i in order:
        row = rows[i]
        for epoch, acc in enumerate(row["history"][:epochs], 1):
            spent += 1
            if rule == "pareto":
                keeps = halving.keeps(epoch, acc, row["macs"])
            elif rule == "median":
                keeps = not halving.is_rung(epoch) or median_keeps(medians.get(epoch, []), acc)
            else:
                keeps = True
            halving.add(epoch, acc, row["macs"])
            medians.setdefault(epoch, []).append(acc)
            if epoch < epochs and not keeps:
                break
        else:
            finished.append(row)
    return spent, finished


def hypervolume(rows: list[dict], budget: float) -> float:
    return hypervolume_2d([(r["macs"], r["history"][-1]) for r in rows], (budget, 0.0))


def front(rows: list[dict]) -> list[dict]:
    levels = pareto_levels([(r["history"][-1], r["macs"]) for r in rows])
    return [r for r, level in zip(rows, levels) if level == 0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--space", default="hybrid")
    ap.add_argument("--budget", default="1gflop")
    ap.add_argument("--candidates", type=int, default=40)
    ap.add_argument("--epochs", type=int, default=9)
    ap.add_argument("--eta", type=int, default=3)
    ap.add_argument("--train-size", type=int, default=500)
    ap.add_argument("--val-size", type=int, default=500)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--width-mult", type=float, default=0.5)
    ap.add_argument("--orders", type=int, default=50, help="random arrival orders replayed")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/early_stopping.jsonl"))
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    budget = parse_macs(args.budget)
    cfg = TrainConfig(epochs=args.epochs, resolution=32, train_size=args.train_size, val_size=args.val_size,
                      batch_size=args.batch, width_mult=args.width_mult, threads=1, seed=args.seed)
    archs = sample(args.space, args.candidates, budget, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    done = {r["arch_id"]: r for r in map(json.loads, args.out.read_text().splitlines())} if args.out.exists() else {}
    data = load_dataset("fashion-mnist")
    for k, arch in enumerate(archs, 1):
        if arch.arch_id in done:
            continue
        t0 = time.perf_counter()
        result = train_proxy(arch, data, cfg)
        row = {"arch_id": arch.arch_id, "layout": arch.layout, "macs": nas.analytic_cost(arch).macs,
               "history": result.history, "seconds": result.seconds, "space": args.space}
        done[arch.arch_id] = row
        with args.out.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"[{k}/{len(archs)}] {arch.layout:<16} {row['macs'] / 1e6:5.0f}M  accuracy by epoch "
              f"{' '.join(f'{a:.3f}' for a in result.history)}  ({time.perf_counter() - t0:.0f} s)", flush=True)
    rows = [done[a.arch_id] for a in archs]
    full_hv = hypervolume(rows, budget)
    total = args.epochs * len(rows)
    rng = random.Random(args.seed)
    orders = [rng.sample(range(len(rows)), len(rows)) for _ in range(args.orders)]
    print(f"\n{len(rows)} candidates of {args.space} fitted to {args.budget}; {args.epochs} epochs of {args.train_size} "
          f"images at 32 px, width x{args.width_mult}; rungs at epochs "
          f"{[e for e in range(1, args.epochs) if ParetoHalving(args.eta).is_rung(e)]}, eta {args.eta}; "
          f"{args.orders} arrival orders")
    print("| rule | epochs spent (median over orders) | fewer than training all | final hypervolume, % of all "
          "trained (median, worst) | front members kept (median) |")
    print("|---|---|---|---|---|")
    full_front = {r["arch_id"] for r in front(rows)}
    for rule in ("none", "pareto", "median"):
        spent, hv, kept = [], [], []
        for order in orders:
            s, finished = replay(rows, order, args.epochs, rule, args.eta)
            spent.append(s)
            hv.append(100 * hypervolume(finished, budget) / full_hv)
            kept.append(len(full_front & {r["arch_id"] for r in finished}))
        name = {"none": "train all to the end", "pareto": f"Pareto successive halving (eta {args.eta})",
                "median": "median rule at the same rungs"}[rule]
        print(f"| {name} | {statistics.median(spent):.0f} of {total} | {total / statistics.median(spent):.2f}x | "
              f"{statistics.median(hv):.1f}% ({min(hv):.1f}%) | {statistics.median(kept):.0f} of {len(full_front)} |")
    print(f"training time per candidate (all epochs): median {statistics.median(r['seconds'] for r in rows):.0f} s")


if __name__ == "__main__":
    main()
