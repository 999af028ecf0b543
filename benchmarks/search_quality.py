"""Search quality at equal work: hypervolume of the accuracy-vs-MACs front under the budget against
the number of trained candidates, for the TPE, NSGA-II and random samplers, several seeds each.

    python benchmarks/search_quality.py [--spaces coatnet_ctt hybrid] [--seeds 0 1 2] [--trials 30]
    python benchmarks/search_quality.py --shard 0/2 & python benchmarks/search_quality.py --shard 1/2  # 2 processes

Every run is a real `nas search` (``studies.search.Search``, in-process, one thread) with the
default proxy (short training with Pareto successive halving) at a cheaper setting, stated in
the output: ``--train-size`` images for ``--epochs`` epochs at 32 px, each candidate trained at
``--width-mult`` of its widths, validated on images held out of the training split. No preset is
seeded, so every sampler starts from nothing. A trained candidate is one trained to the end or
stopped early (``--trials`` counts both); the front is made of those trained to the end.

Hypervolume: the area dominated by the front in the (MACs, accuracy) box bounded by the budget and
accuracy 0, as the dashboard draws it. The table gives, per space and sampler, the final
hypervolume (mean and spread over seeds) and how many trained candidates each seed needed to reach
random sampling's mean final hypervolume. Runs are appended to ``--out`` (JSON lines), so an
interrupted benchmark resumes; the curves are written as HTML and, where a Chromium is installed,
as PNG.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import optuna

from evaluators.train import TrainConfig
from studies.budgets import parse_macs
from studies.dashboard.data import hypervolume_2d
from studies.search import Search, SearchSettings
from studies.stopping import pareto_levels

SAMPLERS = ("tpe", "nsga2", "random")
COLOURS = {"tpe": "#1f77b4", "nsga2": "#2ca02c", "random": "#d62728"}


def run_search(space: str, sampler: str, seed: int, budget: int, trials: int, train: TrainConfig) -> dict:
    """One search; its trained candidates in the order they were asked for."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = SearchSettings(space=space, macs_budget=budget, trials=trials, sampler=sampler, seed=seed,
                                  workers=0, worker_threads=1, storage=f"sqlite:///{tmp}/q.db", study_name="q",
                                  presets=0, train=train)
        t0 = time.perf_counter()
        study = Search(settings).run()
        seconds = time.perf_counter() - t0
        rows = []
        for t in study.get_trials(deepcopy=False):
            a = t.user_attrs
            if t.state.name not in ("COMPLETE", "PRUNED") or a.get("duplicate") or a.get("invalid"):
                continue  # repeats reuse a result; nothing was trained
            if t.state.name == "COMPLETE" and not a.get("feasible"):
                continue  # over budget: told to the sampler, never trained
            rows.append({"trial": t.number, "state": t.state.name, "macs": a.get("macs"), "layout": a.get("layout"),
                         "accuracy": t.values[0] if t.state.name == "COMPLETE" else None,
                         "epochs": len(a.get("history") or [])})
    return {"space": space, "sampler": sampler, "seed": seed, "trials": trials, "seconds": seconds, "rows": rows}


def curve(run: dict, budget: float) -> list[float]:
    """Hypervolume after each trained candidate."""
    points, out = [], []
    for r in run["rows"]:
        if r["state"] == "COMPLETE" and r["accuracy"] is not None and r["macs"] <= budget:
            points.append((float(r["macs"]), float(r["accuracy"])))
        out.append(hypervolume_2d(points, (budget, 0.0)))
    return out


def reach(hv: list[float], target: float) -> int | None:
    """Trained candidates needed to reach ``target`` (None: never)."""
    return next((k for k, v in enumerate(hv, 1) if v >= target * (1 - 1e-12)), None)


def table(runs: list[dict], budget: float) -> str:
    lines = ["| space | sampler | final hypervolume (mean +- sd over seeds) | candidates to reach random's final "
             "(per seed) | best accuracy (mean) | layouts on the fronts |", "|---|---|---|---|---|---|"]
    for space in dict.fromkeys(r["space"] for r in runs):
        mine = [r for r in runs if r["space"] == space]
        target = statistics.mean(curve(r, budget)[-1] for r in mine if r["sampler"] == "random") \
            if any(r["sampler"] == "random" for r in mine) else None
        for sampler in SAMPLERS:
            rs = sorted((r for r in mine if r["sampler"] == sampler), key=lambda r: r["seed"])
            if not rs:
                continue
            finals = [curve(r, budget)[-1] / 1e9 for r in rs]
            sd = statistics.stdev(finals) if len(finals) > 1 else 0.0
            reached = ", ".join(str(reach(curve(r, budget), target) or "never") for r in rs) if target else "-"
            layouts = sorted({row["layout"] for r in rs for row in front_rows(r, budget)})
            best = statistics.mean(max(row["accuracy"] or 0.0 for row in r["rows"]) for r in rs)
            lines.append(f"| {space} | {sampler} | {statistics.mean(finals):.4f} +- {sd:.4f} | {reached} of "
                         f"{rs[0]['trials']} | {best:.3f} | {', '.join(layouts)} |")
    return "\n".join(lines)


def front_rows(run: dict, budget: float) -> list[dict]:
    done = [r for r in run["rows"] if r["state"] == "COMPLETE" and r["accuracy"] is not None and r["macs"] <= budget]
    levels = pareto_levels([(r["accuracy"], r["macs"]) for r in done])
    return [r for r, level in zip(done, levels) if level == 0]


