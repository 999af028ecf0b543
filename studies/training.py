"""Training a found architecture for real (the library behind ``nas train``): a standard recipe,
a run directory that survives ``kill -9``, and the trained weights for export.

    >>> import nas
    >>> from studies.training import RecipeConfig, train_run, load_run
    >>> arch = nas.scale_widths(nas.get_arch("coatnet_0"), 0.25)
    >>> result = train_run(arch, "fashion-mnist", RecipeConfig(epochs=2, resolution=32, train_size=2000), "/tmp/run")
    >>> arch, weights, info = load_run("/tmp/run")   # weights: EMA ones when the recipe keeps an EMA

The recipe is the one these families train with (DeiT / timm style): AdamW without weight decay
on norms, biases and other 1-D parameters; linear warm-up then cosine decay, stepped per batch;
label smoothing; stochastic depth rising linearly over the blocks (``nas.build_model``'s
``drop_path_rate``); optional mixup / cutmix and an exponential moving average (EMA) of the
weights; horizontal flips; mixed precision on CUDA. Validation images are held out of the
TRAINING split by ``Dataset.split_validation`` (the same split as proxy training); the test split
is measured once, at the end, and reported apart. An image folder too large for memory at the
recipe's resolution is streamed (``evaluators.data.FolderDataset``): decoded per batch in loader
processes with random-resized crops and flips, its unreadable files skipped and counted
(``skipped_images`` in ``metrics.jsonl`` and the result).

The run directory holds::

    arch.json       the architecture (nas.save_config)
    recipe.json     the recipe
    run.json        the data set: name, classes, where the validation images came from, normalisation
    checkpoint.pt   after every epoch: weights, optimiser, scheduler, EMA, grad scaler, RNG states,
                    epoch and metrics so far; written to a temporary file, then renamed
    metrics.jsonl   one line per epoch: epoch, loss, val_accuracy, images_per_second, seconds, ...
    result.json     when the last epoch is done: validation and test accuracy, time

Calling :func:`train_run` again on the same directory resumes after the last checkpoint; on CPU
with the same seed (and thread count) the final weights are bit-identical to an uninterrupted
run. A directory of another architecture or data set, or a stored recipe that differs from the
one given, is refused with :class:`RunError` before anything is written.
"""
from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Union

import torch
import torch.nn.functional as F

import nas
from evaluators.data import (AnyDataset, Dataset, DatasetError, ImageFiles, at_resolution, channel_stats, load_dataset,
                             note_unreadable, prepare)
from evaluators.threads import torch_threads
from evaluators.train import (TrainingDiverged, accuracies, adamw, choose_precision, evaluate, normalised_batches,
                              test_accuracy)
from nas.config import ArchConfig, ConfigError

CHECKPOINT_FORMAT = 1
FILES = ("arch.json", "recipe.json", "run.json", "checkpoint.pt", "metrics.jsonl", "result.json")
# settings of where a run executes, not of what it trains: a resume may change them
EXECUTION_FIELDS = ("threads", "device")


class RunError(ValueError):
    """A run directory cannot be used as asked; the message names the rule and the values."""


