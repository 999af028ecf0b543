"""Proxy training: a short, seeded run at reduced resolution (and optionally reduced width),
reporting validation accuracy after every epoch so a search can stop hopeless candidates early.

Validation images are held out of the TRAINING split (``Dataset.split_validation``, seeded), so a
search never selects on the test split; :func:`test_accuracy` measures the test split apart, for
reporting only. The data set stays in memory as uint8; it is resized once up front (bilinear,
antialiased) so the loop is pure tensor work. ``threads`` borrows torch's thread count for the
work and restores it; on CPU a given seed reproduces the same accuracy exactly.
"""
from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from evaluators.data import Dataset, Images, channel_stats, prepare
from evaluators.threads import torch_threads
from nas.builder import build_model, scale_widths
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
    train_size: Optional[int] = 10000  # None = the whole training split less the validation images
    val_size: Optional[int] = 2000  # held out of the training split; None = a tenth of it
    seed: int = 0
    threads: Optional[int] = None
    channels_last: bool = True
    width_mult: float = 1.0  # train a narrower copy (nas.scale_widths) to save time


@dataclass
class TrainResult:
    accuracy: float  # final validation accuracy in [0, 1]
    history: list[float] = field(default_factory=list)  # validation accuracy after each epoch
    images_per_second: float = 0.0
    seconds: float = 0.0
    epochs_run: int = 0
    stopped_early: bool = False
    device: str = "cpu"
    validation: str = ""  # where the validation images came from, e.g. "train split, 2000 held-out images, seed 0"

    def to_dict(self) -> dict:
        return asdict(self)


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


class ProxyTrainer:
    """Trains one candidate an epoch at a time (so a search can stop it between epochs)."""

    def __init__(self, arch: ArchConfig, data: Dataset, cfg: TrainConfig = TrainConfig(),
                 device: Optional[str] = None):
        self.cfg, self.device = cfg, device or default_device()
        with torch_threads(cfg.threads):
            self._setup(arch, data)

    def _setup(self, arch: ArchConfig, data: Dataset) -> None:
        cfg, self._data = self.cfg, data
        train, val = data.split_validation(cfg.val_size, seed=cfg.seed, train_size=cfg.train_size)
        self.validation = val.source
        self.mean, self.std = channel_stats(train.x)
        self.train_x, self.train_y = prepare(train.x, cfg.resolution, self.mean, self.std), train.y
        self.val_x, self.val_y = prepare(val.x, cfg.resolution, self.mean, self.std), val.y
        self.memory_format = (torch.channels_last if cfg.channels_last and self.device == "cpu"
                              else torch.contiguous_format)
        with self._own_rng(seed=cfg.seed):
            model = build_model(scale_widths(arch, cfg.width_mult), data.num_classes)
        self.model = model.to(self.device, memory_format=self.memory_format)
        decay = [p for p in self.model.parameters() if p.ndim > 1]
        no_decay = [p for p in self.model.parameters() if p.ndim <= 1]
        self.optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                            {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
        total = math.ceil(len(self.train_x) / cfg.batch_size) * cfg.epochs
        warmup = max(1, int(total * cfg.warmup_fraction))

        def lr_factor(step: int) -> float:  # linear warm-up, then cosine decay to zero
            if step < warmup:
                return (step + 1) / warmup
            return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

        self.schedule = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_factor)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.history: list[float] = []
        self.seen, self.train_seconds = 0, 0.0

    @property
    def images_per_second(self) -> float:
        return self.seen / max(self.train_seconds, 1e-9)

    def run_epoch(self) -> float:
        """One epoch of training, then the validation accuracy (held-out training images)."""
        with torch_threads(self.cfg.threads), self._own_rng():
            return self._run_epoch()

    @contextmanager
    def _own_rng(self, seed: Optional[int] = None):
        """Run the block on this trainer's own torch RNG stream (initialisation, dropout, drop path),
        seeded on first use: the process-wide stream is left as it was, and trainers interleaved in
        one worker do not disturb each other."""
        cuda = self.device.startswith("cuda")
        with torch.random.fork_rng(devices=[torch.device(self.device).index or 0] if cuda else []):
            if seed is not None:
                torch.manual_seed(seed)
            else:
                torch.set_rng_state(self._rng[0])
                if cuda:
                    torch.cuda.set_rng_state(self._rng[1], self.device)
            try:
                yield
            finally:
                self._rng = (torch.get_rng_state(), torch.cuda.get_rng_state(self.device) if cuda else None)

    def test_accuracy(self, size: Optional[int] = None) -> float:
        """Accuracy on the test split (or ``size`` images of it), for reporting only."""
        with torch_threads(self.cfg.threads):
            return test_accuracy(self.model, self._data, self.cfg.resolution, self.mean, self.std,
                                 batch_size=self.cfg.batch_size * 2, device=self.device, size=size,
                                 memory_format=self.memory_format)

    def _run_epoch(self) -> float:
        cfg, device = self.cfg, self.device
        self.model.train()
        t0 = time.perf_counter()
        order = torch.randperm(len(self.train_x), generator=self.generator)
        for i in range(0, len(order), cfg.batch_size):
            idx = order[i:i + cfg.batch_size]
            x = self.train_x[idx].to(device, memory_format=self.memory_format)
            flip = torch.rand(len(idx), generator=self.generator) < 0.5  # horizontal flips: the one cheap augmentation
            x = torch.where(flip.view(-1, 1, 1, 1).to(device), x.flip(3), x)
            loss = F.cross_entropy(self.model(x), self.train_y[idx].to(device), label_smoothing=cfg.label_smoothing)
            if not torch.isfinite(loss):
                raise TrainingDiverged(f"loss became {loss.item()} in epoch {len(self.history) + 1}")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 5.0)
            self.optimizer.step()
            self.schedule.step()
            self.seen += len(idx)
        self.train_seconds += time.perf_counter() - t0
        acc = evaluate(self.model, self.val_x, self.val_y, cfg.batch_size * 2, device, self.memory_format)
        self.history.append(acc)
        return acc


