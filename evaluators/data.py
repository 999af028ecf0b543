"""Datasets: held in memory as uint8 tensors (Fashion-MNIST, the default, from Debian's
``dataset-fashion-mnist``; CIFAR-10 python batches; small image folders), or streamed from disk
through worker processes (image folders of any size).

Dataset specs on the command line: ``fashion-mnist`` (or ``fashion-mnist:DIR``),
``cifar10:PATH`` (the ``cifar-10-batches-py`` directory), ``folder:PATH`` (one sub-folder per
class, or ``train/`` and ``val/`` (or ``test/``) splits of such trees) and ``folder-stream:PATH``
(the same folder, always streamed).

An image folder is listed, not decoded, when it is opened (:class:`FolderDataset`). For a training
resolution R, :func:`at_resolution` holds it in memory when its images x 3 x R x R x 5 bytes (the
uint8 images and the float32 copy a trainer prepares from them) fit in ``FOLDER_CACHE_BYTES`` (a :class:`Dataset`: each image's central square resized to R x R, so
aspect is kept, then trained with flips as Fashion-MNIST is); otherwise it stays streamed: its
splits are :class:`ImageFiles`, decoded batch by batch by a ``torch.utils.data.DataLoader`` in
worker processes with random-resized crops and horizontal flips for training, and the shorter side
resized with a centre crop for validation and test. Memory is then bounded by the loader (workers x
prefetched batches), not by the data set. Both kinds answer the same questions (``name``,
``classes``, ``num_classes``, ``channels``, ``split_validation``, ``test_images``), so the proxy
trainer and ``nas train`` take in-memory :class:`Images` or streamed :class:`ImageFiles` alike.
An unreadable image inside a folder is skipped and counted (:class:`UnreadableImagesWarning`),
never fatal; a folder without images, or with fewer than two classes, is a :class:`DatasetError`.
"""
from __future__ import annotations

import gzip
import math
import os
import pickle
import random
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                         "Ankle boot")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".ppm", ".tif", ".tiff")
FOLDER_KINDS = ("folder", "folder-stream")  # an image folder: held in memory when small / always streamed
# An image folder is held in memory at the training resolution when images x 3 x R x R bytes fit
# here (e.g. 170k images at 32 px, 3.5k at 224 px); above it, it is streamed from disk.
FOLDER_CACHE_BYTES = 512 * 2 ** 20
FOLDER_CACHE_RESOLUTION = 64  # the size a folder is held at when no training resolution is given
CENTRE_CROP_FRACTION = 0.875  # streamed validation/test: the shorter side resized to R / 0.875, the central R x R
RANDOM_CROP_SCALE = (0.08, 1.0)  # streamed training: a crop of 8-100% of the image's area ...
RANDOM_CROP_RATIO = (3 / 4, 4 / 3)  # ... and aspect ratio 3:4 to 4:3, resized to R x R (Inception-style)


class DatasetError(ValueError):
    """A dataset is missing or malformed; the message says which file and why."""


class UnreadableImagesWarning(UserWarning):
    """Some image files of a folder could not be decoded and were skipped; the message counts them."""


