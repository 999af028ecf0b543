"""Trials per hour of `nas search` with a training proxy: 1 worker against 2, side by side.

    python benchmarks/worker_scaling.py [--trials 6] [--space metaformer] [--budget 300mflop]

The same random-sampler sequence (seed 0) in both runs, one epoch per candidate (so no candidate is
stopped early and both runs train the same candidates). One worker gets all cores' threads; two
workers get one thread each.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time


def run(workers: int, args: argparse.Namespace, tmp: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "nas", "search", "--space", args.space, "--budget", args.budget,
                    "--trials", str(args.trials), "--workers", str(workers), "--sampler", "random", "--seed", "0",
                    "--epochs", "1", "--train-size", str(args.train_size), "--val-size", "500",
                    "--storage", f"sqlite:///{tmp}/w{workers}.db", "--study", "bench"],
                   check=True, capture_output=True, text=True)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--space", default="metaformer")
    ap.add_argument("--budget", default="300mflop")
    ap.add_argument("--trials", type=int, default=6)
    ap.add_argument("--train-size", type=int, default=3000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        one = run(1, args, tmp)
        two = run(2, args, tmp)
    rate1, rate2 = args.trials * 3600 / one, args.trials * 3600 / two
    print(f"{args.trials} trials: 1 worker {one:.0f} s ({rate1:.0f} trials/h), 2 workers {two:.0f} s "
          f"({rate2:.0f} trials/h): {rate2 / rate1:.2f}x")


if __name__ == "__main__":
    main()
