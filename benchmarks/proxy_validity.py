"""How far can each cheap proxy be trusted, and at which resolution and width should the search
train? Kendall tau of every zero-cost proxy and of short training at 32 px, 32 px at half width and
64 px against a longer reference run at 96 px, over random architectures within a MACs budget from
`hybrid` and three family spaces, on Fashion-MNIST; beside it, the tau of the reference against
itself with another seed (how noisy the reference is; its mean over both seeds is less noisy than
either, so a proxy can rank above that tau).

    python benchmarks/proxy_validity.py [--archs 32] [--budget 1gflop] [--train 1000] [--ref-train 1000]
    python benchmarks/proxy_validity.py --shard 0/2 & python benchmarks/proxy_validity.py --shard 1/2  # 2 processes

Architectures: ``--spaces`` are sampled in turn (uniformly at random, ``Space.fit`` to the budget as
``nas search`` fits them, kept when within 0.5-1 x the budget at the design resolution and
trainable at 32 px). Per architecture:
- the zero-cost proxies on one real minibatch of 128 images at 32x32, as `nas search` scores them;
- short training with the search's recipe (AdamW, warm-up and cosine schedule, seed 0),
  ``--epochs`` epochs of ``--train`` images validated on ``--val`` held-out images, in three
  settings: 32 px, 32 px at ``--width-mult 0.5`` and 64 px; also read after its first epoch;
- the reference: ``--ref-epochs`` epochs of ``--ref-train`` images at ``--ref-resolution`` (96 px)
  validated on ``--ref-val`` images, twice, with seeds 1 and 2 (other initialisations, images
  and validation splits). The reference is the mean of the two; their tau tells its noise.

Every run uses one thread, so seconds compare across settings (run the shards side by side; the
host's other work slows all settings alike). The defaults are scaled down to 2 CPU cores: the search
itself trains 2 epochs of 10,000 images in batches of 128; with 1,000 images the batch is 32 so
that a run takes enough optimiser steps to learn at all.

Results are appended one line per architecture to ``--out`` (JSON lines), so an interrupted run
resumes where it stopped; the tables are computed from that file (``--table`` prints them from
whatever is there).
"""
from __future__ import annotations

import argparse
import itertools
import json
import statistics
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import optuna
import torch

import nas
from evaluators.data import channel_stats, load_dataset, prepare
from evaluators.proxies import ZERO_COST_PROXIES, score_proxy
from evaluators.train import TrainConfig, train_proxy
from search_spaces import get_space
from search_spaces.base import InvalidArchitecture
from studies.budgets import parse_macs

SETTINGS = {"32px": {"resolution": 32}, "32px_w0.5": {"resolution": 32, "width_mult": 0.5},
            "64px": {"resolution": 64}}
REFERENCE_SEEDS = (1, 2)


def kendall_tau(a: list[float], b: list[float]) -> float:
    """Kendall's tau-b (ties in either ranking handled)."""
    concordant = discordant = ties_a = ties_b = 0
    for i, j in itertools.combinations(range(len(a)), 2):
        da, db = a[i] - a[j], b[i] - b[j]
        if da == 0 and db == 0:
            continue
        if da == 0:
            ties_a += 1
        elif db == 0:
            ties_b += 1
        elif (da > 0) == (db > 0):
            concordant += 1
        else:
            discordant += 1
    n0 = concordant + discordant
    denominator = ((n0 + ties_a) * (n0 + ties_b)) ** 0.5
    return (concordant - discordant) / denominator if denominator else float("nan")


