"""Latency protocol: repeatability of the median, and PyTorch eager vs ONNX Runtime, side by side.

    python benchmarks/latency.py [--presets a,b,c] [--threads N] [--repeats 3]

For each preset: ``repeats`` consecutive measurements with PyTorch (their medians and the spread
max/min - 1), then one with ONNX Runtime on the same threads and batch 1.
"""
from __future__ import annotations

import argparse

import torch

import nas
from evaluators.latency import measure_latency

DEFAULT = "mobileformer_96m,efficientvit_b0,mobilevit_xxs,lightvit_t,efficientformer_l1,poolformer_s12,coatnet_0"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--presets", default=DEFAULT)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--max-seconds", type=float, default=15.0)
    args = ap.parse_args()
    print(f"batch 1, {args.threads} threads, float32, CPU; medians in ms\n")
    print(f"{'preset':<20} {'res':>4} {'torch medians':>28} {'spread':>7} {'runs':>5} {'onnxruntime':>12} {'ort/torch':>9}")
    for name in args.presets.split(","):
        arch = nas.get_arch(name)
        reps = [measure_latency(arch, threads=args.threads, max_seconds=args.max_seconds) for _ in range(args.repeats)]
        meds = [r.latency_ms for r in reps]
        spread = max(meds) / min(meds) - 1
        try:
            ort = measure_latency(arch, threads=args.threads, backend="onnxruntime", max_seconds=args.max_seconds)
            ort_text, ratio = f"{ort.latency_ms:.2f}", f"{ort.latency_ms / (sum(meds) / len(meds)):.2f}"
        except Exception as e:  # an export the ONNX exporter cannot do is a result too
            ort_text, ratio = f"failed: {type(e).__name__}", "-"
        print(f"{name:<20} {arch.resolution:>4} {' / '.join(f'{m:.2f}' for m in meds):>28} {spread:>6.1%} "
              f"{min(r.runs for r in reps):>5} {ort_text:>12} {ratio:>9}")


if __name__ == "__main__":
    main()
