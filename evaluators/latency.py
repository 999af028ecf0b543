"""A latency protocol whose numbers can be trusted and reproduced.

Everything that changes the number is recorded (batch, resolution, threads, dtype, backend,
device, library versions). On a shared machine (a cloud VM whose cores have busy neighbours)
the same computation alternates for seconds at a time between its own speed and up to about
1.8x slower; even a one-thread matmul does. Interference only ever adds time, so the headline
``latency_ms`` is a low quantile of the timed runs (the 10th percentile: the model's speed when
left alone), and after a warm-up, runs continue for at least ``min_seconds`` (to see past one
slow stretch) until the 95% confidence interval of that quantile is within ``rel_tol`` of it, or
a time cap is hit. The median of all runs and the inter-quartile range are reported too: what the
model delivered while measured, interference included. One thread by default: on a VM, a
second thread waits on a second, independently disturbed core (measured: README, latency protocol).
CUDA is synchronised around every run. Backends: PyTorch eager (CPU or CUDA) and ONNX Runtime (CPU).
"""
from __future__ import annotations

import copy
import math
import os
import platform
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional

import torch
from torch import nn

from evaluators.threads import torch_threads
from nas.builder import build_model
from nas.config import ArchConfig

BACKENDS = ("torch", "onnxruntime")
QUANTILE = 0.1  # of the timed runs: the headline latency


@dataclass(frozen=True)
class LatencyReport:
    latency_ms: float  # 10th percentile of the timed runs
    ci_low_ms: float  # its 95% confidence interval
    ci_high_ms: float
    median_ms: float  # of all timed runs, interference included
    p25_ms: float
    p75_ms: float
    runs: int
    converged: bool  # the interval reached the target width before the time cap
    batch: int
    resolution: int
    threads: int
    dtype: str
    backend: str
    device: str
    versions: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def quantile_ci(samples: list[float], q: float, z: float = 1.96) -> tuple[float, float, float]:
    """The q-quantile and a distribution-free 95% interval from the binomial order statistics."""
    s = sorted(samples)
    n = len(s)
    half = z * math.sqrt(n * q * (1 - q))
    lo = max(0, int(math.floor(n * q - half)))
    hi = min(n - 1, int(math.ceil(n * q + half)))
    return _quantile(s, q), s[lo], s[hi]


def _quantile(s: list[float], q: float) -> float:
    """The q-quantile of already sorted ``s``, interpolating linearly between order statistics."""
    pos = q * (len(s) - 1)
    lo = int(math.floor(pos))
    return s[lo] + (s[min(lo + 1, len(s) - 1)] - s[lo]) * (pos - lo)


def time_callable(run: Callable[[], None], sync: Callable[[], None] = lambda: None, warmup_seconds: float = 1.0,
                  min_runs: int = 15, min_seconds: float = 10.0, max_seconds: float = 20.0,
                  rel_tol: float = 0.02) -> tuple[list[float], bool]:
    """Timed runs (ms) of ``run`` after a warm-up, by the stopping rule of this module."""
    t_end = time.perf_counter() + warmup_seconds
    warm = 0
    while warm < 3 or time.perf_counter() < t_end:
        run()
        sync()
        warm += 1
    samples: list[float] = []
    start = next_check = time.perf_counter()
    min_seconds = min(min_seconds, max_seconds)
    while True:
        sync()
        t0 = time.perf_counter()
        run()
        sync()
        t1 = time.perf_counter()
        samples.append((t1 - t0) * 1000)
        if len(samples) >= min_runs and t1 - start >= min_seconds and t1 >= next_check:
            next_check = t1 + 0.1  # sorting every run would cost more than a fast model's run
            value, lo, hi = quantile_ci(samples, QUANTILE)
            if hi - lo <= rel_tol * value:
                return samples, True
        if t1 - start > max_seconds:
            return samples, False


def _versions(backend: str) -> dict:
    v = {"torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
         "cpu_count": os.cpu_count()}
    if backend == "onnxruntime":
        import onnxruntime
        v["onnxruntime"] = onnxruntime.__version__
    return v


def measure_latency(arch_or_model: ArchConfig | nn.Module, resolution: Optional[int] = None, batch: int = 1,
                    threads: int = 1, backend: str = "torch", device: Optional[str] = None,
                    num_classes: int = 1000, rel_tol: float = 0.02, min_seconds: float = 10.0,
                    max_seconds: float = 20.0) -> LatencyReport:
    """Latency of one forward pass (ms) by the protocol above."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    if isinstance(arch_or_model, ArchConfig):
        resolution = resolution or arch_or_model.resolution
        model = build_model(arch_or_model, num_classes)
    else:
        model, resolution = arch_or_model, resolution or 224
    device = device or ("cuda" if torch.cuda.is_available() and backend == "torch" else "cpu")
    if backend == "onnxruntime" and device != "cpu":
        raise ValueError("the onnxruntime backend measures on the CPU only")
    model = model.eval().to(device)
    x = torch.randn(batch, 3, resolution, resolution, device=device)

    if backend == "torch":
        if device == "cpu":
            # In a fresh process, a model runs up to ~15% slower for as long as it lives (measured on
            # mobileformer_96m) until some large blocks have been freed: glibc then raises its mmap
            # threshold and serves them from its heap. Freeing a copy first makes every measurement
            # in a process alike, the first one included.
            copy.deepcopy(model)
            model = copy.deepcopy(model)
        sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

        def run() -> None:
            with torch.inference_mode():
                model(x)

        with torch_threads(threads):
            samples, converged = time_callable(run, sync, min_seconds=min_seconds, max_seconds=max_seconds,
                                               rel_tol=rel_tol)
    else:
        session = onnx_session(model, x, threads)
        feed = {session.get_inputs()[0].name: x.cpu().numpy()}
        samples, converged = time_callable(lambda: session.run(None, feed), min_seconds=min_seconds,
                                           max_seconds=max_seconds, rel_tol=rel_tol)

    value, lo, hi = quantile_ci(samples, QUANTILE)
    s = sorted(samples)
    return LatencyReport(value, lo, hi, _quantile(s, 0.5), _quantile(s, 0.25), _quantile(s, 0.75),
                         len(samples), converged, batch, resolution, threads, "float32", backend,
                         _device_name(device), _versions(backend))


def export_onnx(model: nn.Module, x: torch.Tensor, path: str) -> None:
    """ONNX export with the TorchScript-based exporter (no onnxscript needed), opset 17."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (x,), path, dynamo=False, opset_version=17, input_names=["image"],
                          output_names=["logits"], dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}})


def onnx_session(model: nn.Module, x: torch.Tensor, threads: int):
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.onnx")
        export_onnx(model.cpu(), x.cpu(), path)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def _device_name(device: str) -> str:
    if device.startswith("cuda"):
        return f"cuda:{torch.cuda.get_device_name(torch.device(device))}"
    return f"cpu:{platform.processor() or platform.machine()}"