def sample_archs(spaces: list[str], count: int, budget: float, seed: int) -> list[tuple[str, nas.ArchConfig]]:
    """``count`` distinct random architectures, the ``spaces`` taken in turn, each fitted to the
    budget and kept when it costs 0.5-1 x ``budget`` MACs and trains at 32 px."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    studies = {name: optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed)) for name in spaces}
    archs, seen = [], set()
    probe = torch.zeros(2, 3, 32, 32)
    for k in itertools.count():
        if len(archs) == count:
            return archs
        name = spaces[k % len(spaces)]
        trial = studies[name].ask()
        try:
            space = get_space(name)
            arch = space.fit(space.sample(trial), macs_budget=budget)
        except InvalidArchitecture:
            continue
        finally:
            studies[name].tell(trial, 0.0)
        if arch.arch_id in seen or not 0.5 * budget <= nas.analytic_cost(arch).macs <= budget:
            continue
        try:
            with torch.no_grad():
                nas.build_model(arch, 10).eval()(probe)
        except Exception:  # noqa: BLE001 - any failure at 32 px disqualifies the sample
            continue
        seen.add(arch.arch_id)
        archs.append((name, arch))


def evaluate(space: str, arch: nas.ArchConfig, data, minibatch, short: TrainConfig, ref: TrainConfig) -> dict:
    cost = nas.analytic_cost(arch)
    row = {"space": space, "arch_id": arch.arch_id, "layout": arch.layout, "arch": arch.to_json(),
           "params_m": cost.params / 1e6, "macs_m": cost.macs / 1e6}
    x, y = minibatch
    for proxy in ZERO_COST_PROXIES:
        s = score_proxy(arch, proxy, x, y, data.num_classes, seed=short.seed)
        row[proxy], row[f"{proxy}_s"] = s.score, s.seconds
    for name, fields in SETTINGS.items():
        r = train_proxy(arch, data, replace(short, **fields))
        row.update({name: r.accuracy, f"{name}_1ep": r.history[0], f"{name}_s": r.seconds})
    for seed in REFERENCE_SEEDS:
        r = train_proxy(arch, data, replace(ref, seed=seed))
        row.update({f"ref{seed}": r.accuracy, f"ref{seed}_history": r.history, f"ref{seed}_s": r.seconds})
    row["ref"] = statistics.mean(row[f"ref{seed}"] for seed in REFERENCE_SEEDS)
    return row


def within_tau(rows: list[dict], key: str, reference: str) -> float:
    """Mean over spaces of the tau within each space (how well the proxy orders one family's points,
    where it cannot lean on differences between families)."""
    taus = []
    for space in sorted({r["space"] for r in rows}):
        own = [r for r in rows if r["space"] == space]
        if len(own) > 2:
            taus.append(kendall_tau([r[key] for r in own], [r[reference] for r in own]))
    return statistics.mean(taus) if taus else float("nan")


def tables(rows: list[dict], short: TrainConfig, ref: TrainConfig) -> str:
    counts = ", ".join(f"{space} {n}" for space, n in sorted(Counter(r["space"] for r in rows).items()))
    lines = [f"{len(rows)} architectures ({counts}); "
             f"MACs {min(r['macs_m'] for r in rows):.0f}M-{max(r['macs_m'] for r in rows):.0f}M; reference: "
             f"{ref.epochs} epochs x {ref.train_size} images at {ref.resolution} px, mean of seeds "
             f"{' and '.join(map(str, REFERENCE_SEEDS))}, accuracy {min(r['ref'] for r in rows):.3f}-"
             f"{max(r['ref'] for r in rows):.3f}", "",
             "| proxy | tau vs reference | tau within a space (mean) | seconds per arch (median, 1 thread) |",
             "|---|---|---|---|"]

    def line(name: str, key: str, seconds: str | None) -> None:
        spent = "-" if seconds is None else f"{statistics.median(r[seconds] for r in rows):.1f}"
        lines.append(f"| {name} | {kendall_tau([r[key] for r in rows], [r['ref'] for r in rows]):+.2f} | "
                     f"{within_tau(rows, key, 'ref'):+.2f} | {spent} |")

    for proxy in ZERO_COST_PROXIES:
        line(f"`{proxy}`", proxy, f"{proxy}_s")
    for name, fields in SETTINGS.items():
        label = f"train {fields['resolution']} px" + (f" x{fields['width_mult']:g} width" if "width_mult" in fields else "")
        line(f"{label}, 1 epoch", f"{name}_1ep", None)
        line(f"**{label}, {short.epochs} epochs of {short.train_size}**", name, f"{name}_s")
    a, b = (f"ref{seed}" for seed in REFERENCE_SEEDS)
    tau = kendall_tau([r[a] for r in rows], [r[b] for r in rows])
    seconds = statistics.median(r[f"{a}_s"] for r in rows)
    lines.append(f"| reference seed {REFERENCE_SEEDS[0]} vs seed {REFERENCE_SEEDS[1]} (the reference's noise) | {tau:+.2f} | "
                 f"{within_tau(rows, a, b):+.2f} | {seconds:.1f} per seed |")
    return "\n".join(lines)


def read(path: Path) -> dict[str, dict]:
    """The rows already measured, by arch id."""
    if not path.exists():
        return {}
    return {r["arch_id"]: r for r in map(json.loads, path.read_text().splitlines())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--archs", type=int, default=32)
    ap.add_argument("--spaces", nargs="+", default=["hybrid", "coatnet_ctt", "metaformer", "mobilevit"])
    ap.add_argument("--budget", default="1gflop", help="MACs budget at the design resolution (default 1gflop)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--train", type=int, default=1000, help="training images of the short runs")
    ap.add_argument("--val", type=int, default=500)
    ap.add_argument("--ref-epochs", type=int, default=3)
    ap.add_argument("--ref-train", type=int, default=1000)
    ap.add_argument("--ref-val", type=int, default=1000)
    ap.add_argument("--ref-resolution", type=int, default=96)
    ap.add_argument("--batch", type=int, default=32, help="batch size of every run (the search's is 128)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the architecture sample")
    ap.add_argument("--shard", default="0/1", help="K/N: evaluate every N-th architecture from the K-th")
    ap.add_argument("--table", action="store_true", help="print the tables from the rows measured so far")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/proxy_validity.jsonl"))
    args = ap.parse_args()
    shard, shards = (int(v) for v in args.shard.split("/"))
    torch.set_num_threads(1)
    short = TrainConfig(epochs=args.epochs, train_size=args.train, val_size=args.val, batch_size=args.batch,
                        threads=1, precision="fp32")
    ref = replace(short, epochs=args.ref_epochs, train_size=args.ref_train, val_size=args.ref_val,
                  resolution=args.ref_resolution)

    archs = sample_archs(args.spaces, args.archs, parse_macs(args.budget), args.seed)
    done = read(args.out)
    if not args.table:
        print(f"sampled {len(archs)} architectures", flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        data = load_dataset("fashion-mnist")
        sub = data.subset(128, 1, seed=short.seed)
        mean, std = channel_stats(sub.train_x)
        minibatch = prepare(sub.train_x, 32, mean, std), sub.train_y
        for k, (space, arch) in enumerate(archs):
            if k % shards != shard or arch.arch_id in read(args.out):
                continue
            t0 = time.perf_counter()
            r = evaluate(space, arch, data, minibatch, short, ref)
            with args.out.open("a") as f:
                f.write(json.dumps(r) + "\n")
            print(f"[{k + 1}/{len(archs)}] {arch.arch_id} {space:<12} {r['layout']:<14} {r['macs_m']:4.0f}M  "
                  + "  ".join(f"{n} {r[n]:.3f}" for n in SETTINGS)
                  + f"  ref {r['ref1']:.3f}/{r['ref2']:.3f}  ({time.perf_counter() - t0:.0f} s)", flush=True)
        done = read(args.out)
    rows = [done[a.arch_id] for _, a in archs if a.arch_id in done]
    if len(rows) < len(archs):
        print(f"{len(rows)} of {len(archs)} architectures measured so far")
    if len(rows) > 2:
        print(tables(rows, short, ref))


if __name__ == "__main__":
    main()