def train_proxy(arch: ArchConfig, data: Dataset, cfg: TrainConfig = TrainConfig(),
                on_epoch: Optional[Callable[[int, float], None]] = None, device: Optional[str] = None) -> TrainResult:
    """Train ``arch`` briefly on ``data`` and return the validation accuracy after each epoch.

    ``on_epoch(epoch, accuracy)`` may raise :class:`StopTraining` to stop early.
    """
    start = time.perf_counter()
    trainer = ProxyTrainer(arch, data, cfg, device)
    result = TrainResult(0.0, device=trainer.device, validation=trainer.validation)
    for epoch in range(cfg.epochs):
        result.accuracy = trainer.run_epoch()
        result.epochs_run = epoch + 1
        if on_epoch is not None:
            try:
                on_epoch(epoch + 1, result.accuracy)
            except StopTraining:
                result.stopped_early = True
                break
    result.history = list(trainer.history)
    result.seconds = time.perf_counter() - start
    result.images_per_second = trainer.images_per_second
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


def test_accuracy(model: torch.nn.Module, data: Dataset, resolution: int, mean: torch.Tensor, std: torch.Tensor, *,
                  batch_size: int = 256, device: str = "cpu", size: Optional[int] = None, seed: int = 0,
                  memory_format: torch.memory_format = torch.contiguous_format) -> float:
    """Top-1 accuracy of ``model`` on the TEST split of ``data`` (all of it, or a seeded ``size``),
    normalised with the training statistics ``mean``/``std``. For reporting only: nothing in a
    search or a training run selects on it."""
    images: Images = data.test_images(size, seed)
    return evaluate(model, prepare(images.x, resolution, mean, std), images.y, batch_size, device, memory_format)


test_accuracy.__test__ = False  # not a pytest test, though its name starts with "test_"
