"""How fast a streamed image folder feeds training: images/s decoded and transformed to 224 px
(random-resized crop and flip, as training reads them; and the central crop of validation) by the
DataLoader with ``--workers`` processes, against decoding in the training process itself (0
workers), side by side in alternating rounds of one run.

The folder is built first in a temporary directory: ``--images`` synthetic JPEGs of ``--size``
pixels (500x375 by default, the median ImageNet photo), in 4 class folders, smooth colour fields
plus noise saved at quality 90, so each file is as large as a photo of that size (~60-90 KB) and
as costly to decode. Each round reads every file once in batches of ``--batch``: images/s over the
whole pass (loader start-up included, as a training epoch pays it), after the first batch (the
steady rate a long epoch sees), and per CPU-second of this process and its loader processes
together (what the loader itself costs, whatever the cores free at the moment).

Loader processes can only be as fast as the cores they get: on a machine shared with other work
they may get none more than the training process alone. So the run first measures the machine's
own parallel speed-up at that moment (a pure-Python loop in ``--workers`` processes against one),
and prints it beside the result.

    python benchmarks/folder_decode.py                           # 1000 images, 2 workers against 0
    python benchmarks/folder_decode.py --images 1000 --workers 4 --rounds 5
"""
from __future__ import annotations

import argparse
import multiprocessing
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from evaluators.data import list_image_folder


def build_folder(root: Path, images: int, size: tuple[int, int], classes: int = 4, seed: int = 0) -> int:
    """``images`` JPEGs under ``root/class_k/``; returns their total bytes."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    width, height = size
    total = 0
    for i in range(images):
        folder = root / f"class_{i % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        coarse = rng.uniform(0, 255, (height // 25 + 2, width // 25 + 2, 3)).astype(np.uint8)
        smooth = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC), np.float32)
        pixels = np.clip(smooth + rng.normal(0, 12, smooth.shape), 0, 255).astype(np.uint8)
        path = folder / f"{i:05d}.jpg"
        Image.fromarray(pixels).save(path, quality=90)
        total += path.stat().st_size
    return total


def _spin(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i
    return total


def parallel_speedup(processes: int, n: int = 4_000_000) -> float:
    """How much faster ``processes`` processes do ``processes`` equal CPU-bound tasks than one
    process does them in turn: the cores this machine can give at the moment."""
    start = time.perf_counter()
    for _ in range(processes):
        _spin(n)
    serial = time.perf_counter() - start
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        start = time.perf_counter()
        pool.map(_spin, [n] * processes)
        parallel = time.perf_counter() - start
    return serial / parallel


def _cpu_seconds() -> float:
    """CPU time of this process and of its children that have ended (the loader's, once joined)."""
    return sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                  resource.getrusage(resource.RUSAGE_CHILDREN)))


def images_per_second(files, resolution: int, batch: int, workers: int, augment: bool,
                      epoch: int) -> tuple[float, float, float]:
    """(images/s over the whole pass, images/s after its first batch, images per CPU-second)."""
    start, cpu = time.perf_counter(), _cpu_seconds()
    count, first = 0, None
    order = torch.randperm(len(files), generator=torch.Generator().manual_seed(epoch))
    for _, y in files.batches(resolution, batch, augment=augment, order=order, epoch=epoch, workers=workers):
        count += len(y)
        if first is None:
            first, after_first = time.perf_counter(), count
    end = time.perf_counter()
    return count / (end - start), (count - after_first) / (end - first), count / (_cpu_seconds() - cpu)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--size", default="500x375", help="WIDTHxHEIGHT of the synthetic photos")
    p.add_argument("--resolution", type=int, default=224)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--workers", type=int, default=2, help="loader processes, against 0")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(1)  # the training process's share: decoding is the loader's work
    size = tuple(int(v) for v in args.size.lower().split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "photos"
        t0 = time.perf_counter()
        total = build_folder(root, args.images, size)
        print(f"{args.images} JPEGs of {size[0]}x{size[1]}, {total / args.images / 1e3:.0f} KB each on average "
              f"(built in {time.perf_counter() - t0:.1f} s); decoding to {args.resolution} px, batch {args.batch}, "
              f"{args.rounds} alternating rounds")
        folder = list_image_folder(root, test_fraction=0.0, cache_bytes=0)
        files, _ = folder.split_validation(1, seed=0)
        rates: dict[tuple[str, int], list[tuple[float, float]]] = {}
        speedups = []
        for r in range(args.rounds):
            speedups.append(parallel_speedup(args.workers))
            print(f"  round {r + 1} machine: {args.workers} processes {speedups[-1]:.2f}x one", flush=True)
            for mode in ("train", "val"):
                for workers in (0, args.workers):
                    rate = images_per_second(files, args.resolution, args.batch, workers, mode == "train", r)
                    rates.setdefault((mode, workers), []).append(rate)
                    print(f"  round {r + 1} {mode:5s} {workers} workers: {rate[0]:6.1f} images/s, "
                          f"{rate[1]:6.1f} after the first batch, {rate[2]:6.1f} per CPU-second", flush=True)
        print(f"\n| transform | 0 workers (images/s) | {args.workers} workers (images/s) | ratio | "
              f"ratio after the first batch | images per CPU-second, 0 / {args.workers} workers |")
        print("|---|---|---|---|---|---|")
        for mode, what in (("train", "random-resized crop + flip"), ("val", "shorter side + centre crop")):
            one = [statistics.median(r[k] for r in rates[(mode, 0)]) for k in range(3)]
            many = [statistics.median(r[k] for r in rates[(mode, args.workers)]) for k in range(3)]
            print(f"| {what} | {one[0]:.1f} | {many[0]:.1f} | {many[0] / one[0]:.2f}x | {many[1] / one[1]:.2f}x | "
                  f"{one[2]:.0f} / {many[2]:.0f} |")
        print(f"(medians of the rounds; the machine's own speed-up with {args.workers} processes meanwhile: "
              f"{statistics.median(speedups):.2f}x, from {min(speedups):.2f}x to {max(speedups):.2f}x)")


if __name__ == "__main__":
    main()
