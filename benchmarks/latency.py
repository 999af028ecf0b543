"""Latency protocol: repeatability, and PyTorch eager vs ONNX Runtime, side by side.

    python benchmarks/latency.py [--presets a,b,c] [--threads 1] [--repeats 3]

First a probe of the machine itself: a one-thread matmul timed for 10 s, in half-second windows.
Then for each preset: ``repeats`` consecutive PyTorch measurements by the protocol of
`evaluators.latency` (the headline 10th percentile and the median of each, with the spread
max/min - 1 of each over the repeats), then one with ONNX Runtime on the same threads and batch 1.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

import nas
from evaluators.latency import measure_latency

DEFAULT = "mobileformer_96m,efficientvit_b0,mobilevit_xxs,lightvit_t,efficientformer_l1,poolformer_s12,coatnet_0"


def machine_probe(seconds: float = 10.0) -> str:
    """How much the machine's own speed moves: a fixed one-thread matmul in half-second windows."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    a = torch.randn(256, 256)
    windows, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end:
        runs, w_end = [], time.perf_counter() + 0.5
        while time.perf_counter() < w_end:
            t0 = time.perf_counter()
            a @ a
            runs.append((time.perf_counter() - t0) * 1000)
        windows.append(statistics.median(runs))
    torch.set_num_threads(before)
    return (f"machine probe: a one-thread 256x256 matmul's half-second medians ranged {min(windows):.3f}-"
            f"{max(windows):.3f} ms over {seconds:.0f} s (slowest/fastest {max(windows) / min(windows):.2f})")


def spread(values: list[float]) -> float:
    return max(values) / min(values) - 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", default=DEFAULT)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--min-seconds", type=float, default=10.0)
    ap.add_argument("--max-seconds", type=float, default=20.0)
    args = ap.parse_args()
    limits = dict(threads=args.threads, min_seconds=args.min_seconds, max_seconds=args.max_seconds)
    print(machine_probe(), flush=True)
    print(f"\nbatch 1, {args.threads} thread(s), float32, CPU; ms; latency = 10th percentile of the timed runs\n")
    print(f"{'preset':<19} {'res':>3} {'torch latency':>25} {'spread':>6} {'torch median':>25} {'spread':>6} "
          f"{'runs':>4} {'onnxruntime':>11} {'ort/torch':>9}")
    for name in args.presets.split(","):
        arch = nas.get_arch(name)
        reps = [measure_latency(arch, **limits) for _ in range(args.repeats)]
        lat, med = [r.latency_ms for r in reps], [r.median_ms for r in reps]
        try:
            ort = measure_latency(arch, backend="onnxruntime", **limits)
            ort_text, ratio = f"{ort.latency_ms:.2f}", f"{ort.latency_ms / statistics.mean(lat):.2f}"
        except Exception as e:  # an export the ONNX exporter cannot do is a result too
            ort_text, ratio = f"failed: {type(e).__name__}", "-"
        print(f"{name:<19} {arch.resolution:>3} {' / '.join(f'{v:.2f}' for v in lat):>25} {spread(lat):>6.1%} "
              f"{' / '.join(f'{v:.2f}' for v in med):>25} {spread(med):>6.1%} {min(r.runs for r in reps):>4} "
              f"{ort_text:>11} {ratio:>9}", flush=True)


if __name__ == "__main__":
    main()
