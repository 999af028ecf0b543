"""Proxy training: a short, seeded run at reduced resolution (and optionally reduced width),
reporting validation accuracy after every epoch so a search can stop hopeless candidates early.

Validation images are held out of the TRAINING split (``Dataset.split_validation``, seeded), so a
search never selects on the test split; :func:`test_accuracy` measures the test split apart, for
reporting only. An in-memory data set is resized once up front (bilinear, antialiased) and moved to
the device once, so the loop is pure tensor work; a streamed image folder
(:class:`~evaluators.data.FolderDataset`) is decoded batch by batch in loader processes (random
resized crops and flips), its unreadable files skipped and counted. ``threads`` borrows torch's
thread count for the work and restores it; on CPU in fp32 a given seed reproduces the same
accuracy exactly.

Arithmetic (``TrainConfig.precision``, see :func:`choose_precision`): "auto" trains in bfloat16
autocast on CUDA (float16 with a gradient scaler on GPUs without bfloat16) and on CPUs with AMX
bfloat16 tiles, else in float32. On CPU an optimiser step whose gradients are not finite (a bf16
overflow) is skipped, as a gradient scaler skips it. The loss is checked for NaN/inf every
``check_every`` steps and at the end of each epoch from a device-side list (every step on CPU,
where reading it costs nothing; every 20 on CUDA, where each read waits for the GPU).
"""
from __future__ import annotations

import contextlib
import functools
import math
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable, Iterator, Optional, Sequence

import torch
import torch.nn.functional as F

from evaluators.data import (AnyDataset, Dataset, DatasetError, ImageFiles, ImageStream, Images, at_resolution,
                             channel_stats, note_unreadable, prepare, warn_unreadable)
from evaluators.threads import torch_threads
from nas.builder import build_model, scale_widths
from nas.config import ArchConfig, ConfigError

