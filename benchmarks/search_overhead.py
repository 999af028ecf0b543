"""Orchestration cost of `nas search` against Ray Tune + OptunaSearch, side by side in one run.

    python benchmarks/search_overhead.py [--trials 60] [--space metaformer]   (needs pip install '.[bench]')

Both search the same space with the instant ``params`` proxy (so the work per trial is nil and
only orchestration is timed) and the same Optuna TPE sampler; wall time includes start-up. Ray
Tune runs with ``reuse_actors=True``, its fastest setting. Each runs in a fresh process.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time

TUNE = r'''
import sys, time, warnings
warnings.filterwarnings("ignore")
t0 = time.perf_counter()
import optuna, ray
from ray import tune
from ray.tune.search.optuna import OptunaSearch
import nas, search_spaces
from search_spaces import InvalidArchitecture
space_name, trials, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
space = search_spaces.get_space(space_name)

def define(trial):
    try:
        return {"arch": space.sample(trial).to_json()}
    except InvalidArchitecture:
        return {"arch": ""}

def trainable(config):
    if not config["arch"]:
        return {"score": 0.0, "macs": 1e15}
    cost = nas.analytic_cost(nas.ArchConfig.from_json(config["arch"]))
    return {"score": float(cost.params), "macs": float(cost.macs)}

ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
search = OptunaSearch(space=define, metric=["score", "macs"], mode=["max", "min"],
                      sampler=optuna.samplers.TPESampler(seed=seed, multivariate=True))
tuner = tune.Tuner(trainable, tune_config=tune.TuneConfig(search_alg=search, num_samples=trials, reuse_actors=True),
                   run_config=tune.RunConfig(verbose=0, storage_path=sys.argv[4]))
results = tuner.fit()
print(len(results), time.perf_counter() - t0)
'''


def run_ours(space: str, trials: int, seed: int, tmp: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "nas_cli", "search", "--space", space, "--proxy", "params", "--trials",
                    str(trials), "--seed", str(seed), "--storage", f"sqlite:///{tmp}/ours.db", "--study", "bench"],
                   check=True, capture_output=True, text=True)
    return time.perf_counter() - t0


def run_tune(space: str, trials: int, seed: int, tmp: str) -> float:
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", TUNE, space, str(trials), str(seed), f"{tmp}/tune"], capture_output=True,
                       text=True)
    if r.returncode:
        raise SystemExit(f"ray tune failed:\n{r.stderr[-2000:]}")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--space", default="metaformer")
    ap.add_argument("--trials", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    ours, tune = [], []
    for i in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            ours.append(run_ours(args.space, args.trials, i, tmp))
            tune.append(run_tune(args.space, args.trials, i, tmp))
        print(f"run {i + 1}: nas search {ours[-1]:.1f} s, Ray Tune + OptunaSearch {tune[-1]:.1f} s")
    print(f"\n{args.trials} trials on {args.space}, params proxy: nas search best {min(ours):.1f} s, "
          f"Ray Tune best {min(tune):.1f} s, speed-up {min(tune) / min(ours):.2f}x")


if __name__ == "__main__":
    main()