def figure(runs: list[dict], budget: float, note: str):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    spaces = list(dict.fromkeys(r["space"] for r in runs))
    fig = make_subplots(rows=1, cols=len(spaces), subplot_titles=spaces)
    for col, space in enumerate(spaces, 1):
        for sampler in SAMPLERS:
            rs = [r for r in runs if r["space"] == space and r["sampler"] == sampler]
            if not rs:
                continue
            curves = [curve(r, budget) for r in rs]
            for c in curves:
                fig.add_trace(go.Scatter(x=list(range(1, len(c) + 1)), y=[v / 1e9 for v in c], mode="lines",
                                         line=dict(color=COLOURS[sampler], width=1, shape="hv"), opacity=0.3,
                                         showlegend=False, hoverinfo="skip"), row=1, col=col)
            n = min(len(c) for c in curves)
            mean = [statistics.mean(c[k] for c in curves) / 1e9 for k in range(n)]
            fig.add_trace(go.Scatter(x=list(range(1, n + 1)), y=mean, mode="lines", name=f"{sampler} (mean of "
                                     f"{len(rs)})", line=dict(color=COLOURS[sampler], width=3, shape="hv"),
                                     showlegend=col == 1), row=1, col=col)
        fig.update_xaxes(title_text="trained candidates", row=1, col=col)
    fig.update_yaxes(title_text="hypervolume (accuracy x GMACs)", row=1, col=1)
    fig.update_layout(title=dict(text=note, font=dict(size=12)), template="plotly_white", width=1100, height=450,
                      margin=dict(l=60, r=20, t=70, b=50), legend=dict(orientation="h", y=-0.18))
    return fig


def screenshot(html: Path, png: Path, size: tuple[int, int] = (1100, 450)) -> bool:
    """A PNG of the page by a headless Chromium, when one is installed."""
    browser = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)),
                   None)
    if browser is None:
        return False
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}",
                        "--hide-scrollbars", f"--window-size={size[0]},{size[1]}", f"--screenshot={png.resolve()}",
                        html.resolve().as_uri()], capture_output=True, timeout=120)
    return png.exists()


def read(path: Path) -> list[dict]:
    """The searches run so far; the first of a (space, sampler, seed) run twice by two shards."""
    runs = {}
    for line in path.read_text().splitlines() if path.exists() else []:
        run = json.loads(line)
        runs.setdefault((run["space"], run["sampler"], run["seed"]), run)
    return list(runs.values())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spaces", nargs="+", default=["coatnet_ctt", "hybrid"])
    ap.add_argument("--samplers", nargs="+", default=list(SAMPLERS), choices=SAMPLERS)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--budget", default="1gflop")
    ap.add_argument("--trials", type=int, default=30, help="trained candidates per search")
    ap.add_argument("--train-size", type=int, default=1000)
    ap.add_argument("--val-size", type=int, default=500)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--width-mult", type=float, default=0.5)
    ap.add_argument("--shard", default="0/1", help="K/N: run every N-th search from the K-th")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/search_quality.jsonl"))
    ap.add_argument("--figure", type=Path, default=Path("benchmarks/results/search_quality.html"),
                    help="the curves as HTML; a PNG beside it when Chromium is installed")
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    budget = parse_macs(args.budget)
    train = TrainConfig(epochs=args.epochs, resolution=32, train_size=args.train_size, val_size=args.val_size,
                        batch_size=args.batch, width_mult=args.width_mult, threads=1)
    shard, shards = (int(v) for v in args.shard.split("/"))
    plan = [(sp, sa, se) for sp in args.spaces for se in args.seeds for sa in args.samplers]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for k, (space, sampler, seed) in enumerate(plan):
        done = {(r["space"], r["sampler"], r["seed"]) for r in read(args.out)}
        if k % shards != shard or (space, sampler, seed) in done:
            continue
        run = run_search(space, sampler, seed, budget, args.trials, train)
        with args.out.open("a") as f:
            f.write(json.dumps(run) + "\n")
        print(f"[{k + 1}/{len(plan)}] {space} {sampler} seed {seed}: hypervolume {curve(run, budget)[-1] / 1e9:.4f} "
              f"after {len(run['rows'])} candidates ({run['seconds']:.0f} s)", flush=True)
    runs = [r for r in read(args.out) if r["space"] in args.spaces and r["sampler"] in args.samplers
            and r["seed"] in args.seeds]
    if len(runs) < len(plan):
        print(f"{len(runs)} of {len(plan)} searches done; the table comes when all are")
        return
    note = (f"{args.trials} trained candidates per search, budget {args.budget}; proxy: {args.epochs} epochs of "
            f"{args.train_size} Fashion-MNIST images at 32 px, width x{args.width_mult}, {args.val_size} held-out "
            f"validation images; {len(args.seeds)} seeds (thin lines), mean (thick)")
    print(note)
    print(table(runs, budget))
    print(f"wall time per search: median {statistics.median(r['seconds'] for r in runs):.0f} s")
    fig = figure(runs, budget, note)
    fig.write_html(args.figure, include_plotlyjs=True, config={"displayModeBar": False})
    png = args.figure.with_suffix(".png")
    print(f"curves: {args.figure}" + (f" and {png}" if screenshot(args.figure, png) else ""))


if __name__ == "__main__":
    main()