PRECISIONS = ("auto", "fp32", "bf16")  # what TrainConfig.precision may ask for
CUDA_CHECK_EVERY = 20  # steps between reads of the loss on CUDA (each read waits for the GPU)


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
    precision: str = "auto"  # "auto" (see choose_precision), "fp32" or "bf16"

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ConfigError(f"TrainConfig precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")


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
    precision: str = "fp32"  # the arithmetic actually used: fp32, bf16 or fp16
    skipped_images: int = 0  # unreadable image files of a folder, left out

    def to_dict(self) -> dict:
        return asdict(self)


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def adamw(params: Iterable[torch.nn.Parameter], lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with no weight decay on norms, biases and other 1-D parameters, as these families
    train. Fused (one kernel over all tensors): on this CPU its step takes a quarter to a half of
    the per-tensor loop's time, 18-50 ms less per step for the presets of
    ``benchmarks/optimizer_step.py``; torch before 2.4 fuses on CUDA only, and falls back to the loop."""
    decay, no_decay = [], []
    for p in params:
        (decay if p.ndim > 1 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    try:
        return torch.optim.AdamW(groups, lr=lr, fused=True)
    except RuntimeError:
        return torch.optim.AdamW(groups, lr=lr)


# ---------------------------------------------------------------------------- precision
@dataclass(frozen=True)
class Precision:
    """The arithmetic of a training run: ``name`` "fp32" (no autocast), "bf16" or "fp16" (autocast
    to that type; fp16 needs a gradient scaler), and ``reason``, why it was chosen."""

    name: str
    reason: str

    @property
    def dtype(self) -> Optional[torch.dtype]:
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.name)

    @property
    def needs_scaler(self) -> bool:
        return self.name == "fp16"  # fp16's narrow range underflows small gradients; bf16's does not

    def autocast(self, device: str):
        """The context the forward pass runs in."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(torch.device(device).type, dtype=self.dtype)


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (Linux ``/proc/cpuinfo``; empty elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


def cpu_has_native_bf16(flags: Optional[Iterable[str]] = None, capability: Optional[str] = None) -> bool:
    """Whether this CPU multiplies bfloat16 matrices in AMX tiles, so that bf16 autocast is faster
    than fp32. AVX512-BF16 dot products alone are not enough: on an AMD EPYC with them proxy
    training ran at 0.76-1.24x the fp32 speed (``benchmarks/proxy_precision.py``) and a small
    PoolFormer's bf16 gradients overflowed; without either, torch emulates bf16 around fp32
    arithmetic, 5-8x slower. ``flags`` and ``capability`` (torch's CPU capability string) default
    to this machine's."""
    flags = cpu_flags() if flags is None else frozenset(flags)
    if capability is None:
        capability = torch.backends.cpu.get_cpu_capability()
    return "amx_bf16" in flags or "AMX" in capability.upper()


def choose_precision(requested: str, device: str, *, cuda_bf16: Optional[bool] = None,
                     cpu_bf16: Optional[bool] = None) -> Precision:
    """The arithmetic to train in on ``device`` for ``requested`` ("auto", "fp32" or "bf16").

    "auto": on CUDA bf16 where the GPU supports it (``torch.cuda.is_bf16_supported()``), else fp16
    with a gradient scaler; on CPU bf16 only with native bf16 (:func:`cpu_has_native_bf16`), else
    fp32. "bf16" on a GPU without bf16 is an error. ``cuda_bf16`` / ``cpu_bf16`` override the
    detection (for tests).

    >>> choose_precision("auto", "cpu", cpu_bf16=False).name
    'fp32'
    >>> choose_precision("auto", "cuda", cuda_bf16=False).name
    'fp16'
    """
    if requested not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {requested!r}")
    if requested == "fp32":
        return Precision("fp32", "asked for")
    if torch.device(device).type == "cuda":
        supported = torch.cuda.is_bf16_supported() if cuda_bf16 is None else cuda_bf16
        if supported:
            return Precision("bf16", "asked for" if requested == "bf16" else "CUDA with bfloat16")
        if requested == "bf16":
            raise ConfigError(f"precision bf16 needs a GPU with bfloat16 support; {device} has none (use auto: fp16)")
        return Precision("fp16", "CUDA without bfloat16: float16 with a gradient scaler")
    if requested == "bf16":
        return Precision("bf16", "asked for")
    native = cpu_has_native_bf16() if cpu_bf16 is None else cpu_bf16
    return (Precision("bf16", "CPU with AMX bfloat16 tiles") if native else
            Precision("fp32", "CPU without AMX: bf16 would be no faster than fp32, or emulated and slower"))


# ---------------------------------------------------------------------------- the trainer
class ProxyTrainer:
    """Trains one candidate an epoch at a time (so a search can stop it between epochs)."""

    def __init__(self, arch: ArchConfig, data: AnyDataset, cfg: TrainConfig = TrainConfig(),
                 device: Optional[str] = None):
        self.cfg, self.device = cfg, device or default_device()
        with torch_threads(cfg.threads):
            self._setup(arch, data)

    def _setup(self, arch: ArchConfig, data: AnyDataset) -> None:
        cfg, device = self.cfg, self.device
        data = self._data = at_resolution(data, cfg.resolution)  # a folder: in memory at this size when it fits
        train, val = data.split_validation(cfg.val_size, seed=cfg.seed, train_size=cfg.train_size)
        self.validation = val.source
        self.precision = choose_precision(cfg.precision, device)
        self.scaler = torch.amp.GradScaler("cuda") if self.precision.needs_scaler else None
        self.check_every = 1 if device == "cpu" else CUDA_CHECK_EVERY
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        self.skipped: dict[str, str] = {}  # unreadable files: path -> reason
        if isinstance(data, Dataset):  # a folder held in memory left its unreadable files out when it was read
            self.skipped.update(dict.fromkeys(data.skipped, "unreadable"))
        self.streamed = isinstance(train, ImageFiles)
        if self.streamed:  # file lists only: decoded batch by batch
            self.train_files, self.val_files = train, val
            self.mean, self.std = train.channel_stats(seed=cfg.seed)
        else:  # prepared once and moved to the device once: each step only indexes it
            self.mean, self.std = channel_stats(train.x)
            self.train_x = prepare(train.x, cfg.resolution, self.mean, self.std).to(device)
            self.val_x = prepare(val.x, cfg.resolution, self.mean, self.std).to(device)
        self.train_y, self.val_y = train.y.to(device), val.y.to(device)
        self.mean_on_device, self.std_on_device = self.mean.to(device), self.std.to(device)
        with self._own_rng(seed=cfg.seed):
            model = build_model(scale_widths(arch, cfg.width_mult), data.num_classes)
        self.model = model.to(device, memory_format=self.memory_format)
        self.optimizer = adamw(self.model.parameters(), cfg.lr, cfg.weight_decay)
        total = math.ceil(len(train) / cfg.batch_size) * cfg.epochs
        warmup = max(1, int(total * cfg.warmup_fraction))

        def lr_factor(step: int) -> float:  # linear warm-up, then cosine decay to zero
            if step < warmup:
                return (step + 1) / warmup
            return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

        self.schedule = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_factor)
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.history: list[float] = []
        self.seen, self.train_seconds = 0, 0.0
        self._pending: list[torch.Tensor] = []  # losses on the device, not yet checked

    @property
    def images_per_second(self) -> float:
        return self.seen / max(self.train_seconds, 1e-9)

    @property
    def skipped_images(self) -> int:
        """Unreadable image files met so far (held-in-memory folders: when they were read)."""
        return len(self.skipped)

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
                                 memory_format=self.memory_format, precision=self.precision)

    def _run_epoch(self) -> float:
        cfg = self.cfg
        self.model.train()
        t0 = time.perf_counter()
        order = torch.randperm(len(self.train_y), generator=self.generator)
        trained = 0  # images
        for x, y in (self._streamed_batches(order) if self.streamed else self._memory_batches(order)):
            if self.streamed and len(y) < 2:  # it lost all but one image to unreadable files: BatchNorm needs two
                continue
            self._step(x, y)
            trained += len(y)
        self._check_losses()
        self.seen += trained
        self.train_seconds += time.perf_counter() - t0
        if self.streamed and not trained:
            raise DatasetError(f"no readable training image among the {len(self.train_y)} files of "
                               f"{self.train_files.root} ({len(self.skipped)} unreadable)")
        if self.streamed:
            batches = normalised_batches(self.val_files.batches(cfg.resolution, cfg.batch_size * 2),
                                         cfg.resolution, self.mean_on_device, self.std_on_device, self.device,
                                         self._note_skipped)
            acc = accuracies([self.model], batches, self.device, self.memory_format, self.precision)[0]
        else:
            acc = evaluate(self.model, self.val_x, self.val_y, cfg.batch_size * 2, self.device, self.memory_format,
                           self.precision)
        self.history.append(acc)
        return acc

    def _memory_batches(self, order: torch.Tensor) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        device = self.device
        for i in range(0, len(order), self.cfg.batch_size):
            idx = order[i:i + self.cfg.batch_size].to(device, non_blocking=True)
            x = self.train_x[idx].to(device, memory_format=self.memory_format)
            flip = torch.rand(len(idx), generator=self.generator) < 0.5  # horizontal flips: the one cheap augmentation
            yield torch.where(flip.view(-1, 1, 1, 1).to(device, non_blocking=True), x.flip(3), x), self.train_y[idx]

    def _streamed_batches(self, order: torch.Tensor) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        cfg = self.cfg
        stream = self.train_files.batches(cfg.resolution, cfg.batch_size, augment=True, order=order, seed=cfg.seed,
                                    epoch=len(self.history), pin_memory=self.device.startswith("cuda"))
        for x, y in normalised_batches(stream, cfg.resolution, self.mean_on_device, self.std_on_device, self.device,
                                       self._note_skipped):
            yield x.contiguous(memory_format=self.memory_format), y

    def _step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """One optimiser step; the loss stays on the device until :meth:`_check_losses` reads it."""
        with self.precision.autocast(self.device):
            loss = F.cross_entropy(self.model(x), y, label_smoothing=self.cfg.label_smoothing)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)  # clip the true gradients
        else:
            loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), 5.0)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        elif self.device != "cpu" or bool(torch.isfinite(norm)):  # CPU: reading it costs nothing
            self.optimizer.step()  # skipped when bf16 gradients overflowed: inf x 0 would poison the weights
        self.schedule.step()
        self._pending.append(loss.detach())
        if len(self._pending) >= self.check_every:
            self._check_losses()

    def _check_losses(self) -> None:
        """Raise :class:`TrainingDiverged` if a loss since the last check is NaN or infinite: one
        host read for ``check_every`` steps."""
        if not self._pending:
            return
        losses, self._pending = torch.stack(self._pending), []
        finite = torch.isfinite(losses)
        if not bool(finite.all()):
            raise TrainingDiverged(f"loss became {losses[~finite][0].item()} in epoch {len(self.history) + 1}")

    def _note_skipped(self, unreadable: dict[str, str]) -> None:
        note_unreadable(self.skipped, unreadable, self.train_files.root)