@dataclass(frozen=True)
class Dataset:
    """Images as uint8 (N, C, H, W) with int64 labels; ``mean``/``std`` per channel in [0, 1] units."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: tuple[str, ...]
    # an image folder held in memory: its listing (to read it again at another resolution) and the
    # files left out as unreadable
    files: Optional["FolderDataset"] = field(default=None, repr=False)
    skipped: tuple[str, ...] = ()

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
        train_index, val_index = _split_index(len(self.train_y), val_size, seed, train_size, self.name)
        return (Images(self.train_x[train_index], self.train_y[train_index], train_index,
                       f"train split, {len(train_index)} images, seed {seed}"),
                Images(self.train_x[val_index], self.train_y[val_index], val_index,
                       f"train split, {len(val_index)} held-out images, seed {seed}"))

    def test_images(self, size: Optional[int] = None, seed: int = 0) -> "Images":
        """The test split (or a seeded random ``size`` of it): for reporting, never for selection."""
        index = _test_index(len(self.test_y), size, seed)
        return Images(self.test_x[index], self.test_y[index], index, f"test split, {len(index)} images")

    def minibatch(self, size: int, resolution: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """``size`` seeded random training images prepared at ``resolution`` (normalised with the
        training split's statistics), and their labels: the real batch zero-cost proxies score on."""
        sub = self.subset(size, 1, seed=seed)
        return prepare(sub.train_x, resolution, *channel_stats(self.train_x)), sub.train_y

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


def _split_index(n: int, val_size: Optional[int], seed: int, train_size: Optional[int],
                 name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(training, validation) positions in a training split of ``n`` images: one permutation fixed
    by ``seed``, its first ``val_size`` held out, the next ``train_size`` (default: the rest) trained
    on. One function for in-memory and streamed data sets, so both hold out the same images."""
    if val_size is None:
        val_size = max(1, n // 10)
    if not 1 <= val_size < n:
        raise DatasetError(f"val_size must be between 1 and {n - 1} (the {name} training split has {n} "
                           f"images), got {val_size}")
    if train_size is not None and not 1 <= train_size <= n - val_size:
        raise DatasetError(f"train_size must be between 1 and {n - val_size} ({n} training images, "
                           f"{val_size} held out for validation), got {train_size}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return (order[val_size:] if train_size is None else order[val_size:val_size + train_size]), order[:val_size]


def _test_index(n: int, size: Optional[int], seed: int) -> torch.Tensor:
    if not size or size >= n:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:size]


AnyDataset = Union[Dataset, "FolderDataset"]


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
    if kind in FOLDER_KINDS and path:
        train, _ = _folder_splits(Path(path))
        return len(_classes(train))
    load_dataset(spec)  # raises the reason the spec is wrong
    raise AssertionError(spec)


def load_dataset(spec: str = "fashion-mnist", resolution: Optional[int] = None,
                 workers: Optional[int] = None) -> AnyDataset:
    """The data set ``spec`` names, ready to train at ``resolution``: in memory, or for an image
    folder too large for memory at that resolution (or any ``folder-stream:``), a streamed
    :class:`FolderDataset` decoded by ``workers`` loader processes (default: min(4, CPUs)). Without
    a resolution a folder is held at 64 px when it fits (trainers read it again at their own)."""
    kind, path = _parse(spec)
    if kind == "fashion-mnist":
        return load_fashion_mnist(Path(path) if path else FASHION_MNIST_DIR)
    if kind == "cifar10":
        if not path:
            raise DatasetError("cifar10 needs a path: cifar10:/path/to/cifar-10-batches-py")
        return load_cifar10(Path(path))
    if kind in FOLDER_KINDS:
        if not path:
            raise DatasetError(f"{kind} needs a path: {kind}:/path/to/images (one sub-folder per class)")
        folder = list_image_folder(Path(path), workers=workers,
                                   cache_bytes=0 if kind == "folder-stream" else FOLDER_CACHE_BYTES)
        return folder.at_resolution(resolution or FOLDER_CACHE_RESOLUTION)
    raise DatasetError(f"unknown dataset {spec!r}; use fashion-mnist, cifar10:PATH, folder:PATH or "
                       f"folder-stream:PATH")


def at_resolution(data: AnyDataset, resolution: int) -> AnyDataset:
    """``data`` as a trainer at ``resolution`` should read it: an image folder held in memory at
    another size is read again at this one (never upsampled from a small copy), a listed folder is
    held in memory when it fits (see :meth:`FolderDataset.at_resolution`); other data sets as they are.
    The same call in training and in export, so both see the same validation images."""
    if isinstance(data, FolderDataset):
        return data.at_resolution(resolution)
    if data.files is not None and tuple(data.train_x.shape[-2:]) != (resolution, resolution):
        return data.files.at_resolution(resolution)
    return data


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
def default_loader_workers() -> int:
    """Loader processes when none are asked for: min(4, the CPUs this process may run on)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return min(4, cpus)


@dataclass(frozen=True)
class FolderDataset:
    """An image folder, listed but not decoded: file names relative to ``root`` and their labels
    (the index of their class folder in ``classes``), for the training and test splits.

    It has the surface of :class:`Dataset` (``name``, ``classes``, ``num_classes``, ``channels``,
    ``split_validation``, ``test_images``), with :class:`ImageFiles` for the split parts.
    :meth:`at_resolution` holds it in memory instead when it fits in ``cache_bytes``. It pickles
    small (names, not pixels), so it travels to Ray workers, but every node must then see the files
    at ``root``."""

    name: str
    root: str
    classes: tuple[str, ...]
    train_files: tuple[str, ...]
    train_labels: torch.Tensor
    test_files: tuple[str, ...]
    test_labels: torch.Tensor
    workers: Optional[int] = None  # DataLoader processes; None: default_loader_workers()
    cache_bytes: int = FOLDER_CACHE_BYTES  # held in memory at a resolution when it fits; 0: always streamed

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def channels(self) -> int:
        return 3  # every image is converted to RGB

    def __len__(self) -> int:
        return len(self.train_files) + len(self.test_files)

    def split_validation(self, val_size: Optional[int], seed: int = 0,
                         train_size: Optional[int] = None) -> tuple["ImageFiles", "ImageFiles"]:
        """(training files, validation files), both carved out of the TRAINING split by the same
        seeded permutation as :meth:`Dataset.split_validation` (over the file list); the test split
        is left alone, for reporting only."""
        train_index, val_index = _split_index(len(self.train_files), val_size, seed, train_size, self.name)
        return (self._part(self.train_files, self.train_labels, train_index,
                           f"train split, {len(train_index)} images, seed {seed}"),
                self._part(self.train_files, self.train_labels, val_index,
                           f"train split, {len(val_index)} held-out images, seed {seed}"))

    def test_images(self, size: Optional[int] = None, seed: int = 0) -> "ImageFiles":
        """The test split (or a seeded random ``size`` of it): for reporting, never for selection."""
        index = _test_index(len(self.test_files), size, seed)
        return self._part(self.test_files, self.test_labels, index, f"test split, {len(index)} images")

    def _part(self, files: tuple[str, ...], labels: torch.Tensor, index: torch.Tensor, source: str) -> "ImageFiles":
        return ImageFiles(self.root, tuple(files[i] for i in index.tolist()), labels[index], index, source,
                          self.workers)

    def cache_size(self, resolution: int) -> int:
        """Bytes the folder takes in memory at ``resolution``: the uint8 RGB images and the float32
        copy a trainer prepares from them."""
        return len(self) * 3 * resolution * resolution * (1 + 4)

    def at_resolution(self, resolution: int) -> AnyDataset:
        """In memory at ``resolution`` (:meth:`read`) when :meth:`cache_size` fits in
        ``cache_bytes``, else this streamed folder."""
        return self.read(resolution) if self.cache_size(resolution) <= self.cache_bytes else self

    def read(self, resolution: int) -> Dataset:
        """Every image decoded into memory: its central square (the whole shorter side) resized to
        ``resolution`` x ``resolution``. Unreadable files are left out, counted in a warning and
        listed in the result's ``skipped``."""
        parts = []
        for split in ("train", "test"):
            files = getattr(self, f"{split}_files")
            labels = getattr(self, f"{split}_labels")
            every = ImageFiles(self.root, files, labels, torch.arange(len(files)), f"{split} split", self.workers)
            parts.append(every.read(resolution, crop_fraction=1.0))
        (train, train_skipped), (test, test_skipped) = parts
        skipped = {**train_skipped, **test_skipped}
        if not len(train):
            raise DatasetError(f"no readable image under {self.root}: all {len(self.train_files)} training images "
                               f"failed to decode ({_example(skipped)})")
        if skipped:
            warn_unreadable(skipped, self.root)
        return Dataset(self.name, train.x, train.y, test.x, test.y, self.classes, self, tuple(sorted(skipped)))

    def minibatch(self, size: int, resolution: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """As :meth:`Dataset.minibatch`: ``size`` seeded random training files, decoded (central
        crops) and normalised with their own statistics."""
        index = torch.randperm(len(self.train_files), generator=torch.Generator().manual_seed(seed))[:size]
        part = self._part(self.train_files, self.train_labels, index, f"train split, {len(index)} images, seed {seed}")
        images, _ = part.read(resolution)
        if not len(images):
            raise DatasetError(f"no readable image among {len(index)} training files of {self.root}")
        return prepare(images.x, resolution, *channel_stats(images.x)), images.y

    def subset(self, train: Optional[int] = None, test: Optional[int] = None, seed: int = 0) -> Dataset:
        raise DatasetError(f"{self.name} is streamed from disk (folder-stream:, or {len(self)} images too many to "
                           f"hold in memory at this resolution); zero-cost proxies need it in memory: use --proxy "
                           f"train, folder: with a lower --resolution, or a smaller folder")


@dataclass(frozen=True)
class ImageFiles:
    """Labelled image files taken from a split of a streamed folder (what :class:`Images` is for an
    in-memory data set): ``files`` relative to ``root``, ``index`` says which files of the split
    they are, ``source`` where they came from in words. :meth:`batches` decodes them."""

    root: str
    files: tuple[str, ...]
    y: torch.Tensor
    index: torch.Tensor
    source: str
    workers: Optional[int] = None  # loader processes; None: default_loader_workers()

    def __len__(self) -> int:
        return len(self.files)

    def batches(self, resolution: int, batch_size: int, *, augment: bool = False,
                order: Optional[torch.Tensor] = None, seed: int = 0, epoch: int = 0,
                crop_fraction: float = CENTRE_CROP_FRACTION, workers: Optional[int] = None,
                pin_memory: bool = False) -> "ImageStream":
        """One pass over the files (in ``order``, positions in this part; default: as listed), in
        batches of uint8 (B, 3, R, R) with their labels. ``augment``: a random-resized crop flipped
        half the time, drawn from (``seed``, ``epoch``, the file's index), so a file's crop does not
        depend on the order, the batch or the number of workers; else the central crop."""
        positions = list(range(len(self)) if order is None else order.tolist())
        return ImageStream(self, positions, resolution, batch_size, augment, seed, epoch, crop_fraction,
                           self.workers if workers is None else workers, pin_memory)

    def read(self, resolution: int, crop_fraction: float = CENTRE_CROP_FRACTION) -> tuple["Images", dict[str, str]]:
        """Every file decoded into memory (the central crop): (images, {unreadable file: reason})."""
        stream = self.batches(resolution, 256, crop_fraction=crop_fraction)
        xs, ys = [], []
        for x, y in stream:
            xs.append(x)
            ys.append(y)
        x = torch.cat(xs) if xs else torch.empty((0, 3, resolution, resolution), dtype=torch.uint8)
        readable = [i for i, f in enumerate(self.files) if f not in stream.skipped]
        return (Images(x.contiguous(), torch.cat(ys) if ys else self.y[:0], self.index[readable], self.source),
                stream.skipped)

    def channel_stats(self, sample: int = 512, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel mean and std in [0, 1] units, estimated on a seeded sample of ``sample``
        files (central crops at 32 px: statistics barely depend on the size, decoding does)."""
        order = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:sample]
        total = torch.zeros(3, dtype=torch.float64)
        squares = torch.zeros(3, dtype=torch.float64)
        pixels = 0
        for x, _ in self.batches(32, 256, order=order):
            f = x.double().div_(255)
            total += f.sum((0, 2, 3))
            squares += f.square().sum((0, 2, 3))
            pixels += f.numel() // 3
        if not pixels:
            raise DatasetError(f"no readable image among {len(order)} files sampled from {self.root} ({self.source})")
        mean = total / pixels
        std = (squares / pixels - mean.square()).clamp_min(0).sqrt()
        return mean.float(), std.float().clamp_min(1e-3)


class ImageStream:
    """One pass over image files in batches, decoded by a ``torch.utils.data.DataLoader`` (in
    ``workers`` processes; 0 decodes in this one). Iterate it once: it yields (uint8 x, int64 y);
    ``skipped`` maps each unreadable file met so far to the reason. A batch holds fewer images
    than asked when some of its files were unreadable (possibly none)."""

    def __init__(self, files: ImageFiles, positions: list[int], resolution: int, batch_size: int, augment: bool,
                 seed: int, epoch: int, crop_fraction: float, workers: Optional[int], pin_memory: bool):
        self.resolution, self.batch_size, self.pin_memory = resolution, batch_size, pin_memory
        self.workers = default_loader_workers() if workers is None else workers
        self.reader = _Reader(files.root, [files.files[p] for p in positions], [int(files.y[p]) for p in positions],
                              [int(files.index[p]) for p in positions], resolution, augment, seed, epoch, crop_fraction)
        self.skipped: dict[str, str] = {}

    def __len__(self) -> int:
        return math.ceil(len(self.reader) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if not len(self.reader):
            return
        workers = min(self.workers, len(self))  # no idle processes for a short pass
        loader = torch.utils.data.DataLoader(
            self.reader, batch_size=self.batch_size, shuffle=False, num_workers=workers, collate_fn=_collate,
            pin_memory=self.pin_memory,
            # its own generator: the loader draws a base seed, which must not come from the caller's
            # torch RNG stream (a trainer's dropout and resumes depend on that stream)
            generator=torch.Generator().manual_seed(0))
        empty = torch.empty((0, 3, self.resolution, self.resolution), dtype=torch.uint8)
        for x, y, unreadable in loader:
            self.skipped.update(unreadable)
            yield (empty if x is None else x), y


class _Reader(torch.utils.data.Dataset):
    """The files of one pass, in order; item i is (uint8 HWC array or None, label, (file, reason) or None)."""

    def __init__(self, root: str, files: list[str], labels: list[int], keys: list[int], resolution: int,
                 augment: bool, seed: int, epoch: int, crop_fraction: float):
        self.root, self.files, self.labels, self.keys = root, files, labels, keys
        self.resolution, self.augment, self.seed, self.epoch = resolution, augment, seed, epoch
        self.crop_fraction = crop_fraction

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        rng = random.Random(f"{self.seed}/{self.epoch}/{self.keys[i]}") if self.augment else None
        try:
            image = read_image(os.path.join(self.root, self.files[i]), self.resolution, rng, self.crop_fraction)
        except Exception as e:  # PIL raises a zoo for broken files (OSError, SyntaxError, ValueError, ...)
            return None, self.labels[i], (self.files[i], f"{type(e).__name__}: {e}")
        return image, self.labels[i], None


def _collate(items) -> tuple[Optional[torch.Tensor], torch.Tensor, dict[str, str]]:
    good = [(image, label) for image, label, bad in items if bad is None]
    unreadable = dict(bad for _, _, bad in items if bad is not None)
    y = torch.tensor([label for _, label in good], dtype=torch.int64)
    if not good:
        return None, y, unreadable
    # (B, H, W, 3) -> (B, 3, H, W) as a view: channels-last in memory, as the models run on CPU
    x = torch.from_numpy(np.stack([image for image, _ in good])).permute(0, 3, 1, 2)
    return x, y, unreadable


def random_crop_box(width: int, height: int, rng: random.Random, scale: tuple[float, float] = RANDOM_CROP_SCALE,
                    ratio: tuple[float, float] = RANDOM_CROP_RATIO) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of a random crop covering ``scale`` of the area at an aspect
    ratio (width / height) in ``ratio``, log-uniform; after ten misses, the central crop at the
    nearest allowed ratio (Szegedy et al. 2015's augmentation, as ImageNet recipes use it)."""
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            left, top = rng.randint(0, width - w), rng.randint(0, height - h)
            return left, top, left + w, top + h
    aspect = width / height
    w, h = ((width, round(width / ratio[0])) if aspect < ratio[0] else
            (round(height * ratio[1]), height) if aspect > ratio[1] else (width, height))
    left, top = (width - w) // 2, (height - h) // 2
    return left, top, left + w, top + h


def centre_crop_box(width: int, height: int,
                    fraction: float = CENTRE_CROP_FRACTION) -> tuple[float, float, float, float]:
    """The central square of ``fraction`` of the shorter side: what "resize the shorter side to
    R / fraction, crop the central R x R" keeps, in the image's own pixels."""
    side = min(width, height) * fraction
    left, top = (width - side) / 2, (height - side) / 2
    return left, top, left + side, top + side


def read_image(path: Union[str, Path], resolution: int, rng: Optional[random.Random] = None,
               crop_fraction: float = CENTRE_CROP_FRACTION) -> np.ndarray:
    """One image file as uint8 (R, R, 3) RGB. With ``rng``: a random-resized crop, flipped half the
    time (training); without: the central crop (validation, test). Aspect is kept either way: a
    crop is resized, never a whole non-square image. A JPEG is decoded at 1/2, 1/4 or 1/8 scale
    when the crop still has R pixels each way at it (libjpeg's DCT scaling: most of the decoding
    time of a large photo saved). Raises whatever PIL raises for a file it cannot read."""
    try:
        from PIL import Image
    except ImportError:
        raise DatasetError("reading image folders needs Pillow: pip install pillow") from None
    with Image.open(path) as image:
        width, height = image.size
        left, top, right, bottom = (random_crop_box(width, height, rng) if rng is not None
                                    else centre_crop_box(width, height, crop_fraction))
        drafted = image.draft("RGB", (math.ceil(width * resolution / (right - left)),
                                      math.ceil(height * resolution / (bottom - top))))
        shrink = drafted[1][2] / width if drafted else 1.0  # the decoded image's pixels per original pixel
        rgb = image.convert("RGB")
    out = rgb.resize((resolution, resolution), Image.Resampling.BILINEAR,
                     box=(left * shrink, top * shrink, right * shrink, bottom * shrink))
    if rng is not None and rng.random() < 0.5:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return np.asarray(out, dtype=np.uint8)


def warn_unreadable(skipped: dict[str, str], where: str) -> None:
    """One warning line counting the unreadable files of ``where`` (naming the first)."""
    warnings.warn(UnreadableImagesWarning(f"{len(skipped)} unreadable image file(s) under {where} skipped "
                                          f"({_example(skipped)})"), stacklevel=2)


def note_unreadable(known: dict[str, str], unreadable: dict[str, str], where: str) -> None:
    """Add the files of ``unreadable`` that ``known`` lacks to it, with one warning for them (a
    trainer hears of a stream's unreadable files after every batch, and warns of each file once)."""
    new = {k: v for k, v in unreadable.items() if k not in known}
    if new:
        known.update(new)
        warn_unreadable(new, where)


def _example(skipped: dict[str, str]) -> str:
    if not skipped:
        return "none readable"
    first = min(skipped)
    return f"e.g. {first}: {skipped[first]}"


def list_image_folder(root: Path, test_fraction: float = 0.2, seed: int = 0, workers: Optional[int] = None,
                      cache_bytes: int = FOLDER_CACHE_BYTES) -> FolderDataset:
    """The folder's image files, listed without decoding any: ``train/`` with ``val/`` (or
    ``test/``) when present, else one tree of which ``test_fraction`` is held out at random (seeded)
    as the test split."""
    train_root, test_root = _folder_splits(root)
    classes = _classes(train_root)
    if test_root is not None:
        train_files, train_labels = _list_tree(train_root, classes)
        test_files, test_labels = _list_tree(test_root, classes)
        train_files = [os.path.join(train_root.name, f) for f in train_files]  # relative to root: train/cat/1.jpg
        test_files = [os.path.join(test_root.name, f) for f in test_files]
    else:
        files, labels = _list_tree(root, classes)
        perm = torch.randperm(len(files), generator=torch.Generator().manual_seed(seed)).tolist()
        n_test = max(1, int(len(files) * test_fraction))
        test_files, test_labels = [files[i] for i in perm[:n_test]], [labels[i] for i in perm[:n_test]]
        train_files, train_labels = [files[i] for i in perm[n_test:]], [labels[i] for i in perm[n_test:]]
    if not train_files:
        raise DatasetError(f"no images found under {train_root} (its class folders hold no "
                           f"{', '.join(IMAGE_SUFFIXES)} file)")
    return FolderDataset(f"folder:{root.name}", str(root), tuple(classes), tuple(train_files),
                         torch.tensor(train_labels, dtype=torch.int64), tuple(test_files),
                         torch.tensor(test_labels, dtype=torch.int64), workers, cache_bytes)


def load_image_folder(root: Path, resolution: int = FOLDER_CACHE_RESOLUTION, test_fraction: float = 0.2,
                      seed: int = 0) -> AnyDataset:
    """An image folder ready to train at ``resolution``: in memory when it fits, else streamed."""
    return list_image_folder(root, test_fraction, seed).at_resolution(resolution)


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


def _list_tree(root: Path, classes: list[str]) -> tuple[list[str], list[int]]:
    """(files relative to ``root``, labels) of the images directly inside each class folder, sorted."""
    files, labels = [], []
    for label, name in enumerate(classes):
        folder = root / name
        if not folder.is_dir():
            raise DatasetError(f"{root} has no folder for class {name!r}")
        with os.scandir(folder) as entries:  # file types from the directory itself: no stat per file
            found = sorted(e.name for e in entries
                           if e.name.lower().endswith(IMAGE_SUFFIXES) and e.is_file())
        files += [os.path.join(name, f) for f in found]
        labels += [label] * len(found)
    return files, labels


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
