"""Scoring with a trained weight-sharing supernet (``nas supernet train``): a point's accuracy with
the weights it inherits, after its BatchNorm statistics are re-estimated on training images (the
shared statistics belong to no single point), on the same held-out validation images as the
short-training proxy."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from evaluators.data import AnyDataset, DatasetError, ImageFiles, at_resolution, channel_stats, prepare
from evaluators.train import TrainConfig, evaluate
from nas.config import ArchConfig
from nas.supernet import Supernet, SupernetError

CALIBRATION_IMAGES = 512  # training images that re-estimate a point's BatchNorm statistics
CHECKPOINT_FORMAT = "nas-supernet-training/1"


@dataclass
class PreparedSplit:
    """The proxy's training and validation images, normalised at the training resolution."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    validation: str  # where the validation images came from
    num_classes: int


def prepared_split(data: AnyDataset, cfg: TrainConfig, device: str = "cpu") -> PreparedSplit:
    """The split ``ProxyTrainer`` trains and validates on (same seed, sizes and normalisation),
    held in memory. A streamed image folder is not supported by the supernet yet."""
    data = at_resolution(data, cfg.resolution)
    train, val = data.split_validation(cfg.val_size, seed=cfg.seed, train_size=cfg.train_size)
    if isinstance(train, ImageFiles):
        raise DatasetError(f"the supernet trains and scores on data held in memory; {data.name} is streamed from its "
                           f"files (a smaller --resolution or fewer images may fit in memory)")
    mean, std = channel_stats(train.x)
    return PreparedSplit(prepare(train.x, cfg.resolution, mean, std).to(device), train.y.to(device),
                         prepare(val.x, cfg.resolution, mean, std).to(device), val.y.to(device), val.source,
                         data.num_classes)


def recalibrate_batchnorm(model: nn.Module, images: torch.Tensor, batch_size: int) -> None:
    """Replace every BatchNorm's running statistics with those of ``model`` on ``images``
    (a cumulative average over the batches), then leave the model in eval mode."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            model(images[i:i + batch_size])
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    model.eval()


def inherited_accuracy(supernet: Supernet, arch: ArchConfig, split: PreparedSplit, batch_size: int = 256,
                       calibration: int = CALIBRATION_IMAGES) -> float:
    """Validation accuracy of ``arch`` with its supernet weights, BatchNorm re-estimated on the
    first ``calibration`` training images."""
    # channels-last, as proxy training runs: on CPU the convolutions take about a quarter less time
    model = supernet.extract(arch).to(memory_format=torch.channels_last)
    recalibrate_batchnorm(model, split.train_x[:calibration].contiguous(memory_format=torch.channels_last), batch_size)
    return evaluate(model, split.val_x, split.val_y, batch_size, str(supernet.device), torch.channels_last)


def read_supernet_file(path: str | Path, device: str = "cpu") -> dict[str, Any]:
    """The whole content of a ``nas supernet train`` file (supernet, training record, optimizer
    state); a missing or foreign file is a :class:`nas.SupernetError`."""
    path = Path(path)
    if not path.is_file():
        raise SupernetError(f"no supernet file at {path}")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise SupernetError(f"{path} is not a supernet file written by `nas supernet train` (unreadable as one)") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise SupernetError(f"{path} is not a supernet file written by `nas supernet train`")
    return state


def load_supernet(path: str | Path) -> tuple[Supernet, dict[str, Any]]:
    """The supernet of a ``nas supernet train`` file and its training record (settings, epochs
    done, accuracies)."""
    state = read_supernet_file(path)
    return Supernet.from_state_dict(state["supernet"]), dict(state["training"])


def check_scorable(supernet: Supernet, arch: ArchConfig, num_classes: Optional[int] = None) -> None:
    """One clear error when ``arch`` cannot be scored with ``supernet``."""
    if num_classes is not None and num_classes != supernet.num_classes:
        raise SupernetError(f"the supernet was trained for {supernet.num_classes} classes, the data set has {num_classes}")
    budget = supernet.macs_budget
    if budget is not None:
        from nas.builder import analytic_cost
        macs = analytic_cost(arch).macs
        if macs > budget:
            raise SupernetError(f"architecture {arch.arch_id} costs {macs / 1e6:.0f} MMACs, over the supernet's budget "
                                f"of {budget / 1e6:.0f} MMACs")
    reason = supernet.covers(arch)
    if reason:
        raise SupernetError(f"architecture {arch.arch_id} is outside the supernet of space {supernet.space!r}: {reason}")
