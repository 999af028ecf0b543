"""Proxy training: a short, seeded run at reduced resolution, reporting validation accuracy after
every epoch so a search can stop hopeless candidates early.

The data set stays in memory as uint8; every epoch is resized once up front (bilinear,
antialiased) so the loop is pure tensor work. Threads default to the machine's cores; on CPU a
given seed reproduces the same accuracy exactly.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from evaluators.data import Dataset, channel_stats, prepare
from nas.builder import build_model
from nas.config import ArchConfig


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


class StopTraining(Exception):
    """Raised by an ``on_epoch`` callback to stop early (e.g. an Optuna prune)."""


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 2
    resolution: int = 32
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_fraction: float = 0.1
    label_smoothing: float = 0.1
    train_size: Optional[int] = 10000  # None = the whole training split
    val_size: Optional[int] = 2000
    seed: int = 0
    threads: Optional[int] = None
    channels_last: bool = True


@dataclass
class TrainResult:
    accuracy: float  # final validation accuracy in [0, 1]
    history: list[float] = field(default_factory=list)  # validation accuracy after each epoch
    images_per_second: float = 0.0
    seconds: float = 0.0
    epochs_run: int = 0
    stopped_early: bool = False
    device: str = "cpu"

    def to_dict(self) -> dict:
        return asdict(self)


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def train_proxy(arch: ArchConfig, data: Dataset, cfg: TrainConfig = TrainConfig(),
                on_epoch: Optional[Callable[[int, float], None]] = None, device: Optional[str] = None) -> TrainResult:
    """Train ``arch`` briefly on ``data`` and return the validation accuracy after each epoch.

    ``on_epoch(epoch, accuracy)`` may raise :class:`StopTraining` to stop early.
    """
    device = device or default_device()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    data = data.subset(cfg.train_size, cfg.val_size, seed=cfg.seed)
    mean, std = channel_stats(data.train_x)
    train_x = prepare(data.train_x, cfg.resolution, mean, std)
    val_x = prepare(data.test_x, cfg.resolution, mean, std)
    memory_format = torch.channels_last if cfg.channels_last and device == "cpu" else torch.contiguous_format

    torch.manual_seed(cfg.seed)
    model = build_model(arch, data.num_classes).to(device, memory_format=memory_format)
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    steps_per_epoch = math.ceil(len(train_x) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    warmup = max(1, int(total * cfg.warmup_fraction))

    def lr_factor(step: int) -> float:  # linear warm-up, then cosine decay to zero
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)

    result = TrainResult(0.0, device=device)
    generator = torch.Generator().manual_seed(cfg.seed)
    seen, train_time = 0, 0.0
    start = time.perf_counter()
    for epoch in range(cfg.epochs):
        model.train()
        t0 = time.perf_counter()
        order = torch.randperm(len(train_x), generator=generator)
        for i in range(0, len(order), cfg.batch_size):
            idx = order[i:i + cfg.batch_size]
            x = train_x[idx].to(device, memory_format=memory_format)
            flip = torch.rand(len(idx), generator=generator) < 0.5  # horizontal flips, the one cheap augmentation
            x = torch.where(flip.view(-1, 1, 1, 1).to(device), x.flip(3), x)
            loss = F.cross_entropy(model(x), data.train_y[idx].to(device), label_smoothing=cfg.label_smoothing)
            if not torch.isfinite(loss):
                raise TrainingDiverged(f"loss became {loss.item()} at epoch {epoch + 1}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
            schedule.step()
            seen += len(idx)
        train_time += time.perf_counter() - t0
        acc = evaluate(model, val_x, data.test_y, cfg.batch_size * 2, device, memory_format)
        result.history.append(acc)
        result.accuracy, result.epochs_run = acc, epoch + 1
        if on_epoch is not None:
            try:
                on_epoch(epoch + 1, acc)
            except StopTraining:
                result.stopped_early = True
                break
    result.seconds = time.perf_counter() - start
    result.images_per_second = seen / max(train_time, 1e-9)
    return result


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256, device: str = "cpu",
             memory_format: torch.memory_format = torch.contiguous_format) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        logits = model(x[i:i + batch_size].to(device, memory_format=memory_format))
        correct += (logits.argmax(1).cpu() == y[i:i + batch_size]).sum().item()
    return correct / max(1, len(x))
