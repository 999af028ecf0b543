"""Image folders of any size (streamed through loader processes, or held in memory when small),
and the proxy trainer's arithmetic (precision, divergence checks without a host read per step).

Every folder here is a few tiny PNG/JPEG files made in tmp_path; the command line runs in a
subprocess, as a user runs it."""
from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import nas
from evaluators.data import (Dataset, DatasetError, FolderDataset, ImageFiles, UnreadableImagesWarning, at_resolution,
                             centre_crop_box, dataset_num_classes, list_image_folder, load_dataset, random_crop_box,
                             read_image)
from evaluators.threads import torch_threads
from evaluators.train import (Precision, ProxyTrainer, TrainConfig, TrainingDiverged, choose_precision,
                              cpu_has_native_bf16, train_proxy)
from nas.config import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def _image(path: Path, size: tuple[int, int], seed: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(seed)
    width, height = size
    gradient = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]  # some structure, so JPEGs compress
    pixels = np.clip(gradient + rng.normal(0, 40, (height, width, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path, quality=85) if path.suffix == ".jpg" else Image.fromarray(pixels).save(path)


def _tree(root: Path, classes=("cat", "dog", "owl"), per_class: int = 6) -> Path:
    """Class folders of PNGs and JPEGs of mixed, non-square sizes."""
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            size = (48, 32) if i % 2 else (30, 44)
            _image(root / name / f"{i}.{'jpg' if i % 3 == 0 else 'png'}", size, seed=100 * c + i)
    return root


def _tiny_arch():
    """poolformer_s12 at an eighth of its widths, one block per stage: a second to train here."""
    arch = nas.get_arch("poolformer_s12")
    stages = tuple(s.__class__(s.block, 1, max(16, s.width // 8), s.stride, s.params, s.embed) for s in arch.stages)
    return arch.replace(stem=arch.stem.__class__(arch.stem.type, stages[0].width, arch.stem.params), stages=stages)


def _nas(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nas_cli", *args], capture_output=True, text=True, timeout=timeout,
                          cwd=ROOT)


# ---------------------------------------------------------------------------- streaming
@pytest.mark.parametrize("resolution", [24, 40])
def test_streamed_training_batches_have_the_training_shape(tmp_path, resolution):
    folder = load_dataset(f"folder-stream:{_tree(tmp_path)}", resolution=resolution)
    assert isinstance(folder, FolderDataset) and folder.num_classes == 3 and folder.channels == 3
    train, val = folder.split_validation(3, seed=0)
    assert isinstance(train, ImageFiles) and len(train) + len(val) == len(folder.train_files)
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(1))
    batches = list(train.batches(resolution, 4, augment=True, order=order, seed=0, epoch=0, workers=0))
    assert [tuple(x.shape) for x, _ in batches] == [(4, 3, resolution, resolution)] * (len(train) // 4) + (
        [(len(train) % 4, 3, resolution, resolution)] if len(train) % 4 else [])
    assert all(x.dtype == torch.uint8 and y.dtype == torch.int64 for x, y in batches)
    assert torch.equal(torch.cat([y for _, y in batches]), train.y[order])
    # a file's crop comes from (seed, epoch, file): the same with loader processes, another in the next epoch
    again = list(train.batches(resolution, 4, augment=True, order=order, seed=0, epoch=0, workers=2))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, again))
    later = list(train.batches(resolution, 4, augment=True, order=order, seed=0, epoch=1, workers=0))
    assert not torch.equal(batches[0][0], later[0][0])
    x, _ = next(iter(val.batches(resolution, 8)))  # validation: central crops, the same every time
    assert x.shape[1:] == (3, resolution, resolution) and torch.equal(x, next(iter(val.batches(resolution, 8)))[0])


def test_non_square_images_are_cropped_not_squashed(tmp_path):
    from PIL import Image

    pixels = np.zeros((48, 96, 3), dtype=np.uint8)  # 96 wide, 48 high
    pixels[16:32, 40:56] = 255  # a centred 16 x 16 white square
    Image.fromarray(pixels).save(tmp_path / "wide.png")
    out = read_image(tmp_path / "wide.png", 42, crop_fraction=0.875)  # the central 42 x 42: one output pixel each
    rows, cols = np.nonzero(out[..., 0] > 127)
    assert out.shape == (42, 42, 3)
    assert rows.max() - rows.min() + 1 == cols.max() - cols.min() + 1 == 16  # still a square (squashed: 7 x 14)
    rng = random.Random(0)
    for width, height in ((500, 375), (40, 300), (1000, 10), (32, 32)):
        for _ in range(200):
            left, top, right, bottom = random_crop_box(width, height, rng)
            w, h = right - left, bottom - top
            assert 0 <= left < right <= width and 0 <= top < bottom <= height
            if max(width, height) / min(width, height) < 4 / 3:  # (extreme images fall back to a clamped crop)
                assert 3 / 4 - 0.05 <= w / h <= 4 / 3 + 0.05 and 0.08 - 0.02 <= w * h / (width * height) <= 1
    assert centre_crop_box(96, 48, 1.0) == (24.0, 0.0, 72.0, 48.0)


def test_validation_files_are_held_out_of_the_training_files_and_seeded(tmp_path):
    root = _tree(tmp_path / "img", per_class=8)
    folder = list_image_folder(root, cache_bytes=0)
    train, val = folder.split_validation(5, seed=3, train_size=12)
    assert len(train) == 12 and len(val) == 5 and not set(train.files) & set(val.files)
    assert set(train.files) | set(val.files) <= set(folder.train_files)  # never the test split
    assert not set(val.files) & set(folder.test_files)
    assert val.source == "train split, 5 held-out images, seed 3"
    again_train, again_val = folder.split_validation(5, seed=3)
    assert again_val.files == val.files and len(again_train) == len(folder.train_files) - 5
    assert folder.split_validation(5, seed=4)[1].files != val.files
    # held in memory, the same folder holds out the same images (one permutation over the same list)
    memory = list_image_folder(root).at_resolution(16)
    assert isinstance(memory, Dataset)
    assert torch.equal(memory.split_validation(5, seed=3)[1].index, val.index)
    with pytest.raises(DatasetError, match="val_size must be between 1 and"):
        folder.split_validation(len(folder.train_files))


def test_a_small_folder_is_held_in_memory_at_the_training_resolution(tmp_path):
    root = _tree(tmp_path / "img")
    data = load_dataset(f"folder:{root}", resolution=32)
    assert isinstance(data, Dataset) and data.train_x.shape[1:] == (3, 32, 32) and data.num_classes == 3
    assert at_resolution(data, 32) is data
    assert at_resolution(data, 48).train_x.shape[1:] == (3, 48, 48)  # read again, not upsampled
    assert isinstance(load_dataset(f"folder-stream:{root}", resolution=32), FolderDataset)
    assert isinstance(list_image_folder(root, cache_bytes=data.files.cache_size(32) - 1).at_resolution(32),
                      FolderDataset)  # one byte over the cap: streamed
    cfg = TrainConfig(epochs=1, resolution=32, train_size=None, val_size=4, batch_size=8, threads=1)
    result = train_proxy(_tiny_arch(), data, cfg)
    assert 0 <= result.accuracy <= 1 and result.skipped_images == 0
    assert result.precision == choose_precision("auto", "cpu").name


# ---------------------------------------------------------------------------- bad files and bad folders
def test_an_unreadable_image_is_skipped_and_counted(tmp_path):
    root = tmp_path / "img"
    _tree(root / "train")
    _tree(root / "val", per_class=2)
    (root / "train" / "cat" / "notes.png").write_text("not an image")
    good = root / "train" / "dog" / "0.jpg"
    (root / "train" / "dog" / "cut.jpg").write_bytes(good.read_bytes()[:len(good.read_bytes()) // 2])  # truncated
    folder = load_dataset(f"folder-stream:{root}", resolution=24)
    images, skipped = 0, {}
    for part in folder.split_validation(2, seed=0):  # training and validation files
        stream = part.batches(24, 64, workers=0)
        images += sum(len(y) for _, y in stream)
        skipped.update(stream.skipped)
    assert images == len(folder.train_files) - 2
    assert sorted(skipped) == ["train/cat/notes.png", "train/dog/cut.jpg"], skipped
    assert "UnidentifiedImageError" in skipped["train/cat/notes.png"] and "truncated" in skipped["train/dog/cut.jpg"]
    cfg = TrainConfig(epochs=1, resolution=24, train_size=None, val_size=2, batch_size=8, threads=1)
    with pytest.warns(UnreadableImagesWarning, match=r"unreadable image file\(s\) under"):
        result = train_proxy(_tiny_arch(), folder, cfg)
    assert result.skipped_images == 2 and 0 <= result.accuracy <= 1
    with pytest.warns(UnreadableImagesWarning, match="2 unreadable image file"):
        memory = load_dataset(f"folder:{root}", resolution=24)
    assert sorted(memory.skipped) == ["train/cat/notes.png", "train/dog/cut.jpg"]
    assert len(memory.train_y) == len(folder.train_files) - 2


def test_empty_folders_and_single_classes_are_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="needs at least two class sub-folders, found 0"):
        load_dataset(f"folder:{tmp_path / 'empty'}")
    for name in ("a", "b"):
        (tmp_path / "no_images" / name).mkdir(parents=True)
    (tmp_path / "no_images" / "a" / "readme.txt").write_text("hello")
    with pytest.raises(DatasetError, match="no images found under"):
        load_dataset(f"folder-stream:{tmp_path / 'no_images'}")
    _tree(tmp_path / "one", classes=("only",))
    with pytest.raises(DatasetError, match="at least two class sub-folders, found 1"):
        load_dataset(f"folder:{tmp_path / 'one'}", resolution=32)
    with pytest.raises(DatasetError, match="found 1"):
        dataset_num_classes(f"folder:{tmp_path / 'one'}")
    for name in ("a", "b"):  # every image unreadable: nothing to train on
        (tmp_path / "broken" / name).mkdir(parents=True)
        for i in range(3):
            (tmp_path / "broken" / name / f"{i}.jpg").write_bytes(b"\xff\xd8 not really")
    assert dataset_num_classes(f"folder:{tmp_path / 'broken'}") == 2  # counted without decoding anything
    with pytest.raises(DatasetError, match="no readable image"), warnings.catch_warnings():
        warnings.simplefilter("ignore", UnreadableImagesWarning)
        load_dataset(f"folder:{tmp_path / 'broken'}", resolution=16)


# ---------------------------------------------------------------------------- the command line
@pytest.fixture(scope="module")
def cli_folder(tmp_path_factory) -> tuple[Path, Path]:
    """(a tiny train/val image folder, a tiny architecture's config file)."""
    base = tmp_path_factory.mktemp("cli")
    _tree(base / "img" / "train", per_class=8)
    _tree(base / "img" / "val", per_class=2)
    nas.save_config(nas.scale_widths(nas.get_arch("coatnet_0"), 0.25), base / "arch.json")
    return base / "img", base / "arch.json"


def test_score_and_train_run_on_a_streamed_folder_from_the_command_line(cli_folder, tmp_path):
    folder, arch = cli_folder
    spec = f"folder-stream:{folder}"
    r = _nas("score", str(arch), "--proxy", "train", "--dataset", spec, "--epochs", "1", "--resolution", "32",
             "--batch-size", "8", "--train-size", "0", "--val-size", "4", "--threads", "1", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert 0 <= out["score"] <= 1 and out["details"]["validation"] == "train split, 4 held-out images, seed 0"
    r = _nas("train", str(arch), "-o", str(tmp_path / "run"), "--dataset", spec, "--epochs", "1", "--resolution",
             "32", "--batch-size", "8", "--val-size", "4", "--threads", "1", "--json")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["epochs_done"] == 1 and 0 <= result["val_accuracy"] <= 1
    assert result["test"] == "test split, 6 images" and 0 <= result["test_accuracy"] <= 1
    assert json.loads((tmp_path / "run" / "run.json").read_text())["streamed"] is True
    from studies.training import validation_images

    x, y = validation_images(tmp_path / "run", spec)  # what export checks ONNX Runtime on
    assert x.shape == (4, 3, 32, 32) and len(y) == 4


def test_zero_cost_proxies_score_a_streamed_folder_and_a_split_too_large_is_one_line(cli_folder):
    folder, arch = cli_folder
    r = _nas("score", str(arch), "--proxy", "synflow", "--dataset", f"folder-stream:{folder}", "--batch-size", "8",
             "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["score"] > 0
    r = _nas("score", str(arch), "--proxy", "train", "--dataset", f"folder-stream:{folder}", "--val-size", "2000")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "val_size must be between 1 and" in r.stderr


@pytest.mark.parametrize("command", ["score", "train", "search"])
def test_a_bad_folder_is_one_line_and_exit_code_2(cli_folder, tmp_path, command):
    _, arch = cli_folder
    _tree(tmp_path / "one", classes=("only",), per_class=2)
    args = {"score": ["score", str(arch), "--proxy", "train"],
            "train": ["train", str(arch), "-o", str(tmp_path / "run")],
            "search": ["search", "--space", "coatnet_ctt", "--workers", "0", "--storage",
                       f"sqlite:///{tmp_path / 's.db'}"]}[command]
    for bad in (f"folder:{tmp_path / 'one'}", f"folder-stream:{tmp_path / 'missing'}"):
        r = _nas(*args, "--dataset", bad)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert "Traceback" not in r.stderr and ("found 1" in r.stderr or "not found" in r.stderr), r.stderr
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------- precision and divergence
def _synthetic(n: int = 96, classes: int = 4, size: int = 16) -> Dataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)
    y = torch.randint(0, classes, (n,), generator=g)
    return Dataset("synthetic", x, y, x[:16], y[:16], tuple(f"c{i}" for i in range(classes)))


def test_precision_is_chosen_by_device_and_cpu_features():
    assert choose_precision("auto", "cpu", cpu_bf16=False) == Precision("fp32", choose_precision(
        "auto", "cpu", cpu_bf16=False).reason)
    assert choose_precision("auto", "cpu", cpu_bf16=True).name == "bf16"
    assert choose_precision("auto", "cuda", cuda_bf16=True).name == "bf16"
    fp16 = choose_precision("auto", "cuda:1", cuda_bf16=False)
    assert fp16.name == "fp16" and fp16.needs_scaler and fp16.dtype == torch.float16
    assert choose_precision("fp32", "cuda", cuda_bf16=True).dtype is None
    assert choose_precision("bf16", "cpu", cpu_bf16=False).dtype == torch.bfloat16  # asked for: even if slow
    with pytest.raises(ConfigError, match="bf16 needs a GPU with bfloat16 support"):
        choose_precision("bf16", "cuda", cuda_bf16=False)
    with pytest.raises(ConfigError, match="precision must be one of auto, fp32, bf16, got 'fp16'"):
        TrainConfig(precision="fp16")
    assert not cpu_has_native_bf16({"avx2", "fma"}, "AVX2")
    assert not cpu_has_native_bf16({"avx2", "avx512f", "avx512_bf16"}, "AVX512")  # no faster than fp32
    assert cpu_has_native_bf16({"amx_tile", "amx_bf16"}, "AVX512")
    assert cpu_has_native_bf16(set(), "AMX")
    assert isinstance(cpu_has_native_bf16(), bool)  # this machine's, read from /proc/cpuinfo


@pytest.mark.parametrize("check_every", [1, 20])
def test_a_diverging_loss_still_raises(check_every):
    """On CPU the loss is read every step; on CUDA every 20 steps and at the end of the epoch: a
    trainer made to check as on CUDA still stops a diverging run within the epoch."""
    cfg = TrainConfig(epochs=1, resolution=16, train_size=None, val_size=16, batch_size=8, lr=1e30, threads=1)
    trainer = ProxyTrainer(_tiny_arch(), _synthetic(), cfg)
    trainer.check_every = check_every
    with pytest.raises(TrainingDiverged, match="loss became (nan|inf|-inf) in epoch 1"):
        trainer.run_epoch()


def test_bf16_autocast_on_cpu_trains_an_epoch():
    cfg = TrainConfig(epochs=1, resolution=16, train_size=None, val_size=16, batch_size=16, precision="bf16",
                      threads=1)
    with torch_threads(1):
        result = train_proxy(_tiny_arch(), _synthetic(), cfg)
    assert result.precision == "bf16" and np.isfinite(result.accuracy) and 0 <= result.accuracy <= 1


def test_a_cpu_step_with_overflowed_gradients_is_skipped():
    """A bf16 backward can overflow to inf: on CPU that step is skipped (clipping would turn inf into
    NaN weights), and training goes on; the loss check still stops a run whose loss is not finite."""
    cfg = TrainConfig(epochs=1, resolution=16, train_size=None, val_size=16, batch_size=16, precision="fp32",
                      threads=1)
    trainer = ProxyTrainer(_tiny_arch(), _synthetic(), cfg, device="cpu")
    weight = next(trainer.model.parameters())
    overflows = iter([True])
    weight.register_hook(lambda g: torch.full_like(g, float("inf")) if next(overflows, False) else g)
    with torch_threads(1):
        accuracy = trainer.run_epoch()
    assert 0 <= accuracy <= 1 and all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_a_study_from_before_the_precision_field_resumes(tmp_path):
    from studies.search import Search, SearchSettings

    shutil.copy(ROOT / "tests" / "fixtures" / "pre_floorplan.db", tmp_path / "old.db")
    settings = SearchSettings(space="coatnet_ctt", macs_budget=1_000_000_000, storage=f"sqlite:///{tmp_path}/old.db",
                              study_name="old-train", workers=0,
                              train=TrainConfig(epochs=2, resolution=32, train_size=300, val_size=100, batch_size=128))
    Search(settings).open()  # raises "exists with other settings (train)" while the identity holds precision
