"""Trials per hour of `nas search` with a training proxy: 1 worker against 2, side by side.

    python benchmarks/worker_scaling.py [--trials 24] [--space efficientvit] [--budget 5gflop]

Three runs of the same random-sampler sequence (seed 0), one epoch per candidate (so no candidate
is stopped early and every run trains the same candidates), start-up included:

- 1 worker with 1 thread: one core's worth of work, the unit of scaling;
- 2 workers with 1 thread each: what adding a worker (a core) gives;
- 1 worker with 2 threads: the same two cores used by PyTorch's intra-op threads instead.

The default space and budget make most random samples fit the budget, so the runs measure
training throughput rather than sampling; enough trials amortise the Ray start-up and the tail
where one worker finishes the last candidate alone.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time

import optuna


def timeline(url: str, t0: float, t1: float) -> str:
    """Where a run's wall time went: before the first trial, trials, after the last."""
    trials = [t for t in optuna.load_study(study_name="bench", storage=url).get_trials(deepcopy=False)
              if t.datetime_complete is not None]
    first = min(t.datetime_start.timestamp() for t in trials)
    last = max(t.datetime_complete.timestamp() for t in trials)
    return f"start-up {first - t0:.0f} s, trials {last - first:.0f} s, shut-down {t1 - last:.0f} s"


def run(workers: int, threads: int, args: argparse.Namespace, tmp: str) -> float:
    url = f"sqlite:///{tmp}/w{workers}t{threads}.db"
    t0 = time.time()
    subprocess.run([sys.executable, "-m", "nas_cli", "search", "--space", args.space, "--budget", args.budget,
                    "--trials", str(args.trials), "--workers", str(workers), "--worker-threads", str(threads),
                    "--sampler", "random", "--seed", "0", "--epochs", "1", "--train-size", str(args.train_size),
                    "--val-size", "500", "--storage", url, "--study", "bench"],
                   check=True, capture_output=True, text=True)
    t1 = time.time()
    print(f"{workers} worker(s) x {threads} thread(s): {t1 - t0:.0f} s; {timeline(url, t0, t1)}", flush=True)
    return t1 - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--space", default="efficientvit")
    ap.add_argument("--budget", default="5gflop")
    ap.add_argument("--trials", type=int, default=24)
    ap.add_argument("--train-size", type=int, default=1000)
    args = ap.parse_args()
    rates = {}
    with tempfile.TemporaryDirectory() as tmp:
        for workers, threads in ((1, 1), (2, 1), (1, 2)):
            seconds = run(workers, threads, args, tmp)
            rates[workers, threads] = args.trials * 3600 / seconds
    base = rates[1, 1]
    print("\n" + ", ".join(f"{w}x{t}: {r:.0f} trials/h" for (w, t), r in rates.items()))
    print(f"{args.trials} trials on {args.space} under {args.budget}: 2 workers deliver {rates[2, 1] / base:.2f}x the "
          f"trials per hour of 1 worker (1 thread each); 1 worker with 2 threads {rates[1, 2] / base:.2f}x")


if __name__ == "__main__":
    main()