def train_proxy(arch: ArchConfig, data: AnyDataset, cfg: TrainConfig = TrainConfig(),
                on_epoch: Optional[Callable[[int, float], None]] = None, device: Optional[str] = None) -> TrainResult:
    """Train ``arch`` briefly on ``data`` and return the validation accuracy after each epoch.

    ``on_epoch(epoch, accuracy)`` may raise :class:`StopTraining` to stop early.
    """
    start = time.perf_counter()
    trainer = ProxyTrainer(arch, data, cfg, device)
    result = TrainResult(0.0, device=trainer.device, validation=trainer.validation, precision=trainer.precision.name)
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
    result.skipped_images = trainer.skipped_images
    return result


# ---------------------------------------------------------------------------- evaluation
def normalised_batches(stream: ImageStream, resolution: int, mean: torch.Tensor, std: torch.Tensor, device: str,
                       on_skipped: Optional[Callable[[dict[str, str]], None]] = None
                       ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """A stream's uint8 batches as model inputs on ``device`` (normalised by ``mean``/``std``, which
    live there); ``on_skipped`` hears of unreadable files after each batch."""
    for x, y in stream:
        if on_skipped is not None and stream.skipped:
            on_skipped(stream.skipped)
        yield prepare(x.to(device, non_blocking=True), resolution, mean, std), y.to(device, non_blocking=True)


@torch.no_grad()
def accuracies(models: Sequence[torch.nn.Module], batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
               device: str = "cpu", memory_format: torch.memory_format = torch.contiguous_format,
               precision: Optional[Precision] = None) -> list[float]:
    """Top-1 accuracy of each model over the same batches of (input, label), read once: a
    streamed validation set is decoded once for a model and its EMA. Counts stay on the device
    until the end (one host read)."""
    for model in models:
        model.eval()
    correct = [torch.zeros((), dtype=torch.int64, device=device) for _ in models]
    seen = 0
    with precision.autocast(device) if precision is not None else contextlib.nullcontext():
        for x, y in batches:
            x, y = x.to(device, memory_format=memory_format), y.to(device)
            for i, model in enumerate(models):
                correct[i] += (model(x).argmax(1) == y).sum()
            seen += len(y)
    return [int(c) / max(1, seen) for c in correct]


def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256, device: str = "cpu",
             memory_format: torch.memory_format = torch.contiguous_format,
             precision: Optional[Precision] = None) -> float:
    """Top-1 accuracy of ``model`` on prepared images ``x`` (any device) with labels ``y``."""
    batches = ((x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, len(x), batch_size))
    return accuracies([model], batches, device, memory_format, precision)[0]


