"""Training throughput of ``nas train`` (studies.training.train_run) against a bare PyTorch loop on
the same model, data and batch size, one thread, measured side by side in alternating rounds.

The bare loop is what a user would write with the data already in memory as normalised float
tensors at the training resolution: forward, cross-entropy, backward, AdamW step, on the same
model (``nas.build_model`` with the same ``--drop-path-rate``, channels-last on CPU as train_run
makes it). ``train_run`` does its whole recipe around it: per-batch resize and normalisation from
the uint8 images, flips, label smoothing, gradient clipping, a per-step LR schedule, the progress
callback, a checkpoint and validation after the epoch (EMA and mixup off, as by default). Images/s
count the training steps after the first ``--warmup`` of each epoch (timed by the progress
callback for train_run); the whole-epoch figure train_run reports is printed beside it. Each rate
is given per wall-clock second and per CPU second of the (single) training thread: on a machine
shared with other work the CPU-time rate is the steadier one, since waiting for a core is not
counted.

    python benchmarks/train_throughput.py                       # coatnet_0 at width x0.25, 64 px
    python benchmarks/train_throughput.py --arch poolformer_s12 --resolution 32 --rounds 5
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import nas
from evaluators.data import channel_stats, load_dataset, prepare
from evaluators.threads import torch_threads
from studies.training import RecipeConfig, train_run


def steady_rate(times: list[float], batch: int, warmup: int) -> float:
    """Images/s between the end of step ``warmup`` and the end of the last step."""
    return (len(times) - 1 - warmup) * batch / (times[-1] - times[warmup])


def _now() -> tuple[float, float]:
    return time.perf_counter(), time.thread_time()


def rates(stamps: list[tuple[float, float]], batch: int, warmup: int) -> tuple[float, float]:
    """(images per wall second, images per CPU second of this thread)."""
    return (steady_rate([w for w, _ in stamps], batch, warmup), steady_rate([c for _, c in stamps], batch, warmup))


def run_train_run(arch, data, recipe: RecipeConfig, warmup: int) -> tuple[tuple[float, float], float]:
    stamps: list[tuple[float, float]] = []

    def progress(p):
        if p.val_accuracy is None:  # one call per training step; the epoch's closing call is not a step
            stamps.append(_now())

    with tempfile.TemporaryDirectory() as run_dir:
        result = train_run(arch, data, recipe, Path(run_dir) / "run", on_progress=progress)
    return rates(stamps, recipe.batch_size, warmup), result.images_per_second


def run_bare(arch, x: torch.Tensor, y: torch.Tensor, recipe: RecipeConfig, classes: int,
             warmup: int) -> tuple[float, float]:
    torch.manual_seed(recipe.seed)
    model = nas.build_model(arch, classes, drop_path_rate=recipe.drop_path_rate).to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    model.train()
    order = torch.randperm(len(x))
    stamps = []
    for step in range(len(x) // recipe.batch_size):
        idx = order[step * recipe.batch_size:(step + 1) * recipe.batch_size]
        loss = F.cross_entropy(model(x[idx].contiguous(memory_format=torch.channels_last)), y[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss.item()  # train_run reads every step's loss
        stamps.append(_now())
    return rates(stamps, recipe.batch_size, warmup)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default="coatnet_0")
    ap.add_argument("--width-mult", type=float, default=0.25)
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--images", type=int, default=1024, help="training images per round (one epoch)")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--drop-path-rate", type=float, default=0.1, help="of the model in both loops (recipe default)")
    ap.add_argument("--warmup", type=int, default=2, help="steps of each epoch left out of the rate")
    args = ap.parse_args()

    arch = nas.scale_widths(nas.get_arch(args.arch), args.width_mult)
    data = load_dataset("fashion-mnist")
    recipe = RecipeConfig(epochs=1, resolution=args.resolution, batch_size=args.batch_size, train_size=args.images,
                          val_size=500, test_size=500, warmup_epochs=0.1, threads=1, device="cpu",
                          drop_path_rate=args.drop_path_rate)
    train, _ = data.split_validation(recipe.val_size, seed=recipe.seed, train_size=recipe.train_size)
    mean, std = channel_stats(train.x)
    x, y = prepare(train.x, recipe.resolution, mean, std), train.y  # the bare loop's data, ready in memory
    cost = nas.analytic_cost(arch, args.resolution, data.num_classes)
    print(f"{args.arch} x{args.width_mult} at {args.resolution} px ({cost.params / 1e6:.2f} M params, "
          f"{cost.macs / 1e6:.1f} M MACs), drop path {args.drop_path_rate:g}, batch {args.batch_size}, "
          f"{args.images} images per round, 1 thread, torch {torch.__version__}")
    ours, ours_epoch, bare = [], [], []
    with torch_threads(1):
        for r in range(args.rounds):
            order = ("train_run", "bare") if r % 2 == 0 else ("bare", "train_run")
            for which in order:
                if which == "train_run":
                    steady, whole = run_train_run(arch, data, recipe, args.warmup)
                    ours.append(steady)
                    ours_epoch.append(whole)
                else:
                    bare.append(run_bare(arch, x, y, recipe, data.num_classes, args.warmup))
            (ow, oc), (bw, bc) = ours[-1], bare[-1]
            print(f"round {r + 1}: train_run {ow:.1f} img/s (whole epoch {ours_epoch[-1]:.1f}), {oc:.1f} img/CPU-s; "
                  f"bare loop {bw:.1f} img/s, {bc:.1f} img/CPU-s; ratio {ow / bw:.3f} wall, {oc / bc:.3f} CPU",
                  flush=True)
    for i, unit in ((0, "img/s"), (1, "img/CPU-s")):
        ratios = [a[i] / b[i] for a, b in zip(ours, bare)]
        per_round = ", ".join(f"{q:.3f}" for q in ratios)
        print(f"median {unit}: train_run {statistics.median(a[i] for a in ours):.1f}, bare loop "
              f"{statistics.median(b[i] for b in bare):.1f}; ratio train_run / bare {statistics.median(ratios):.3f} "
              f"(per round {per_round}); target >= 0.95")


if __name__ == "__main__":
    main()
