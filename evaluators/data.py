"""Datasets held in memory as uint8 tensors: Fashion-MNIST (the default, from Debian's
``dataset-fashion-mnist``), CIFAR-10 python batches and image-folder trees.

Dataset specs on the command line: ``fashion-mnist`` (or ``fashion-mnist:DIR``),
``cifar10:PATH`` (the ``cifar-10-batches-py`` directory), ``folder:PATH`` (one sub-folder per
class, or ``train/`` and ``val/`` (or ``test/``) splits of such trees).
"""
from __future__ import annotations

import gzip
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                         "Ankle boot")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".ppm", ".tif", ".tiff")


class DatasetError(ValueError):
    """A dataset is missing or malformed; the message says which file and why."""


@dataclass(frozen=True)
class Dataset:
    """Images as uint8 (N, C, H, W) with int64 labels; ``mean``/``std`` per channel in [0, 1] units."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def channels(self) -> int:
        return self.train_x.shape[1]

    def split_validation(self, val_size: Optional[int], seed: int = 0,
                         train_size: Optional[int] = None) -> tuple["Images", "Images"]:
        """(training images, validation images), both carved out of the TRAINING split; the test
        split is left alone, for reporting only.

        One permutation of the training split, fixed by ``seed``: its first ``val_size`` images are
        held out for validation, the next ``train_size`` (default: all the rest) are trained on. So
        the validation images depend only on the data set, ``val_size`` and ``seed`` (not on
        ``train_size``), and never overlap the trained ones. ``val_size`` None holds out a tenth.

        >>> train, val = load_dataset("fashion-mnist").split_validation(1000, seed=0, train_size=5000)
        >>> len(train), len(val), val.source
        (5000, 1000, 'train split, 1000 held-out images, seed 0')
        """
        n = len(self.train_y)
        if val_size is None:
            val_size = max(1, n // 10)
        if not 1 <= val_size < n:
            raise DatasetError(f"val_size must be between 1 and {n - 1} (the {self.name} training split has {n} "
                               f"images), got {val_size}")
        if train_size is not None and not 1 <= train_size <= n - val_size:
            raise DatasetError(f"train_size must be between 1 and {n - val_size} ({n} training images, "
                               f"{val_size} held out for validation), got {train_size}")
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        val_index = order[:val_size]
        train_index = order[val_size:] if train_size is None else order[val_size:val_size + train_size]
        source = f"train split, {val_size} held-out images, seed {seed}"
        return (Images(self.train_x[train_index], self.train_y[train_index], train_index,
                       f"train split, {len(train_index)} images, seed {seed}"),
                Images(self.train_x[val_index], self.train_y[val_index], val_index, source))

    def test_images(self, size: Optional[int] = None, seed: int = 0) -> "Images":
        """The test split (or a seeded random ``size`` of it): for reporting, never for selection."""
        n = len(self.test_y)
        index = torch.arange(n) if not size or size >= n else \
            torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:size]
        return Images(self.test_x[index], self.test_y[index], index, f"test split, {len(index)} images")

    def subset(self, train: Optional[int] = None, test: Optional[int] = None, seed: int = 0) -> "Dataset":
        """A class-balanced-in-expectation random slice (fixed by ``seed``)."""
        g = torch.Generator().manual_seed(seed)
        tr = torch.randperm(len(self.train_y), generator=g)[:train] if train else slice(None)
        te = torch.randperm(len(self.test_y), generator=g)[:test] if test else slice(None)
        return Dataset(self.name, self.train_x[tr], self.train_y[tr], self.test_x[te], self.test_y[te], self.classes)


@dataclass(frozen=True)
class Images:
    """Labelled uint8 images taken from a split: ``index`` says which images of that split they
    are, ``source`` says where they came from in words (recorded with every result)."""

    x: torch.Tensor
    y: torch.Tensor
    index: torch.Tensor
    source: str

    def __len__(self) -> int:
        return len(self.y)


def _parse(spec: str) -> tuple[str, str]:
    kind, _, path = spec.partition(":")
    kind = kind.lower()
    return ("fashion-mnist" if kind in ("fashion-mnist", "fashion_mnist", "fmnist") else kind), path


def dataset_num_classes(spec: str) -> int:
    """How many classes the dataset ``spec`` has, read without loading any image."""
    kind, path = _parse(spec)
    if kind == "fashion-mnist":
        return len(FASHION_MNIST_CLASSES)
    if kind == "cifar10":
        return 10
    if kind == "folder" and path:
        train, _ = _folder_splits(Path(path))
        return len(_classes(train))
    load_dataset(spec)  # raises the reason the spec is wrong
    raise AssertionError(spec)


def load_dataset(spec: str = "fashion-mnist") -> Dataset:
    kind, path = _parse(spec)
    if kind == "fashion-mnist":
        return load_fashion_mnist(Path(path) if path else FASHION_MNIST_DIR)
    if kind == "cifar10":
        if not path:
            raise DatasetError("cifar10 needs a path: cifar10:/path/to/cifar-10-batches-py")
        return load_cifar10(Path(path))
    if kind == "folder":
        if not path:
            raise DatasetError("folder needs a path: folder:/path/to/images (one sub-folder per class)")
        return load_image_folder(Path(path))
    raise DatasetError(f"unknown dataset {spec!r}; use fashion-mnist, cifar10:PATH or folder:PATH")


# ---------------------------------------------------------------------------- Fashion-MNIST
def _read_idx(path: Path) -> np.ndarray:
    if not path.exists():
        alt = path.with_suffix("") if path.suffix == ".gz" else path.with_name(path.name + ".gz")
        if alt.exists():
            path = alt
        else:
            raise DatasetError(f"missing {path} (install Debian's dataset-fashion-mnist, or run ./setup.sh)")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
        zero, dtype, ndim = struct.unpack(">HBB", data[:4])
        if zero != 0 or dtype != 0x08:
            raise DatasetError(f"{path} is not an IDX file of unsigned bytes")
        shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
        array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
        if array.size != int(np.prod(shape)):
            raise DatasetError(f"{path} is truncated: {array.size} bytes for shape {shape}")
        return array.reshape(shape)
    except (OSError, EOFError, struct.error) as e:
        raise DatasetError(f"cannot read {path}: {e}") from None


def load_fashion_mnist(root: Path = FASHION_MNIST_DIR) -> Dataset:
    parts = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = _read_idx(root / f"{prefix}-images-idx3-ubyte.gz")
        labels = _read_idx(root / f"{prefix}-labels-idx1-ubyte.gz")
        if len(images) != len(labels):
            raise DatasetError(f"{root}: {len(images)} {split} images but {len(labels)} labels")
        parts[split] = (torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64)))
    return Dataset("fashion-mnist", *parts["train"], *parts["test"], FASHION_MNIST_CLASSES)


# ---------------------------------------------------------------------------- CIFAR-10
def load_cifar10(root: Path) -> Dataset:
    if not root.is_dir():
        raise DatasetError(f"CIFAR-10 directory not found: {root}")

    def batch(name: str) -> tuple[np.ndarray, np.ndarray]:
        path = root / name
        if not path.exists():
            raise DatasetError(f"missing CIFAR-10 batch {path}")
        try:
            with open(path, "rb") as f:
                d = pickle.load(f, encoding="bytes")
            x = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
            y = np.asarray(d[b"labels"], dtype=np.int64)
        except (pickle.UnpicklingError, KeyError, ValueError, EOFError, TypeError) as e:
            raise DatasetError(f"{path} is not a CIFAR-10 python batch: {e}") from None
        return x, y

    train = [batch(f"data_batch_{i}") for i in range(1, 6)]
    test_x, test_y = batch("test_batch")
    classes = tuple(f"class_{i}" for i in range(10))
    meta = root / "batches.meta"
    if meta.exists():
        try:
            with open(meta, "rb") as f:
                classes = tuple(n.decode() for n in pickle.load(f, encoding="bytes")[b"label_names"])
        except Exception:  # names are cosmetic; keep the numbered ones
            pass
    return Dataset("cifar10", torch.from_numpy(np.concatenate([x for x, _ in train])),
                   torch.from_numpy(np.concatenate([y for _, y in train])), torch.from_numpy(test_x),
                   torch.from_numpy(test_y), classes)


# ---------------------------------------------------------------------------- image folders
def load_image_folder(root: Path, size: int = 64, test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """Class-per-sub-folder images resized to ``size`` x ``size`` RGB. Uses ``train/`` and
    ``val/`` (or ``test/``) when present, else holds out ``test_fraction`` at random."""
    train, test = _folder_splits(root)
    classes = _classes(train)
    if test is not None:
        tr_x, tr_y = _read_tree(train, classes, size)
        te_x, te_y = _read_tree(test, classes, size)
    else:
        x, y = _read_tree(root, classes, size)
        perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
        n_test = max(1, int(len(y) * test_fraction))
        te_x, te_y, tr_x, tr_y = x[perm[:n_test]], y[perm[:n_test]], x[perm[n_test:]], y[perm[n_test:]]
    return Dataset(f"folder:{root.name}", tr_x, tr_y, te_x, te_y, tuple(classes))


def _folder_splits(root: Path) -> tuple[Path, Optional[Path]]:
    """(training tree, test tree or None): ``train/`` with ``val/`` or ``test/`` when present, else the root."""
    if not root.is_dir():
        raise DatasetError(f"image folder not found: {root}")
    test = next((root / d for d in ("val", "test") if (root / d).is_dir()), None)
    if (root / "train").is_dir() and test is not None:
        return root / "train", test
    return root, None


def _classes(root: Path) -> list[str]:
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    if len(classes) < 2:
        raise DatasetError(f"{root} needs at least two class sub-folders, found {len(classes)}")
    return classes


def _read_tree(root: Path, classes: list[str], size: int) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        from PIL import Image
    except ImportError:
        raise DatasetError("reading image folders needs Pillow: pip install pillow") from None
    xs, ys = [], []
    for label, name in enumerate(classes):
        folder = root / name
        if not folder.is_dir():
            raise DatasetError(f"{root} has no folder for class {name!r}")
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                with Image.open(path) as im:
                    im = im.convert("RGB").resize((size, size), Image.BILINEAR)
                    xs.append(torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1))
            except OSError as e:
                raise DatasetError(f"cannot read image {path}: {e}") from None
            ys.append(label)
    if not xs:
        raise DatasetError(f"no images found under {root}")
    return torch.stack(xs), torch.tensor(ys, dtype=torch.int64)


# ---------------------------------------------------------------------------- batches
def prepare(x: torch.Tensor, resolution: int, mean: Optional[torch.Tensor] = None,
            std: Optional[torch.Tensor] = None) -> torch.Tensor:
    """uint8 (N, C, H, W) -> normalised float (N, 3, R, R); grey images are repeated to 3 channels."""
    x = x.float().div_(255)
    if x.shape[-1] != resolution or x.shape[-2] != resolution:
        x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False, antialias=True)
    if mean is not None:
        x = (x - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return x.contiguous()


def channel_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    f = x[:10000].float().div(255)
    return f.mean((0, 2, 3)), f.std((0, 2, 3)).clamp_min(1e-3)
