"""How far can each cheap proxy be trusted? Kendall tau of every zero-cost proxy and of the search's
short training against a longer training run, over random architectures of `hybrid` under a MACs
budget, on Fashion-MNIST.

    python benchmarks/proxy_validity.py [--archs 30] [--budget 1gflop] [--short-train 1000] [--long-train 2000]
    python benchmarks/proxy_validity.py --shard 0/2 & python benchmarks/proxy_validity.py --shard 1/2  # 2 processes

Per architecture (sampled uniformly at random, kept when valid, under the budget at its design
resolution and trainable at the proxy resolution):
- the zero-cost proxies on one real minibatch of 128 images at 32x32, as `nas search` scores them;
- short training: the search's recipe (2 epochs at 32x32, AdamW, warm-up and cosine schedule) on
  ``--short-train`` images, validated on 500; also read after its first epoch (the point where the
  search's early stopping decides);
- the reference: a longer run with another seed, initialisation and images, ``--long-epochs``
  epochs of ``--long-train`` images, validated on 1,000 other images.

The defaults are scaled down to 2 CPU cores, where these models train at only 20-500 images/s:
the search itself trains on 5,000 images in batches of 128. With so few images the batch is 32, so
that a run takes enough optimiser steps to learn at all. Pass larger sizes on a bigger machine.

Results are appended one line per architecture to ``--out`` (JSON lines), so an interrupted run
resumes where it stopped; the table is computed from that file.
"""
from __future__ import annotations

import argparse
import itertools
import json
import statistics
import time
from pathlib import Path

import optuna
import torch

import nas
from evaluators.data import channel_stats, load_dataset, prepare
from evaluators.proxies import ZERO_COST_PROXIES, score_proxy
from evaluators.train import TrainConfig, train_proxy
from search_spaces import get_space, list_spaces
from search_spaces.base import InvalidArchitecture
from studies.budgets import parse_macs


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


