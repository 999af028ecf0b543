"""A latency protocol whose numbers can be trusted and reproduced.

Everything that changes the number is recorded (batch, resolution, threads, dtype, backend,
device, library versions). After a warm-up, timed runs continue until the 95% confidence
interval of the median is within ``rel_ci`` of it (at least ``min_runs``) or a time cap is hit;
the median is reported with that interval and the inter-quartile range. CUDA is synchronised
around every run. Backends: PyTorch eager (CPU or CUDA) and ONNX Runtime (CPU).
"""
from __future__ import annotations

import math
import os
import platform
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional

import torch
from torch import nn

from nas.builder import build_model
from nas.config import ArchConfig

BACKENDS = ("torch", "onnxruntime")


@dataclass(frozen=True)
class LatencyReport:
    latency_ms: float  # median of the timed runs
    ci_low_ms: float  # 95% confidence interval of the median
    ci_high_ms: float
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


def median_ci(samples: list[float], z: float = 1.96) -> tuple[float, float, float]:
    """Median and a distribution-free 95% interval from the binomial order statistics."""
    s = sorted(samples)
    n = len(s)
    med = s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])
    half = z * math.sqrt(n) / 2
    lo = max(0, int(math.floor(n / 2 - half)))
    hi = min(n - 1, int(math.ceil(n / 2 + half)))
    return med, s[lo], s[hi]


def _quantile(samples: list[float], q: float) -> float:
    s = sorted(samples)
    pos = q * (len(s) - 1)
    lo = int(math.floor(pos))
    return s[lo] + (s[min(lo + 1, len(s) - 1)] - s[lo]) * (pos - lo)


@contextmanager
def _threads(n: int):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def time_callable(run: Callable[[], None], sync: Callable[[], None] = lambda: None, warmup_seconds: float = 0.5,
                  min_runs: int = 15, max_runs: int = 2000, rel_ci: float = 0.02,
                  max_seconds: float = 20.0) -> tuple[list[float], bool]:
    """Timed runs (ms) of ``run`` after a warm-up; stops when the median is known to ``rel_ci``."""
    t_end = time.perf_counter() + warmup_seconds
    warm = 0
    while warm < 3 or time.perf_counter() < t_end:
        run()
        sync()
        warm += 1
    samples: list[float] = []
    deadline = time.perf_counter() + max_seconds
    while len(samples) < max_runs:
        sync()
        t0 = time.perf_counter()
        run()
        sync()
        samples.append((time.perf_counter() - t0) * 1000)
        if len(samples) >= min_runs:
            med, lo, hi = median_ci(samples)
            if (hi - lo) <= rel_ci * med:
                return samples, True
        if time.perf_counter() > deadline:
            break
    return samples, False


def _versions(backend: str) -> dict:
    v = {"torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
         "cpu_count": os.cpu_count()}
    if backend == "onnxruntime":
        import onnxruntime
        v["onnxruntime"] = onnxruntime.__version__
    return v


def measure_latency(arch_or_model: ArchConfig | nn.Module, resolution: Optional[int] = None, batch: int = 1,
                    threads: Optional[int] = None, backend: str = "torch", device: Optional[str] = None,
                    num_classes: int = 1000, rel_ci: float = 0.02, max_seconds: float = 20.0) -> LatencyReport:
    """Median latency of one forward pass (ms) by the protocol above."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    if isinstance(arch_or_model, ArchConfig):
        resolution = resolution or arch_or_model.resolution
        model = build_model(arch_or_model, num_classes)
    else:
        model, resolution = arch_or_model, resolution or 224
    threads = threads or torch.get_num_threads()
    device = device or ("cuda" if torch.cuda.is_available() and backend == "torch" else "cpu")
    if backend == "onnxruntime" and device != "cpu":
        raise ValueError("the onnxruntime backend measures on the CPU only")
    model = model.eval().to(device)
    x = torch.randn(batch, 3, resolution, resolution, device=device)

    if backend == "torch":
        sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

        def run() -> None:
            with torch.inference_mode():
                model(x)

        with _threads(threads):
            samples, converged = time_callable(run, sync, rel_ci=rel_ci, max_seconds=max_seconds)
    else:
        session = onnx_session(model, x, threads)
        feed = {session.get_inputs()[0].name: x.cpu().numpy()}
        samples, converged = time_callable(lambda: session.run(None, feed), rel_ci=rel_ci, max_seconds=max_seconds)

    med, lo, hi = median_ci(samples)
    return LatencyReport(med, lo, hi, _quantile(samples, 0.25), _quantile(samples, 0.75), len(samples), converged,
                         batch, resolution, threads, "float32", backend, _device_name(device), _versions(backend))


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
