"""The AdamW step of proxy training: torch's per-tensor loop against the fused kernel that
``evaluators.train.adamw`` uses, side by side on this CPU, one thread.

Per preset (at its full widths, 10 classes, 32 px, batch 128, channels-last, as a search's proxy
trains it): the milliseconds of the optimiser step alone and of a whole training step (forward,
cross-entropy, backward, gradient clipping, AdamW step) with each optimiser, alternating the two
``--rounds`` times; the best round of each is kept (other work on the machine only slows a round
down).

    python benchmarks/optimizer_step.py                     # about 2 minutes
    python benchmarks/optimizer_step.py --presets coatnet_0 --rounds 5
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

import nas


def timed(fn, repeats: int) -> float:
    """Milliseconds per call of ``fn`` over ``repeats`` calls."""
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+",
                    default=["coatnet_0", "efficientvit_b1", "lightvit_t", "mobileformer_508m", "poolformer_s12"])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=3, help="training steps per round")
    args = ap.parse_args()
    torch.set_num_threads(1)
    x = torch.randn(128, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (128,))
    print("| preset | params | AdamW step, loop / fused (ms) | training step, loop / fused (ms) | training step ratio |")
    print("|---|---|---|---|---|")
    for name in args.presets:
        torch.manual_seed(0)
        model = nas.build_model(nas.get_arch(name), 10).to(memory_format=torch.channels_last)
        params = list(model.parameters())
        optimizers = {fused: torch.optim.AdamW(params, lr=1e-4, fused=fused) for fused in (False, True)}
        best = {(fused, part): float("inf") for fused in (False, True) for part in ("opt", "train")}

        def train_step(opt) -> None:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            opt.step()

        for opt in optimizers.values():  # warm up both, and leave gradients for the step-only timing
            train_step(opt)
        for _ in range(args.rounds):
            for fused, opt in optimizers.items():
                best[fused, "opt"] = min(best[fused, "opt"], timed(opt.step, 5))
                best[fused, "train"] = min(best[fused, "train"], timed(lambda: train_step(opt), args.steps))
        print(f"| {name} | {sum(p.numel() for p in params) / 1e6:.1f} M | {best[False, 'opt']:.1f} / "
              f"{best[True, 'opt']:.1f} | {best[False, 'train']:.0f} / {best[True, 'train']:.0f} | "
              f"{best[True, 'train'] / best[False, 'train']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