def test_accuracy(model: torch.nn.Module, data: AnyDataset, resolution: int, mean: torch.Tensor, std: torch.Tensor, *,
                  batch_size: int = 256, device: str = "cpu", size: Optional[int] = None, seed: int = 0,
                  memory_format: torch.memory_format = torch.contiguous_format,
                  precision: Optional[Precision] = None) -> float:
    """Top-1 accuracy of ``model`` on the TEST split of ``data`` (all of it, or a seeded ``size``),
    normalised with the training statistics ``mean``/``std``. For reporting only: nothing in a
    search or a training run selects on it. A streamed folder's test images are decoded as they
    are validated (central crops); unreadable ones are left out with a warning."""
    images = data.test_images(size, seed)
    if isinstance(images, Images):
        return evaluate(model, prepare(images.x, resolution, mean, std), images.y, batch_size, device, memory_format,
                        precision)
    skipped: dict[str, str] = {}
    batches = normalised_batches(images.batches(resolution, batch_size), resolution, mean.to(device), std.to(device),
                                 device, skipped.update)
    accuracy = accuracies([model], batches, device, memory_format, precision)[0]
    if skipped:
        warn_unreadable(skipped, images.root)
    return accuracy


test_accuracy.__test__ = False  # not a pytest test, though its name starts with "test_"
