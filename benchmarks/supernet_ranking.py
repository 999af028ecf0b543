"""How well does a trained supernet rank architectures, and how much cheaper is it?

    python benchmarks/supernet_ranking.py [--space coatnet_ctt] [--budget 1gflop] [--points 30]
    python benchmarks/supernet_ranking.py --shard 0/2 & python benchmarks/supernet_ranking.py --shard 1/2
    python benchmarks/supernet_ranking.py --rescore   # a retrained supernet scores the measured points again

1. Trains (or resumes) the supernet of ``--space`` within ``--budget`` with `nas supernet train`'s
   defaults (``--supernet-epochs`` to change them), one thread; its wall time is printed beside ten
   stand-alone proxy trainings of a budget-sized point (the issue's yardstick): of the largest
   point, and of the median of the measured points.
2. Draws ``--points`` points within the budget, stratified across layouts (each layout in turn),
   as a search draws them (sampled, fitted to the budget).
3. Per point, one thread: the inherited accuracy (BatchNorm re-estimated, `nas score --proxy
   supernet`) and stand-alone short training with the search's default proxy (2 epochs of 5,000
   Fashion-MNIST images at 32 px, validated on the same 1,000 held-out images) with seeds 0 and 1.
4. Kendall tau between inherited accuracy and the mean of the two stand-alone runs, beside the tau
   of the two stand-alone runs with each other (the noise of that reference), and candidates per CPU-hour.
5. Fronts: a supernet search (``nas search --proxy supernet``, TPE, ``--search-trials`` candidates,
   in this process) whose best ``--verify`` front members are then trained stand-alone, beside the
   front of the measured points' stand-alone accuracy (seed 0: a random stand-alone search of as
   many candidates); their points, hypervolumes and CPU seconds.

Rows are appended per point to ``--out`` (JSON lines), so an interrupted run resumes; shards run
side by side (both must see the trained supernet: run one first, or let shard 0 train it).
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import statistics
import sys
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import torch

import nas
from evaluators.base import EvalContext, get_evaluator
from evaluators.train import TrainConfig, train_proxy
from search_spaces import get_space
from studies.budgets import parse_macs
from studies.search import SearchSettings
from studies.stopping import pareto_levels
from studies.supernet import SupernetSettings, SupernetTraining, draw_point

sys.path.insert(0, str(Path(__file__).resolve().parent))
from proxy_validity import kendall_tau  # noqa: E402  (a sibling script, not a package)


def stratified_points(space, supernet, count: int, seed: int) -> list[nas.ArchConfig]:
    """``count`` distinct points within the supernet's budget, the layouts taken in turn."""
    rng = random.Random(f"{seed}:ranking")
    by_layout: dict[str, list] = defaultdict(list)
    seen = set()
    for _ in range(count * 20):
        arch = draw_point(space, supernet, rng)
        if arch.arch_id not in seen:
            seen.add(arch.arch_id)
            by_layout[arch.layout].append(arch)
    order = [a for group in itertools.zip_longest(*by_layout.values()) for a in group if a is not None]
    return order[:count]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--space", default="coatnet_ctt")
    ap.add_argument("--budget", default="1gflop")
    ap.add_argument("--points", type=int, default=30)
    ap.add_argument("--supernet-epochs", type=int, default=SupernetSettings(space="").epochs)
    ap.add_argument("--supernet-train-size", type=int, default=SupernetSettings(space="").train_size)
    ap.add_argument("--train-size", type=int, default=SearchSettings(space="").train.train_size,
                    help="images of each stand-alone run (the search's default)")
    ap.add_argument("--search-trials", type=int, default=300, help="candidates of the supernet search (step 5)")
    ap.add_argument("--verify", type=int, default=5, help="front members of the supernet search trained stand-alone")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shard", default="0/1")
    ap.add_argument("--time-points", type=int, default=0,
                    help="time this many of the measured points again both ways, one right after the other, so "
                         "that the per-candidate ratio compares runs made under the same load")
    ap.add_argument("--rescore", action="store_true",
                    help="score the points already measured again with the supernet as it is now (after a retraining), "
                         "keeping their stand-alone runs; unsharded")
    ap.add_argument("--out", type=Path, default=None, help="default benchmarks/results/supernet_ranking_SPACE.jsonl")
    args = ap.parse_args()
    torch.set_num_threads(1)
    shard, shards = (int(v) for v in args.shard.split("/"))
    if args.rescore and shards != 1:
        sys.exit("--rescore rewrites the rows file: run it unsharded")
    out = args.out or Path(f"benchmarks/results/supernet_ranking_{args.space}.jsonl")
    out.parent.mkdir(parents=True, exist_ok=True)
    budget = float(parse_macs(args.budget))
    proxy: TrainConfig = replace(SearchSettings(space="").train, train_size=args.train_size, threads=1,
                                 precision="fp32")
    settings = SupernetSettings(space=args.space, macs_budget=budget, epochs=args.supernet_epochs,
                                train_size=args.supernet_train_size, val_size=proxy.val_size, seed=args.seed)
    file = out.with_suffix(".pt")
    run = SupernetTraining(settings, file)
    if run.epochs_done < settings.epochs:
        if shard:
            sys.exit(f"shard {shard} waits for the supernet: run shard 0 first (it trains {file})")
        run.run(lambda row: print(f"supernet epoch {row['epoch']}: largest {row['largest']:.3f}, smallest "
                                  f"{row['smallest']:.3f} ({row['seconds']:.0f} s)", flush=True))
    space = get_space(args.space).supernet_space()
    points = stratified_points(space, run.supernet, args.points, args.seed)
    context = EvalContext("fashion-mnist", replace(proxy, train_size=settings.train_size), threads=1,
                          supernet=str(file), supernet_state=(run.supernet, {"epochs_done": run.epochs_done}))
    inherit = get_evaluator("supernet")
    done = {r["arch_id"]: r for r in map(json.loads, out.read_text().splitlines())} if out.exists() else {}
    if args.rescore:
        for arch in points:
            if arch.arch_id in done:
                m = inherit.evaluate(arch, context)
                done[arch.arch_id].update(inherited=m.value, inherited_s=m.seconds)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in done.values()))
        os.replace(tmp, out)
        print(f"rescored {len(done)} points with {file}")
    for k, arch in enumerate(points):
        if k % shards != shard or arch.arch_id in done:
            continue
        m = inherit.evaluate(arch, context)
        row = {"arch_id": arch.arch_id, "layout": arch.layout, "macs_m": nas.analytic_cost(arch).macs / 1e6,
               "inherited": m.value, "inherited_s": m.seconds}
        for seed in (0, 1):
            r = train_proxy(arch, context.data, replace(proxy, seed=seed))
            row.update({f"alone{seed}": r.accuracy, f"alone{seed}_s": r.seconds})
        with out.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"[{k + 1}/{len(points)}] {arch.arch_id} {arch.layout:<10} {row['macs_m']:5.0f}M inherited "
              f"{row['inherited']:.3f} ({row['inherited_s']:.1f} s)  alone {row['alone0']:.3f}/{row['alone1']:.3f} "
              f"({row['alone0_s']:.0f} s)", flush=True)
        done[arch.arch_id] = row
    rows = [done[a.arch_id] for a in points if a.arch_id in done]
    if len(rows) < len(points):
        print(f"{len(rows)} of {len(points)} points measured so far")
        if len(rows) < 3:
            return
    alone = [(r["alone0"] + r["alone1"]) / 2 for r in rows]
    inherited_s = statistics.median(r["inherited_s"] for r in rows)
    alone_s = statistics.median(r["alone0_s"] for r in rows)
    largest = train_proxy(run.largest, context.data, proxy).seconds if len(rows) == len(points) else float("nan")
    if args.time_points:  # side by side: the rows' seconds were measured at other times, under other loads
        timed = [a for a in points if a.arch_id in done][:args.time_points]
        pairs = [(inherit.evaluate(a, context).seconds, train_proxy(a, context.data, proxy).seconds) for a in timed]
        inherited_s = statistics.median(i for i, _ in pairs)
        alone_s = statistics.median(t for _, t in pairs)
        print(f"re-timed {len(pairs)} points side by side: " +
              ", ".join(f"{i:.2f} s / {t:.0f} s" for i, t in pairs))
    print(f"\n{len(rows)} points of {args.space} within {budget / 1e6:.0f} MMACs "
          f"({len(set(r['layout'] for r in rows))} layouts, {min(r['macs_m'] for r in rows):.0f}-"
          f"{max(r['macs_m'] for r in rows):.0f} MMACs); one thread each\n")
    print("| ranking | Kendall tau |\n|---|---|")
    print(f"| supernet (inherited weights) vs stand-alone (mean of 2 seeds) | "
          f"{kendall_tau([r['inherited'] for r in rows], alone):+.2f} |")
    print(f"| stand-alone seed 0 vs seed 1 (the reference's noise) | "
          f"{kendall_tau([r['alone0'] for r in rows], [r['alone1'] for r in rows]):+.2f} |")
    print(f"\nseconds per candidate (median): supernet {inherited_s:.2f}, stand-alone {alone_s:.1f} -> "
          f"{alone_s / inherited_s:.0f}x the candidates per CPU-hour ({3600 / inherited_s:.0f} vs "
          f"{3600 / alone_s:.0f})")
    print(f"supernet training: {run.seconds:.0f} s ({settings.epochs} epochs of {settings.train_size} images); "
          f"ten stand-alone trainings of its largest point ({run.largest.arch_id}): {10 * largest:.0f} s, "
          f"of the median point above: {10 * alone_s:.0f} s")
    if len(rows) == len(points) and args.search_trials:
        compare_fronts(args, budget, proxy, file, rows)


