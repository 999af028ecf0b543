"""Training a weight-sharing supernet over a space (``nas supernet train``).

Each step trains, on one minibatch, the sandwich of points (BigNAS, NASViT): the largest point
within the budget on the labels, then the smallest and ``random_points`` random points on the
largest one's predictions (in-place distillation); the gradients of all of them are summed into
the shared tensors before one AdamW step. Points are drawn as a search draws them (sampled, then
fitted to the budget). Everything is seeded by (seed, epoch, step), and a checkpoint is written
after every epoch, so a run killed at any moment and started again reaches the same weights.
"""
from __future__ import annotations

import math
import os
import random
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F

from evaluators.data import load_dataset
from evaluators.base import EvalContext
from evaluators.supernet import (CHECKPOINT_FORMAT, PreparedSplit, inherited_accuracy, load_supernet, prepared_split,
                                 read_supernet_file)
from evaluators.train import TrainConfig, adamw
from nas.builder import analytic_cost
from nas.config import ArchConfig, ConfigError
from nas.supernet import Supernet, SupernetError
from search_spaces import Space, get_space
from studies.budgets import unreachable

MAX_DRAWS = 200  # random draws tried for one point within the budget


@dataclass(frozen=True)
class SupernetSettings:
    space: str
    macs_budget: Optional[float] = 1e9
    dataset: str = "fashion-mnist"
    epochs: int = 4
    resolution: int = 32
    batch_size: int = 128
    train_size: Optional[int] = 10000
    val_size: Optional[int] = 1000  # the search's: its first images are the search proxy's validation images
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_fraction: float = 0.1
    label_smoothing: float = 0.1
    random_points: int = 2
    seed: int = 0

    @property
    def proxy(self) -> TrainConfig:
        """The short-training settings that share this run's data split (same seed and sizes)."""
        return TrainConfig(epochs=self.epochs, resolution=self.resolution, batch_size=self.batch_size,
                           train_size=self.train_size, val_size=self.val_size, seed=self.seed)

    @classmethod
    def from_dict(cls, data: dict) -> "SupernetSettings":
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


