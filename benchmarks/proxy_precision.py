"""Proxy training in float32 against bfloat16 autocast on this CPU, side by side in one run:
training images/s per preset, and whether bf16 ranks architectures as fp32 does (Kendall tau of
their validation accuracies).

1. Speed: ``--presets`` at ``--width-mult`` of their widths, ``--train`` Fashion-MNIST images at
   32 px, one thread, batch 64; fp32 and bf16 alternate per preset, ``--rounds`` times (the best
   round of each is kept: interference from other work only slows a round down). Images/s of the
   training loop, as the proxy trainer reports them.
2. Ranking: ``--archs`` random architectures under ``--budget`` (uniform samples of the family
   spaces in turn, fitted to the budget as a search fits them, trainable at 32 px), each
   proxy-trained at ``--width-mult`` twice with the same seed, once per precision (``--epochs``
   epochs of ``--rank-train`` images, batch 32, validated on ``--rank-val`` held-out images):
   Kendall tau between the two lists of accuracies, and the largest difference.

bf16 pays off only where the CPU computes it natively (AMX, AVX512-BF16: see
``evaluators.train.cpu_has_native_bf16``); elsewhere torch emulates it with conversions around
fp32 arithmetic. Which one "auto" picks here is printed first.

    python benchmarks/proxy_precision.py                  # about 4-5 minutes on 2 cores
    python benchmarks/proxy_precision.py --archs 12 --rounds 2
"""
from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import optuna
import torch

import nas
from evaluators.data import load_dataset
from evaluators.train import ProxyTrainer, TrainConfig, choose_precision, cpu_flags, train_proxy
from search_spaces import list_spaces
from search_spaces.base import InvalidArchitecture
from studies.budgets import parse_macs

sys.path.insert(0, str(Path(__file__).resolve().parent))
from proxy_validity import kendall_tau  # noqa: E402  (a sibling script, not a package)

PRESETS = ("coatnet_0", "efficientformer_l1", "mobilevit_xs", "poolformer_s12")


def sample_archs(count: int, budget: int, seed: int) -> list[tuple[str, nas.ArchConfig]]:
    """``count`` distinct random architectures under ``budget`` MACs that train at 32 px: uniform
    samples of the family spaces, taken in turn, their widths fitted to the budget (``Space.fit``,
    as ``nas search`` does: most raw samples are over any small budget)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    families = [s for s in list_spaces() if s.name not in ("hybrid", "coatnet_ctt")]
    studies = {s.name: optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed)) for s in families}
    archs, seen = [], set()
    probe = torch.zeros(2, 3, 32, 32)
    for k in itertools.count():
        if len(archs) == count:
            return archs
        space = families[k % len(families)]
        trial = studies[space.name].ask()
        try:
            arch = space.fit(space.sample(trial), macs_budget=budget)
        except InvalidArchitecture:
            continue
        finally:
            studies[space.name].tell(trial, 0.0)
        if arch.arch_id in seen or nas.analytic_cost(arch).macs > budget:
            continue
        try:
            with torch.no_grad():
                nas.build_model(arch, 10).eval()(probe)
        except Exception:  # noqa: BLE001 - any failure at 32 px disqualifies the sample
            continue
        seen.add(arch.arch_id)
        archs.append((space.name, arch))


def training_rate(arch, data, precision: str, train: int, width_mult: float) -> float:
    cfg = TrainConfig(epochs=1, resolution=32, batch_size=64, train_size=train, val_size=64, threads=1,
                      width_mult=width_mult, precision=precision)
    trainer = ProxyTrainer(arch, data, cfg)
    trainer.run_epoch()
    return trainer.images_per_second


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--presets", nargs="+", default=list(PRESETS))
    p.add_argument("--width-mult", type=float, default=0.5)
    p.add_argument("--train", type=int, default=320, help="images per speed measurement")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--archs", type=int, default=8)
    p.add_argument("--budget", default="300mflop")
    p.add_argument("--rank-train", type=int, default=384)
    p.add_argument("--rank-val", type=int, default=300)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(1)
    auto = choose_precision("auto", "cpu")
    native = sorted(f for f in cpu_flags() if f.startswith(("avx512", "amx")))
    print(f"CPU capability {torch.backends.cpu.get_cpu_capability()}, avx512/amx flags: {', '.join(native) or 'none'}; "
          f"precision 'auto' here: {auto.name} ({auto.reason})")
    data = load_dataset("fashion-mnist")
    start = time.perf_counter()

    print(f"\n| preset (x{args.width_mult:g} widths, 32 px, 1 thread) | fp32 images/s | bf16 images/s | bf16 / fp32 |")
    print("|---|---|---|---|")
    for name in args.presets:
        rates = {"fp32": [], "bf16": []}
        for _ in range(args.rounds):
            for precision in rates:
                rates[precision].append(training_rate(nas.get_arch(name), data, precision, args.train, args.width_mult))
        fp32, bf16 = max(rates["fp32"]), max(rates["bf16"])
        print(f"| {name} | {fp32:.1f} | {bf16:.1f} | {bf16 / fp32:.2f}x |", flush=True)
    speed_seconds = time.perf_counter() - start

    archs = sample_archs(args.archs, parse_macs(args.budget), args.seed)
    accuracy = {"fp32": [], "bf16": []}
    seconds = {"fp32": 0.0, "bf16": 0.0}
    print(f"\n{len(archs)} random architectures under {args.budget} (trained at x{args.width_mult:g} widths), "
          f"{args.epochs} epochs of {args.rank_train} "
          f"images, validated on {args.rank_val}:")
    for family, arch in archs:
        row = []
        for precision in accuracy:
            cfg = TrainConfig(epochs=args.epochs, resolution=32, batch_size=32, train_size=args.rank_train,
                              val_size=args.rank_val, threads=1, seed=args.seed, width_mult=args.width_mult,
                              precision=precision)
            result = train_proxy(arch, data, cfg)
            accuracy[precision].append(result.accuracy)
            seconds[precision] += result.seconds
            row.append(f"{precision} {result.accuracy:.4f}")
        print(f"  {family:16s} {arch.layout:24s} {nas.analytic_cost(arch).macs / 1e6:6.0f}M  {', '.join(row)}",
              flush=True)
    if len(archs) < 2:  # --archs 0: the speed part only
        print(f"total {time.perf_counter() - start:.0f} s")
        return
    tau = kendall_tau(accuracy["fp32"], accuracy["bf16"])
    gap = max(abs(a - b) for a, b in zip(accuracy["fp32"], accuracy["bf16"]))
    print(f"\nKendall tau fp32 vs bf16 over {len(archs)} architectures: {tau:+.2f}; largest accuracy difference "
          f"{gap:.4f}; training time fp32 {seconds['fp32']:.0f} s, bf16 {seconds['bf16']:.0f} s "
          f"({seconds['bf16'] / seconds['fp32']:.1f}x)")
    print(f"total {time.perf_counter() - start:.0f} s (speed part {speed_seconds:.0f} s)")


if __name__ == "__main__":
    main()