def compare_fronts(args, budget: float, proxy: TrainConfig, file: Path, rows: list[dict]) -> None:
    """Step 5: the verified front of a supernet search beside the stand-alone front of ``rows``."""
    import tempfile
    import time

    from studies.dashboard.data import hypervolume_2d
    from studies.results import pareto_trials
    from studies.search import Search

    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        settings = SearchSettings(space=args.space, macs_budget=budget, trials=args.search_trials, seed=args.seed,
                                  workers=0, worker_threads=1, storage=f"sqlite:///{tmp}/s.db", study_name="s",
                                  presets=0, train=proxy, proxy="supernet", supernet=str(file), verify=args.verify)
        search = Search(settings)
        t0 = time.perf_counter()
        study = search.run()
        searched = time.perf_counter() - t0
        search.verify(study)
        inherited_front = pareto_trials(study)
        verified = [(study.user_attrs[f"verified:{t.number}"], t) for t in inherited_front
                    if f"verified:{t.number}" in study.user_attrs]
    supernet_points = [(t.user_attrs["macs"], m["value"]) for m, t in verified]
    verify_s = sum(m["seconds"] for m, _ in verified)
    alone_points = [(r["macs_m"] * 1e6, r["alone0"]) for r in rows]
    levels = pareto_levels([(a, m) for m, a in alone_points])
    alone_front = [point for point, level in zip(alone_points, levels) if level == 0]
    alone_s = sum(r["alone0_s"] for r in rows)

    def listed(points) -> str:
        return ", ".join(f"{m / 1e6:.0f}M {a:.3f}" for m, a in sorted(points))

    def volume(points) -> float:  # the (MACs / budget, accuracy) box from (1, 0), as search_quality.py reports it
        return hypervolume_2d([(m / budget, a) for m, a in points], (1.0, 0.0))

    print("\n| front (stand-alone accuracy) | candidates | CPU seconds | hypervolume | points (MMACs accuracy) |")
    print("|---|---|---|---|---|")
    print(f"| supernet search, best {len(verified)} of its front verified | {args.search_trials} | "
          f"{searched:.0f} + {verify_s:.0f} | {volume(supernet_points):.4f} | {listed(supernet_points)} |")
    print(f"| stand-alone (random, seed 0) | {len(rows)} | {alone_s:.0f} | {volume(alone_points):.4f} | "
          f"{listed(alone_front)} |")


if __name__ == "__main__":
    main()