class _SeededTrial:
    """Answers a space's suggestions from a seeded generator (``Space.sample`` asks an Optuna
    trial; a supernet's draws need no study)."""

    def __init__(self, rng: random.Random):
        self.rng = rng

    def suggest_categorical(self, label: str, values: list) -> Any:
        return values[self.rng.randrange(len(values))]

    def suggest_int(self, label: str, low: int, high: int, step: int = 1, log: bool = False) -> int:
        if log:
            return min(high, max(low, round(math.exp(self.rng.uniform(math.log(low), math.log(high + 1)) - 0.5))))
        return low + step * self.rng.randrange((high - low) // step + 1)


def scoring_context(path: str | Path, threads: int, loaded: Optional[tuple] = None) -> EvalContext:
    """The context that scores with the supernet file at ``path`` (``loaded``: its supernet and
    record, if read already): its data set, resolution, split and seed, so that points are scored on
    the validation images of its training run."""
    loaded = loaded or load_supernet(path)
    trained = SupernetSettings.from_dict(loaded[1]["settings"])
    return EvalContext(trained.dataset, trained.proxy, threads, supernet=str(path), supernet_state=loaded)


def draw_point(space: Space, supernet: Supernet, rng: random.Random) -> ArchConfig:
    """A random point of ``space`` fitted to the supernet's budget, as a search draws one."""
    for _ in range(MAX_DRAWS):
        arch = space.fit(space.sample(_SeededTrial(rng)), macs_budget=supernet.macs_budget)
        if (supernet.macs_budget is None or analytic_cost(arch).macs <= supernet.macs_budget) \
                and supernet.covers(arch) is None:
            return arch
    raise SupernetError(f"no point of space {space.name!r} within the budget in {MAX_DRAWS} random draws")


def sandwich_ends(space: Space, supernet: Supernet, seed: int, pool: int = 64) -> tuple[ArchConfig, ArchConfig]:
    """(largest, smallest): the most and the least MACs among ``pool`` random points within the
    budget and the space's cheapest point."""
    rng = random.Random(f"{seed}:ends")
    points = [draw_point(space, supernet, rng) for _ in range(pool)]
    cheapest = space.smallest("macs")
    if supernet.covers(cheapest) is None:
        points.append(cheapest)
    points.sort(key=lambda a: analytic_cost(a).macs)
    return points[-1], points[0]


class SupernetTraining:
    """One supernet training run, resumable from its file."""

    def __init__(self, settings: SupernetSettings, output: Path, device: str = "cpu",
                 on_step: Optional[Callable[[], None]] = None):
        self.s, self.output, self.device, self.on_step = settings, Path(output), device, on_step
        self.space = get_space(settings.space).supernet_space()
        reason = unreachable(self.space, settings.macs_budget)
        if reason:
            raise ConfigError(reason)
        self.data = load_dataset(settings.dataset, resolution=settings.resolution)
        self.split: PreparedSplit = prepared_split(self.data, settings.proxy, device)
        self.history: list[dict] = []
        self.epochs_done = 0
        self.seconds = 0.0
        if self.output.exists():
            self._resume()
        else:
            self.supernet = Supernet.for_space(self.space, settings.macs_budget, self.data.num_classes,
                                               seed=settings.seed).to(device)
            self._make_optimizer()
        self.largest, self.smallest = sandwich_ends(self.space, self.supernet, settings.seed)

    # ------------------------------------------------------------------ state
    def _make_optimizer(self) -> None:
        self.optimizer = adamw(self.supernet.parameters(), self.s.lr, self.s.weight_decay)

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.split.train_y) / self.s.batch_size)

    def _lr(self, step: int) -> float:
        total = self.steps_per_epoch * self.s.epochs
        warmup = max(1, int(total * self.s.warmup_fraction))
        if step < warmup:
            return self.s.lr * (step + 1) / warmup
        return self.s.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

    def _resume(self) -> None:
        state = read_supernet_file(self.output, self.device)
        record = state["training"]
        saved = SupernetSettings.from_dict(record["settings"])
        if saved != self.s:
            differ = [f.name for f in fields(SupernetSettings) if getattr(saved, f.name) != getattr(self.s, f.name)]
            raise ConfigError(f"{self.output} holds a supernet trained with other settings ({', '.join(differ)}); "
                              f"write to another file or delete it")
        self.supernet = Supernet.from_state_dict(state["supernet"])
        self._make_optimizer()
        self.optimizer.load_state_dict(state["optimizer"])
        self.epochs_done, self.history, self.seconds = record["epochs_done"], record["history"], record["seconds"]

    def save(self) -> None:
        """Write the file atomically: a run killed while writing keeps the previous epoch's."""
        record = {"settings": asdict(self.s), "epochs_done": self.epochs_done, "history": self.history,
                  "seconds": self.seconds, "largest": self.largest.to_json(), "smallest": self.smallest.to_json()}
        state = {"format": CHECKPOINT_FORMAT, "supernet": self.supernet.state_dict(), "training": record,
                 "optimizer": self.optimizer.state_dict()}
        tmp = self.output.with_name(self.output.name + ".tmp")
        self.output.parent.mkdir(parents=True, exist_ok=True)
        torch.save(state, tmp)
        os.replace(tmp, self.output)

    # ------------------------------------------------------------------ training
    def run(self, on_epoch: Optional[Callable[[dict], None]] = None) -> list[dict]:
        while self.epochs_done < self.s.epochs:
            start = time.perf_counter()
            self._epoch(self.epochs_done)
            self.seconds += time.perf_counter() - start
            row = {"epoch": self.epochs_done + 1, "largest": self._accuracy(self.largest),
                   "smallest": self._accuracy(self.smallest), "seconds": round(self.seconds, 1)}
            self.history.append(row)
            self.epochs_done += 1
            self.save()
            if on_epoch is not None:
                on_epoch(row)
        return self.history

    def _accuracy(self, arch: ArchConfig) -> float:
        return inherited_accuracy(self.supernet, arch, self.split, batch_size=2 * self.s.batch_size)

    def _epoch(self, epoch: int) -> None:
        s = self.s
        generator = torch.Generator().manual_seed(s.seed * 1000 + epoch)  # the order and the flips of this epoch
        order = torch.randperm(len(self.split.train_y), generator=generator)
        for step in range(self.steps_per_epoch):
            idx = order[step * s.batch_size:(step + 1) * s.batch_size]
            x, y = self.split.train_x[idx], self.split.train_y[idx]
            flip = (torch.rand(len(idx), generator=generator) < 0.5).view(-1, 1, 1, 1).to(x.device)
            x = torch.where(flip, x.flip(3), x)
            rng = random.Random(f"{s.seed}:{epoch}:{step}")
            others = [self.smallest] + [draw_point(self.space, self.supernet, rng) for _ in range(s.random_points)]
            for group in self.optimizer.param_groups:
                group["lr"] = self._lr(epoch * self.steps_per_epoch + step)
            self._step(x, y, others)
            if self.on_step is not None:
                self.on_step()

    def _step(self, x: torch.Tensor, y: torch.Tensor, others: list[ArchConfig]) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        losses = []

        def labelled(out: torch.Tensor) -> torch.Tensor:
            loss = F.cross_entropy(out, y, label_smoothing=self.s.label_smoothing)
            losses.append(loss.detach())
            return loss

        self.supernet.module(self.largest).train()
        soft = self.supernet.backward(self.largest, x, labelled).softmax(-1)
        for arch in others:  # in-place distillation: the largest point teaches the others

            def distilled(out: torch.Tensor) -> torch.Tensor:
                loss = torch.sum(-soft * F.log_softmax(out, -1), -1).mean()
                losses.append(loss.detach())
                return loss

            self.supernet.module(arch).train()
            self.supernet.backward(arch, x, distilled)
        if not all(torch.isfinite(v) for v in losses):
            raise SupernetError("the supernet's loss became NaN or infinite; try a lower --lr")
        torch.nn.utils.clip_grad_norm_([p for p in self.supernet.parameters() if p.grad is not None], 5.0)
        self.optimizer.step()