def sample_archs(count: int, budget: int, seed: int, resolution: int) -> tuple[list, dict]:
    """``count`` random valid points of `hybrid` under ``budget`` MACs that run at ``resolution``:
    uniform samples of its family sub-spaces, taken in turn (each checked to lie in `hybrid`; the
    families whose every point is over the budget contribute none).

    Uniform samples of the whole of `hybrid` are almost never both valid and under 1 GMAC (about 1
    in 4,000), and those that are are nearly all one-stage networks: not what a search explores."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    hybrid = get_space("hybrid")
    families = [s for s in list_spaces() if s.name not in ("hybrid", "coatnet_ctt")]  # coatnet covers coatnet_ctt
    studies = {s.name: optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed)) for s in families}
    archs, seen = [], set()
    rejected = {"invalid": 0, "over budget": 0, "not trainable at proxy resolution": 0}
    probe = torch.zeros(2, 3, resolution, resolution)
    for k in itertools.count():
        if len(archs) == count:
            break
        space = families[k % len(families)]
        trial = studies[space.name].ask()
        try:
            arch = space.sample(trial)
        except InvalidArchitecture:
            rejected["invalid"] += 1
            continue
        finally:
            studies[space.name].tell(trial, 0.0)
        if arch.arch_id in seen:
            continue
        if nas.analytic_cost(arch).macs > budget:
            rejected["over budget"] += 1
            continue
        try:
            with torch.no_grad():
                nas.build_model(arch, 10).eval()(probe)
        except Exception:  # noqa: BLE001 - any failure at this resolution disqualifies the sample
            rejected["not trainable at proxy resolution"] += 1
            continue
        assert hybrid.contains(arch) is None, hybrid.contains(arch)
        seen.add(arch.arch_id)
        archs.append((space.name, arch))
    return archs, rejected


def evaluate(family: str, arch, data, minibatch, short_cfg: TrainConfig, long_cfg: TrainConfig) -> dict:
    row = {"family": family, "arch_id": arch.arch_id, "layout": arch.layout, "arch": arch.to_json()}
    cost = nas.analytic_cost(arch)
    row.update(params_m=cost.params / 1e6, macs_m=cost.macs / 1e6)
    x, y = minibatch
    for proxy in ZERO_COST_PROXIES:
        s = score_proxy(arch, proxy, x, y, data.num_classes, seed=short_cfg.seed)
        row[proxy], row[f"{proxy}_s"] = s.score, s.seconds
    short = train_proxy(arch, data, short_cfg)
    row.update(train_1ep=short.history[0], train_2ep=short.history[-1], train_s=short.seconds)
    long = train_proxy(arch, data, long_cfg)
    row.update(long=long.accuracy, long_history=long.history, long_s=long.seconds)
    return row


def table(rows: list[dict], short_cfg: TrainConfig, long_cfg: TrainConfig) -> str:
    reference = [r["long"] for r in rows]
    candidates = [(p, p, f"{p}_s") for p in ZERO_COST_PROXIES] + [
        (f"train, 1 epoch of {short_cfg.train_size}", "train_1ep", None),
        (f"train, {short_cfg.epochs} epochs of {short_cfg.train_size}", "train_2ep", "train_s")]
    lines = [f"| proxy | Kendall tau vs {long_cfg.epochs} epochs x {long_cfg.train_size} images | seconds per arch (median) |",
             "|---|---|---|"]
    for name, key, seconds in candidates:
        tau = kendall_tau([r[key] for r in rows], reference)
        spent = "-" if seconds is None else f"{statistics.median(r[seconds] for r in rows):.2f}"
        lines.append(f"| {name} | {tau:+.2f} | {spent} |")
    accs = sorted(reference)
    lines.append("")
    lines.append(f"{len(rows)} architectures; reference accuracy from {accs[0]:.3f} to {accs[-1]:.3f} "
                 f"(median {statistics.median(accs):.3f}); MACs from {min(r['macs_m'] for r in rows):.0f}M to "
                 f"{max(r['macs_m'] for r in rows):.0f}M; reference run median "
                 f"{statistics.median(r['long_s'] for r in rows):.0f} s per arch.")
    return "\n".join(lines)


def read(path: Path) -> dict[str, dict]:
    """The rows already measured, by arch id."""
    if not path.exists():
        return {}
    return {r["arch_id"]: r for r in map(json.loads, path.read_text().splitlines())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--archs", type=int, default=30)
    ap.add_argument("--budget", default="1gflop", help="MACs budget at the design resolution (default 1gflop)")
    ap.add_argument("--short-train", type=int, default=1000, help="images of the short run (2 epochs)")
    ap.add_argument("--long-epochs", type=int, default=3)
    ap.add_argument("--long-train", type=int, default=2000, help="images of the reference run")
    ap.add_argument("--batch", type=int, default=32, help="batch size of both runs (the search's is 128)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the architecture sample")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores; 1 with --shard)")
    ap.add_argument("--shard", default="0/1", help="K/N: evaluate every N-th architecture from the K-th")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/proxy_validity.jsonl"))
    args = ap.parse_args()
    shard, shards = (int(v) for v in args.shard.split("/"))
    torch.set_num_threads(args.threads or (1 if shards > 1 else torch.get_num_threads()))
    short_cfg = TrainConfig(epochs=2, train_size=args.short_train, val_size=500, batch_size=args.batch)
    long_cfg = TrainConfig(epochs=args.long_epochs, train_size=args.long_train, val_size=1000, batch_size=args.batch,
                           seed=short_cfg.seed + 1)

    archs, rejected = sample_archs(args.archs, parse_macs(args.budget), args.seed, short_cfg.resolution)
    print(f"sampled {len(archs)} architectures; rejected {rejected}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    data = load_dataset("fashion-mnist")
    sub = data.subset(short_cfg.batch_size, 1, seed=short_cfg.seed)
    mean, std = channel_stats(sub.train_x)
    minibatch = prepare(sub.train_x, short_cfg.resolution, mean, std), sub.train_y
    for k, (family, arch) in enumerate(archs):
        if k % shards != shard or arch.arch_id in read(args.out):
            continue
        t0 = time.perf_counter()
        r = evaluate(family, arch, data, minibatch, short_cfg, long_cfg)
        with args.out.open("a") as f:
            f.write(json.dumps(r) + "\n")
        print(f"[{k + 1}/{len(archs)}] {arch.arch_id} {family:<16} {r['layout']:<12} {r['macs_m']:6.0f}M  "
              f"short {r['train_2ep']:.3f}  long {r['long']:.3f}  ({time.perf_counter() - t0:.0f} s)", flush=True)
    done = read(args.out)
    rows = [done[a.arch_id] for _, a in archs if a.arch_id in done]
    if len(rows) < len(archs):
        print(f"{len(rows)} of {len(archs)} architectures done; the table comes when all are")
        return
    print(table(rows, short_cfg, long_cfg))


if __name__ == "__main__":
    main()
