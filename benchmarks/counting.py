"""Analytic counter vs fvcore on every preset: agreement and speed, side by side in one run.

    python benchmarks/counting.py            # the comparison table and the summary
    python benchmarks/counting.py --markdown # the README's preset table (ours beside the papers')
"""
from __future__ import annotations

import argparse
import statistics
import time

import nas
from evaluators.cost import count_params, fvcore_macs


def measure(repeats: int = 20) -> list[dict]:
    rows = []
    for preset in nas.list_presets():
        arch = preset.arch
        t0 = time.perf_counter()
        model = nas.build_model(arch)
        params, macs = count_params(model), fvcore_macs(model, arch.resolution)
        fv_seconds = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(repeats):
            cost = nas.analytic_cost(arch)
        an_seconds = (time.perf_counter() - t0) / repeats
        rows.append({"name": preset.name, "preset": preset, "params": params, "macs": macs,
                     "analytic_params": cost.params, "analytic_macs": cost.macs,
                     "fvcore_s": fv_seconds, "analytic_s": an_seconds})
    return rows


def _f(v, digits=3):
    return "-" if v is None else f"{v:.{digits}f}".rstrip("0").rstrip(".")


def markdown(rows: list[dict]) -> str:
    lines = ["| preset | layout | res | params (M) | MACs (G) | reference params / MACs | published params / MACs / top-1 | deviation |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        p = r["preset"]
        lines.append(f"| {p.name} | {p.arch.layout} | {p.arch.resolution} | {r['params'] / 1e6:.3f} | {r['macs'] / 1e9:.3f} "
                     f"| {_f(p.ref_params_m)} / {_f(p.ref_macs_g)} "
                     f"| {_f(p.published_params_m)} / {_f(p.published_macs_g)} / {_f(p.published_top1, 2)} "
                     f"| {p.deviation} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    rows = measure()
    if args.markdown:
        print(markdown(rows))
        return
    print(f"{'preset':<20} {'params':>12} {'MACs fvcore':>14} {'MACs analytic':>14} {'rel diff':>9} {'fvcore s':>9} {'analytic ms':>12} {'speed-up':>9}")
    diffs, ups = [], []
    for r in rows:
        diff = abs(r["analytic_macs"] - r["macs"]) / r["macs"]
        assert r["analytic_params"] == r["params"], r["name"]
        up = r["fvcore_s"] / r["analytic_s"]
        diffs.append(diff)
        ups.append(up)
        print(f"{r['name']:<20} {r['params']:>12,} {r['macs']:>14,} {r['analytic_macs']:>14,} {diff:>9.2e} "
              f"{r['fvcore_s']:>9.2f} {r['analytic_s'] * 1000:>12.2f} {up:>9.0f}x")
    print(f"\n{len(rows)} presets: params identical in all; MACs max relative difference {max(diffs):.2e}; "
          f"speed-up (build + fvcore trace vs analytic) median {statistics.median(ups):.0f}x, min {min(ups):.0f}x")


if __name__ == "__main__":
    main()