@dataclass(frozen=True)
class RecipeConfig:
    """How to train. ``mixup_alpha`` / ``cutmix_alpha`` 0 turn them off (both on: one of the two
    per batch, at random); ``ema_decay`` None keeps no EMA. ``train_size`` None trains on the whole
    training split less the ``val_size`` held-out images; ``test_size`` None tests on the whole
    test split. ``threads`` None keeps torch's current thread count; ``device`` None picks CUDA
    when present, else the CPU."""

    epochs: int = 30
    resolution: int = 64
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 2.0
    label_smoothing: float = 0.1
    drop_path_rate: float = 0.1
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    ema_decay: Optional[float] = None
    clip_grad_norm: Optional[float] = 5.0
    train_size: Optional[int] = None
    val_size: int = 5000
    test_size: Optional[int] = None
    seed: int = 0
    threads: Optional[int] = None
    device: Optional[str] = None

    def check(self) -> None:
        """Raise :class:`RunError` naming the first field out of its range."""
        rules = [
            ("epochs", self.epochs >= 1, ">= 1"),
            ("resolution", self.resolution >= 8, ">= 8"),
            ("batch_size", self.batch_size >= 2, ">= 2 (BatchNorm needs two samples)"),
            ("lr", self.lr > 0, "> 0"),
            ("weight_decay", self.weight_decay >= 0, ">= 0"),
            ("warmup_epochs", 0 <= self.warmup_epochs <= self.epochs, "between 0 and epochs"),
            ("label_smoothing", 0 <= self.label_smoothing < 1, "in [0, 1)"),
            ("drop_path_rate", 0 <= self.drop_path_rate < 1, "in [0, 1)"),
            ("mixup_alpha", self.mixup_alpha >= 0, ">= 0 (0 = off)"),
            ("cutmix_alpha", self.cutmix_alpha >= 0, ">= 0 (0 = off)"),
            ("ema_decay", self.ema_decay is None or 0 < self.ema_decay < 1, "in (0, 1) or None (off)"),
            ("clip_grad_norm", self.clip_grad_norm is None or self.clip_grad_norm > 0, "> 0 or None (off)"),
            ("train_size", self.train_size is None or self.train_size >= 1, ">= 1 or None (all)"),
            ("val_size", self.val_size >= 1, ">= 1"),
            ("test_size", self.test_size is None or self.test_size >= 1, ">= 1 or None (all)"),
            ("threads", self.threads is None or self.threads >= 1, ">= 1 or None"),
            ("device", self.device is None or self.device.split(":")[0] in ("cpu", "cuda"), "cpu, cuda[:N] or None"),
        ]
        for name, ok, rule in rules:
            if not ok:
                raise RunError(f"recipe {name} must be {rule}, got {getattr(self, name)!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "RecipeConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise RunError(f"unknown recipe field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**data)


@dataclass(frozen=True)
class Progress:
    """What ``on_progress`` receives: after every training step, and once more after each epoch's
    validation (``val_accuracy`` set, ``step == steps``). ``seconds_left`` is an estimate from the
    training speed so far (validation time not included)."""

    epoch: int  # 1-based
    epochs: int
    step: int  # 1-based within the epoch
    steps: int  # per epoch
    loss: float
    images_per_second: float
    seconds_left: float
    val_accuracy: Optional[float] = None


@dataclass
class RunResult:
    run_dir: str
    epochs_done: int
    val_accuracy: float  # of the weights load_run returns (the EMA's when the recipe keeps one)
    val_history: list[float] = field(default_factory=list)
    test_accuracy: Optional[float] = None  # reported apart; never used to select anything
    images_per_second: float = 0.0  # training loop only, this call
    seconds: float = 0.0  # this call
    resumed_from: int = 0  # the epoch the checkpoint had reached (0 = a fresh run)
    device: str = "cpu"
    validation: str = ""  # where the validation images came from
    test: str = ""  # where the test images came from
    dataset: str = ""
    skipped_images: int = 0  # unreadable image files of a folder, left out

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------------- the run directory
def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise RunError(f"cannot read {path}: {e}") from None


def _write_atomic(path: Path, write: Callable[[Any], None], mode: str = "wb") -> None:
    """Write through a temporary file in the same directory, flushed to disk, then rename it over
    ``path``: a kill leaves either the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, mode) as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _write_json(path: Path, data: Any) -> None:
    _write_atomic(path, lambda f: f.write(json.dumps(data, indent=2) + "\n"), "w")


def _check_run_dir(run_dir: Path, arch: ArchConfig, data: AnyDataset, recipe: RecipeConfig) -> bool:
    """Refuse a directory this run cannot continue; True when it holds this run already."""
    if run_dir.exists() and not run_dir.is_dir():
        raise RunError(f"run directory {run_dir} is a file")
    if not (run_dir / "arch.json").exists():
        if run_dir.exists() and any(p.name not in FILES for p in run_dir.iterdir() if not p.name.startswith(".")):
            raise RunError(f"{run_dir} is not empty and holds no training run (no arch.json); use a new directory")
        return False
    try:
        stored = nas.load_config(run_dir / "arch.json")
    except ConfigError as e:
        raise RunError(f"{run_dir} holds an unreadable architecture: {e}") from None
    if stored != arch:
        raise RunError(f"{run_dir} holds a run of another architecture ({stored.arch_id}, {stored.layout}), not "
                       f"{arch.arch_id} ({arch.layout}); use another directory")
    if (run_dir / "run.json").exists():
        info = _read_json(run_dir / "run.json")
        if info.get("num_classes") != data.num_classes:
            raise RunError(f"dataset {data.name} has {data.num_classes} classes but the run in {run_dir} was trained "
                           f"with {info.get('num_classes')} ({info.get('dataset')}); use another directory")
        if info.get("dataset") != data.name:
            raise RunError(f"the run in {run_dir} trains on {info.get('dataset')}, not {data.name}; "
                           f"use another directory")
    if (run_dir / "recipe.json").exists():
        stored_recipe = RecipeConfig.from_dict(_read_json(run_dir / "recipe.json"))
        for f in fields(RecipeConfig):
            if f.name in EXECUTION_FIELDS:
                continue
            old, new = getattr(stored_recipe, f.name), getattr(recipe, f.name)
            if old != new:
                raise RunError(f"recipe {f.name} is {new!r} but the run in {run_dir} was started with {old!r}; "
                               f"resume with the stored recipe (recipe.json) or use another directory")
    return True


def load_recipe(run_dir: Union[str, Path]) -> RecipeConfig:
    """The recipe a run directory was started with (to resume it without restating every option)."""
    path = Path(run_dir) / "recipe.json"
    if not path.exists():
        raise RunError(f"{run_dir} is not a training run directory (no recipe.json)")
    return RecipeConfig.from_dict(_read_json(path))


# ---------------------------------------------------------------------------- the recipe's parts
def _lr_schedule(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    def factor(step: int) -> float:  # linear warm-up, then cosine decay to zero
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


class _Ema:
    """Exponential moving average of every floating-point entry of the state dict (buffers such as
    BatchNorm statistics included); integer buffers are copied."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        for k, v in model.state_dict().items():
            mine = self.state[k]
            if mine.is_floating_point():
                mine.lerp_(v.detach(), 1.0 - self.decay)
            else:
                mine.copy_(v)


def _soft_targets(y: torch.Tensor, classes: int, smoothing: float) -> torch.Tensor:
    off = smoothing / classes
    return torch.full((len(y), classes), off, device=y.device).scatter_(1, y[:, None], 1.0 - smoothing + off)


def _mix(x: torch.Tensor, y: torch.Tensor, classes: int, recipe: RecipeConfig,
         rng: random.Random) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup or cutmix of the batch with itself reversed: (images, soft targets)."""
    use_cutmix = recipe.cutmix_alpha > 0 and (recipe.mixup_alpha == 0 or rng.random() < 0.5)
    alpha = recipe.cutmix_alpha if use_cutmix else recipe.mixup_alpha
    lam = rng.betavariate(alpha, alpha)
    if use_cutmix:
        h, w = x.shape[-2:]
        cut = math.sqrt(1.0 - lam)
        ch, cw = int(h * cut), int(w * cut)
        cy, cx = rng.randrange(h), rng.randrange(w)
        y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
        x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
        x = x.clone()
        x[..., y0:y1, x0:x1] = x.flip(0)[..., y0:y1, x0:x1]
        lam = 1.0 - (y1 - y0) * (x1 - x0) / (h * w)  # the share of the image actually kept
    else:
        x = x * lam + x.flip(0) * (1.0 - lam)
    targets = _soft_targets(y, classes, recipe.label_smoothing)
    return x, targets * lam + targets.flip(0) * (1.0 - lam)


def _autocast(device: str):
    """Mixed precision on CUDA (bfloat16 where supported, else float16 with a grad scaler), chosen as
    proxy training chooses it; none on CPU, where a resumed run must match an uninterrupted one bit
    for bit."""
    if not device.startswith("cuda"):
        return None, None
    precision = choose_precision("auto", device)
    return precision.dtype, torch.amp.GradScaler("cuda") if precision.needs_scaler else None


# ---------------------------------------------------------------------------- the run
class _Run:
    """Everything one call of :func:`train_run` holds; one instance trains, the module functions
    around it deal with the directory."""

    def __init__(self, arch: ArchConfig, data: AnyDataset, recipe: RecipeConfig, device: str):
        self.recipe, self.device, self.classes = recipe, device, data.num_classes
        self.train, self.val = data.split_validation(recipe.val_size, seed=recipe.seed, train_size=recipe.train_size)
        if len(self.train) < recipe.batch_size:
            raise RunError(f"recipe batch_size {recipe.batch_size} is larger than the {len(self.train)} "
                           f"training images")
        self.streamed = isinstance(self.train, ImageFiles)  # a folder too large for memory: decoded per batch
        self.skipped: dict[str, str] = {}  # unreadable files: path -> reason
        if isinstance(data, Dataset):  # a folder held in memory left its unreadable files out when it was read
            self.skipped.update(dict.fromkeys(data.skipped, "unreadable"))
        self.mean, self.std = (self.train.channel_stats(seed=recipe.seed) if self.streamed
                               else channel_stats(self.train.x))
        self.memory_format = torch.channels_last if device == "cpu" else torch.contiguous_format
        self.steps = len(self.train) // recipe.batch_size  # whole batches only (BatchNorm, even steps)
        torch.manual_seed(recipe.seed)
        self.model = nas.build_model(arch, data.num_classes, drop_path_rate=recipe.drop_path_rate)
        self.model.to(device, memory_format=self.memory_format)
        self.optimizer = adamw(self.model.parameters(), recipe.lr, recipe.weight_decay)
        total = self.steps * recipe.epochs
        warmup = min(total, max(1, round(recipe.warmup_epochs * self.steps))) if recipe.warmup_epochs else 0
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, _lr_schedule(total, warmup))
        self.ema = _Ema(self.model, recipe.ema_decay) if recipe.ema_decay else None
        self.eval_model = copy.deepcopy(self.model) if self.ema else self.model
        self.amp_dtype, self.scaler = _autocast(device)
        self.generator = torch.Generator().manual_seed(recipe.seed + 0x5EED)  # order and flips, apart from the split's
        self.mix_rng = random.Random(recipe.seed)
        self.epoch, self.history = 0, []
        self.mean_on_device, self.std_on_device = self.mean.to(device), self.std.to(device)
        if not self.streamed:
            self.val_x = prepare(self.val.x, recipe.resolution, self.mean, self.std)
            self.train_images = self.train.x.to(device)  # uint8 at the data set's size: small, prepared per batch
            self.train_labels = self.train.y.to(device)

    # -- checkpoint
    def state(self) -> dict:
        return {
            "format": CHECKPOINT_FORMAT, "epoch": self.epoch, "history": self.history,
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "ema": self.ema.state if self.ema else None,
            "scaler": self.scaler.state_dict() if self.scaler else None,
            "rng": {"torch": torch.get_rng_state(), "generator": self.generator.get_state(),
                    "python": self.mix_rng.getstate(),
                    "cuda": torch.cuda.get_rng_state_all() if self.device.startswith("cuda") else None},
        }

    def restore(self, ckpt: dict) -> None:
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        if self.ema:
            self.ema.state = {k: v.to(self.device) for k, v in ckpt["ema"].items()}
        if self.scaler and ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        rng = ckpt["rng"]
        torch.set_rng_state(rng["torch"])
        self.generator.set_state(rng["generator"])
        self.mix_rng.setstate(_as_random_state(rng["python"]))
        if rng.get("cuda") is not None and self.device.startswith("cuda"):
            torch.cuda.set_rng_state_all(rng["cuda"])
        self.epoch, self.history = ckpt["epoch"], list(ckpt["history"])

    # -- one epoch
    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast("cuda", self.amp_dtype)

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        flip = torch.rand(len(idx), generator=self.generator) < 0.5
        on_device = idx.to(self.device)
        x = prepare(self.train_images[on_device], self.recipe.resolution, self.mean_on_device, self.std_on_device)
        x = torch.where(flip.view(-1, 1, 1, 1).to(self.device), x.flip(3), x)
        return x.contiguous(memory_format=self.memory_format), self.train_labels[on_device]

    def batches(self, order: torch.Tensor) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The epoch's ``steps`` training batches in ``order``: from memory, or decoded from the
        folder (crops and flips drawn per file from the seed and the epoch, so a resume repeats them)."""
        size = self.recipe.batch_size
        if not self.streamed:
            for step in range(self.steps):
                yield self.batch(order[step * size:(step + 1) * size])
            return
        stream = self.train.batches(self.recipe.resolution, size, augment=True, order=order[:self.steps * size],
                                    seed=self.recipe.seed, epoch=self.epoch, pin_memory=self.device.startswith("cuda"))
        for x, y in normalised_batches(stream, self.recipe.resolution, self.mean_on_device, self.std_on_device,
                                       self.device, self.note_skipped):
            yield x.contiguous(memory_format=self.memory_format), y

    def note_skipped(self, unreadable: dict[str, str]) -> None:
        note_unreadable(self.skipped, unreadable, self.train.root)

    def train_epoch(self, on_progress: Optional[Callable[[Progress], None]], done_before: float,
                    speed: list[float]) -> tuple[float, float]:
        """One epoch; (mean loss, training seconds)."""
        recipe, model = self.recipe, self.model
        model.train()
        order = torch.randperm(len(self.train), generator=self.generator)
        sync_every = 1 if self.device == "cpu" else 20  # a loss read syncs the GPU: not every step
        total_loss, pending, trained = 0.0, [], 0
        t0 = time.perf_counter()
        for step, (x, y) in enumerate(self.batches(order)):
            if len(y) < 2:  # a streamed batch that lost all but one image to unreadable files: BatchNorm needs two
                self.scheduler.step()  # the schedule stays per step
                continue
            trained += 1
            if recipe.mixup_alpha or recipe.cutmix_alpha:
                x, target = _mix(x, y, self.classes, recipe, self.mix_rng)
                smoothing = 0.0  # already in the soft targets
            else:
                target, smoothing = y, recipe.label_smoothing
            with self.autocast():
                loss = F.cross_entropy(model(x), target, label_smoothing=smoothing)
            self.optimizer.zero_grad(set_to_none=True)
            if self.scaler:
                self.scaler.scale(loss).backward()
                self.scaler.unscale_(self.optimizer)
            else:
                loss.backward()
            if recipe.clip_grad_norm:
                torch.nn.utils.clip_grad_norm_(model.parameters(), recipe.clip_grad_norm)
            if self.scaler:
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                self.optimizer.step()
            self.scheduler.step()
            if self.ema:
                self.ema.update(model)
            pending.append(loss.detach())
            if len(pending) == sync_every or step == self.steps - 1:
                losses = torch.stack(pending).float().cpu()
                pending = []
                if not torch.isfinite(losses).all():
                    raise TrainingDiverged(f"loss became {losses[~torch.isfinite(losses)][0].item()} in epoch "
                                           f"{self.epoch + 1}, step {step + 1}; lower the recipe's lr")
                total_loss += losses.sum().item()
                if on_progress is not None:
                    seconds = time.perf_counter() - t0
                    ips = (step + 1) * recipe.batch_size / max(seconds, 1e-9)
                    left = (recipe.epochs - done_before - (step + 1) / self.steps) * self.steps * recipe.batch_size
                    on_progress(Progress(self.epoch + 1, recipe.epochs, step + 1, self.steps, losses[-1].item(), ips,
                                         left / max(speed[0] if speed else ips, 1e-9)))
        if pending:  # the last steps, when the epoch's last batch was skipped
            losses = torch.stack(pending).float().cpu()
            if not torch.isfinite(losses).all():
                raise TrainingDiverged(f"loss became {losses[~torch.isfinite(losses)][0].item()} in epoch "
                                       f"{self.epoch + 1}; lower the recipe's lr")
            total_loss += losses.sum().item()
        if not trained:
            raise DatasetError(f"no readable training image among the {len(self.train)} files of "
                               f"{self.train.root} ({len(self.skipped)} unreadable)")
        seconds = time.perf_counter() - t0
        return total_loss / trained, seconds

    def export_model(self) -> torch.nn.Module:
        """The model whose weights a run exports: the EMA's when the recipe keeps one."""
        if self.ema:
            self.eval_model.load_state_dict(self.ema.state)
        return self.eval_model

    def validate(self) -> tuple[float, Optional[float]]:
        """(accuracy of the exported weights, accuracy of the live weights when they differ)."""
        bs = 2 * self.recipe.batch_size
        if self.streamed:  # decoded once for both models
            batches = normalised_batches(self.val.batches(self.recipe.resolution, bs), self.recipe.resolution,
                                         self.mean_on_device, self.std_on_device, self.device, self.note_skipped)
            found = accuracies([self.export_model()] + ([self.model] if self.ema else []), batches, self.device,
                               self.memory_format)
            return found[0], (found[1] if self.ema else None)
        accuracy = evaluate(self.export_model(), self.val_x, self.val.y, bs, self.device, self.memory_format)
        live = evaluate(self.model, self.val_x, self.val.y, bs, self.device, self.memory_format) if self.ema else None
        return accuracy, live


def _as_random_state(state: Any) -> tuple:
    """python's random state as ``setstate`` wants it (a checkpoint may turn tuples into lists)."""
    version, internal, gauss = state
    return version, tuple(internal), gauss


def _load_checkpoint(path: Path) -> dict:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a file cut short by a disk error, or not ours
        raise RunError(f"cannot read checkpoint {path}: {type(e).__name__}: {e}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise RunError(f"{path} is not a nas training checkpoint (format {CHECKPOINT_FORMAT})")
    return ckpt


def train_run(arch: ArchConfig, data: Union[str, AnyDataset], recipe: RecipeConfig, run_dir: Union[str, Path],
              on_progress: Optional[Callable[[Progress], None]] = None,
              dataset_spec: Optional[str] = None) -> RunResult:
    """Train ``arch`` on ``data`` (a dataset spec such as ``"fashion-mnist"`` or a loaded
    :class:`~evaluators.data.Dataset` or :class:`~evaluators.data.FolderDataset`) by ``recipe``,
    checkpointing into ``run_dir`` after every epoch; resume from the checkpoint when ``run_dir``
    already holds this run. An image folder is read at the recipe's resolution: in memory when it
    fits, else streamed (:func:`evaluators.data.at_resolution`).

    Raises :class:`RunError` (a ``ValueError``) for a recipe out of range or a directory holding
    another architecture, data set or recipe (nothing is written then), ``TrainingDiverged`` when
    the loss is not finite, and ``DatasetError`` (also a ``ValueError``) for bad data or sizes.
    ``dataset_spec`` records where a loaded :class:`Dataset` came from (e.g. ``"cifar10:PATH"``) in
    ``run.json``, so that export can load its validation images again; a spec passed as ``data`` is
    recorded by itself. The process-wide torch RNG and thread count are as they were when it returns.
    """
    if not isinstance(arch, ArchConfig):
        raise TypeError(f"expected an ArchConfig, got {type(arch).__name__}")
    recipe.check()
    reason = nas.check_arch(arch)
    if reason:
        raise RunError(f"invalid architecture: {reason}")
    spec = data if isinstance(data, str) else dataset_spec
    data = (load_dataset(data, resolution=recipe.resolution) if isinstance(data, str)
            else at_resolution(data, recipe.resolution))
    run_dir = Path(run_dir)
    resuming = _check_run_dir(run_dir, arch, data, recipe)
    ckpt = _load_checkpoint(run_dir / "checkpoint.pt") if resuming and (run_dir / "checkpoint.pt").exists() else None
    device = recipe.device or ("cuda" if torch.cuda.is_available() else "cpu")
    cuda_devices = [torch.device(device).index or 0] if device.startswith("cuda") else []
    start = time.perf_counter()
    with torch_threads(recipe.threads), torch.random.fork_rng(devices=cuda_devices):
        run = _Run(arch, data, recipe, device)
        if ckpt is not None:
            run.restore(ckpt)
        resumed_from = run.epoch
        if not resuming:
            run_dir.mkdir(parents=True, exist_ok=True)
            _write_json(run_dir / "recipe.json", recipe.to_dict())
            _write_json(run_dir / "run.json", {
                "dataset": data.name, "dataset_spec": spec, "num_classes": data.num_classes,
                "classes": list(data.classes), "validation": run.val.source, "training": run.train.source,
                "resolution": recipe.resolution, "mean": run.mean.tolist(), "std": run.std.tolist(),
                "arch_id": arch.arch_id, "streamed": run.streamed})
            # arch.json last: it marks the directory as a run, so a kill before it leaves a fresh start
            tmp = run_dir / ".arch.json.tmp"
            nas.save_config(arch, tmp)
            os.replace(tmp, run_dir / "arch.json")
        # the metrics file says what the checkpoint says (a kill may fall between the two writes)
        _write_atomic(run_dir / "metrics.jsonl", lambda f: f.write("".join(json.dumps(m) + "\n" for m in run.history)),
                      "w")
        seen, train_seconds, speed = 0, 0.0, []
        while run.epoch < recipe.epochs:
            epoch_start = time.perf_counter()
            loss, seconds = run.train_epoch(on_progress, run.epoch, speed)
            seen, train_seconds = seen + run.steps * recipe.batch_size, train_seconds + seconds
            speed[:] = [seen / train_seconds]
            accuracy, live = run.validate()
            run.epoch += 1
            metrics = {"epoch": run.epoch, "loss": loss, "val_accuracy": accuracy,
                       "images_per_second": run.steps * recipe.batch_size / seconds,
                       "seconds": time.perf_counter() - epoch_start, "lr": run.scheduler.get_last_lr()[0],
                       "device": device, "threads": torch.get_num_threads()}
            if live is not None:
                metrics["val_accuracy_live"] = live
            if run.skipped:
                metrics["skipped_images"] = len(run.skipped)
            run.history.append(metrics)
            _write_atomic(run_dir / "checkpoint.pt", lambda f: torch.save(run.state(), f))
            with open(run_dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps(metrics) + "\n")
            if on_progress is not None:
                on_progress(Progress(run.epoch, recipe.epochs, run.steps, run.steps, loss, speed[0],
                                     (recipe.epochs - run.epoch) * run.steps * recipe.batch_size / speed[0], accuracy))
        if (run_dir / "result.json").exists() and resumed_from == recipe.epochs:
            result = _read_json(run_dir / "result.json")
            test, test_source = result["test_accuracy"], result["test"]
        else:
            test_images = data.test_images(recipe.test_size, recipe.seed)
            test = test_accuracy(run.export_model(), data, recipe.resolution, run.mean, run.std,
                                 batch_size=2 * recipe.batch_size, device=device, size=recipe.test_size,
                                 seed=recipe.seed, memory_format=run.memory_format) if len(test_images) else None
            test_source = test_images.source
    last = run.history[-1]
    result = RunResult(str(run_dir), run.epoch, last["val_accuracy"], [m["val_accuracy"] for m in run.history],
                       test, seen / train_seconds if train_seconds else 0.0, time.perf_counter() - start,
                       resumed_from, device, run.val.source, test_source, data.name,
                       max([len(run.skipped)] + [m.get("skipped_images", 0) for m in run.history]))
    if resumed_from < recipe.epochs or not (run_dir / "result.json").exists():
        _write_json(run_dir / "result.json", {
            "epochs": run.epoch, "val_accuracy": result.val_accuracy, "validation": result.validation,
            "test_accuracy": test, "test": test_source,
            "train_seconds": sum(m["seconds"] for m in run.history), "dataset": data.name})
    return result


def load_run(run_dir: Union[str, Path]) -> tuple[ArchConfig, dict, dict]:
    """(architecture, state_dict, info) of a training run, for export and evaluation.

    The state_dict is the EMA's when the recipe kept one, else the trained weights, on the CPU;
    load it into ``nas.build_model(arch, info["num_classes"])``. ``info`` holds ``recipe`` (a dict),
    ``epochs_done``, ``finished``, ``val_accuracy`` and ``val_history``, ``test_accuracy`` (None
    until the run has finished), ``dataset`` (its name), ``dataset_spec`` (the spec it was loaded from, None
    when a loaded Dataset was passed), ``num_classes``, ``classes``, ``validation`` (where
    the validation images came from), ``resolution``, ``mean`` and ``std`` (the input normalisation,
    per channel, of images scaled to [0, 1]) and ``metrics`` (one dict per epoch)."""
    run_dir = Path(run_dir)
    if not (run_dir / "arch.json").exists():
        raise RunError(f"{run_dir} is not a training run directory (no arch.json)")
    try:
        arch = nas.load_config(run_dir / "arch.json")
    except ConfigError as e:
        raise RunError(f"{run_dir} holds an unreadable architecture: {e}") from None
    if not (run_dir / "checkpoint.pt").exists():
        raise RunError(f"{run_dir} has no checkpoint yet: no epoch of the run has finished")
    recipe = load_recipe(run_dir)
    run_info = _read_json(run_dir / "run.json")
    ckpt = _load_checkpoint(run_dir / "checkpoint.pt")
    result = _read_json(run_dir / "result.json") if (run_dir / "result.json").exists() else {}
    history = ckpt["history"]
    info = {
        "recipe": recipe.to_dict(), "epochs_done": ckpt["epoch"], "finished": ckpt["epoch"] >= recipe.epochs,
        "val_accuracy": history[-1]["val_accuracy"] if history else None,
        "val_history": [m["val_accuracy"] for m in history], "test_accuracy": result.get("test_accuracy"),
        "test": result.get("test"), "metrics": history, "ema": ckpt["ema"] is not None,
        **{k: run_info.get(k) for k in ("dataset", "dataset_spec", "num_classes", "classes", "validation",
                                        "resolution", "mean", "std")},
    }
    return arch, (ckpt["ema"] if ckpt["ema"] is not None else ckpt["model"]), info


def validation_images(run_dir: Union[str, Path], data: Union[str, AnyDataset]) -> tuple[torch.Tensor, torch.Tensor]:
    """The run's validation images, prepared as the model saw them (float N x 3 x R x R), and their
    labels: e.g. to check an exported model against PyTorch on them. A streamed folder's are
    decoded here (central crops, as validation decoded them); unreadable ones are left out."""
    recipe = load_recipe(run_dir)
    info = _read_json(Path(run_dir) / "run.json")
    data = (load_dataset(data, resolution=recipe.resolution) if isinstance(data, str)
            else at_resolution(data, recipe.resolution))
    if data.num_classes != info["num_classes"] or data.name != info["dataset"]:
        raise RunError(f"the run in {run_dir} trained on {info['dataset']} ({info['num_classes']} classes), "
                       f"not {data.name} ({data.num_classes} classes)")
    _, val = data.split_validation(recipe.val_size, seed=recipe.seed, train_size=recipe.train_size)
    if isinstance(val, ImageFiles):
        val, _ = val.read(recipe.resolution)
    mean, std = torch.tensor(info["mean"]), torch.tensor(info["std"])
    return prepare(val.x, recipe.resolution, mean, std), val.y


def describe_run(info: dict) -> str:
    """One paragraph for a model card: the recipe, the epochs done and the measured accuracies
    (``info`` as :func:`load_run` returns it)."""
    r = RecipeConfig.from_dict(info["recipe"])
    parts = [f"AdamW (lr {r.lr:g}, weight decay {r.weight_decay:g}, batch {r.batch_size})",
             f"{r.warmup_epochs:g} warm-up epochs then cosine decay", f"label smoothing {r.label_smoothing:g}",
             f"stochastic depth {r.drop_path_rate:g} (linear over blocks)"]
    if r.mixup_alpha or r.cutmix_alpha:
        parts.append(f"mixup alpha {r.mixup_alpha:g} / cutmix alpha {r.cutmix_alpha:g}")
    if r.ema_decay:
        parts.append(f"EMA of weights (decay {r.ema_decay:g}; these are the EMA weights)")
    text = (f"Trained {info['epochs_done']} of {r.epochs} epochs on {info['dataset']} at {r.resolution}x{r.resolution} "
            f"(seed {r.seed}): {', '.join(parts)}.")
    if info.get("val_accuracy") is not None:
        text += f" Validation accuracy {info['val_accuracy']:.4f} ({info['validation']})."
    if info.get("test_accuracy") is not None:
        text += f" Test accuracy {info['test_accuracy']:.4f} ({info['test']}), measured once after training."
    return text
