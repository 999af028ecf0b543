"""`nas train`'s library (studies/training.py): a real training run, resumed after kill -9 to the
same weights, refusals that overwrite nothing, and validation held out of the training split."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import nas
from evaluators.data import Dataset, load_dataset, prepare
from studies.training import (RecipeConfig, RunError, describe_run, load_recipe, load_run, train_run,
                              validation_images)

# every random part of the recipe on: drop path, mixup and cutmix, EMA, flips
RECIPE = RecipeConfig(epochs=2, resolution=32, batch_size=32, lr=2e-3, warmup_epochs=0.5, drop_path_rate=0.2,
                      mixup_alpha=0.4, cutmix_alpha=1.0, ema_decay=0.9, train_size=256, val_size=128, test_size=300,
                      seed=3, threads=1)


def tiny_arch() -> nas.ArchConfig:
    """CoAtNet-0 at an eighth of its widths and one block per stage (C-C-T-T, 0.2 M params)."""
    arch = nas.scale_widths(nas.get_arch("coatnet_0"), 0.125)
    return arch.replace(stages=tuple(replace(s, depth=1) for s in arch.stages))


@pytest.fixture(scope="module")
def fmnist() -> Dataset:
    return load_dataset("fashion-mnist")


@pytest.fixture(scope="module")
def finished(tmp_path_factory, fmnist) -> Path:
    """An uninterrupted 2-epoch run."""
    run_dir = tmp_path_factory.mktemp("runs") / "uninterrupted"
    train_run(tiny_arch(), fmnist, RECIPE, run_dir)
    return run_dir


def _files(run_dir: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(run_dir.iterdir())}


def test_one_epoch_run(tmp_path, fmnist):
    seen = []
    rng, threads = torch.get_rng_state(), torch.get_num_threads()
    recipe = replace(RECIPE, epochs=1, mixup_alpha=0.0, cutmix_alpha=0.0, ema_decay=None, train_size=1024, lr=4e-3,
                     warmup_epochs=0.2)
    result = train_run(tiny_arch(), fmnist, recipe, tmp_path / "run", on_progress=seen.append)
    assert torch.equal(torch.get_rng_state(), rng) and torch.get_num_threads() == threads  # left as found
    assert result.epochs_done == 1 and result.resumed_from == 0 and result.device == "cpu"
    assert 0.25 < result.val_accuracy <= 1 and 0.25 < result.test_accuracy <= 1  # chance is 0.1
    assert result.validation == "train split, 128 held-out images, seed 3" and result.test == "test split, 300 images"
    steps = 1024 // 32
    assert [p.step for p in seen] == list(range(1, steps + 1)) + [steps]
    assert seen[-1].val_accuracy == result.val_accuracy and all(p.images_per_second > 0 for p in seen)
    assert seen[0].seconds_left > seen[-2].seconds_left >= 0
    run_dir = tmp_path / "run"
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(
        ["arch.json", "recipe.json", "run.json", "checkpoint.pt", "metrics.jsonl", "result.json"])
    assert nas.load_config(run_dir / "arch.json") == tiny_arch() and load_recipe(run_dir) == recipe
    (line,) = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert line["epoch"] == 1 and line["val_accuracy"] == result.val_accuracy and line["images_per_second"] > 0
    assert line["loss"] > 0 and line["seconds"] > 0
    arch, state, info = load_run(run_dir)
    model = nas.build_model(arch, info["num_classes"])
    model.load_state_dict(state)
    x, y = validation_images(run_dir, fmnist)
    model.eval()
    with torch.no_grad():
        accuracy = (model(x).argmax(1) == y).float().mean().item()
    assert accuracy == pytest.approx(result.val_accuracy)  # the exported weights score what the run reported
    assert info["finished"] and info["epochs_done"] == 1 and info["test_accuracy"] == result.test_accuracy
    assert info["dataset"] == "fashion-mnist" and info["validation"] == result.validation and not info["ema"]
    assert info["dataset_spec"] is None and info["resolution"] == 32 and info["num_classes"] == 10
    card = describe_run(info)
    assert f"Validation accuracy {result.val_accuracy:.4f} (train split, 128 held-out images, seed 3)" in card
    assert f"Test accuracy {result.test_accuracy:.4f} (test split, 300 images)" in card and "1 of 1 epochs" in card


KILLED_RUN = textwrap.dedent("""
    import sys
    from tests.test_training import RECIPE, tiny_arch
    from studies.training import train_run

    def progress(p):
        print(p.epoch, p.step, flush=True)

    train_run(tiny_arch(), "fashion-mnist", RECIPE, sys.argv[1], on_progress=progress)
""")


def test_kill_and_resume_reaches_the_same_weights(tmp_path, finished):
    run_dir = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_RUN, str(run_dir)], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[1])
    try:
        for line in proc.stdout:  # kill -9 in the middle of epoch 2, after epoch 1's checkpoint
            if line.split() == ["2", "3"]:
                os.kill(proc.pid, signal.SIGKILL)
                break
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    ckpt = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert ckpt["epoch"] == 1 and not (run_dir / "result.json").exists()
    result = train_run(tiny_arch(), "fashion-mnist", RECIPE, run_dir)
    assert result.resumed_from == 1 and result.epochs_done == 2
    resumed = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    reference = torch.load(finished / "checkpoint.pt", weights_only=True)
    for part in ("model", "ema"):
        assert resumed[part].keys() == reference[part].keys()
        for k in reference[part]:
            assert torch.equal(resumed[part][k], reference[part][k]), (part, k)
    assert [m["val_accuracy"] for m in resumed["history"]] == [m["val_accuracy"] for m in reference["history"]]
    assert len((run_dir / "metrics.jsonl").read_text().splitlines()) == 2
    _, state, info = load_run(run_dir)
    assert info["dataset_spec"] == "fashion-mnist" and info["ema"]
    assert all(torch.equal(state[k], reference["ema"][k]) for k in state)  # the EMA weights are exported


def test_finished_run_is_not_trained_again(finished):
    before = _files(finished)
    result = train_run(tiny_arch(), "fashion-mnist", RECIPE, finished)
    assert result.resumed_from == 2 and result.epochs_done == 2 and _files(finished) == before
    assert result.test_accuracy == json.loads((finished / "result.json").read_text())["test_accuracy"]


def test_refusals_overwrite_nothing(finished, fmnist, tmp_path):
    before = _files(finished)
    other = nas.scale_widths(nas.get_arch("poolformer_s12"), 0.125)
    with pytest.raises(RunError, match="holds a run of another architecture") as e:
        train_run(other, fmnist, RECIPE, finished)
    assert isinstance(e.value, ValueError) and "\n" not in str(e.value)
    keep = fmnist.train_y < 5
    five = Dataset(fmnist.name, fmnist.train_x[keep], fmnist.train_y[keep], fmnist.test_x, fmnist.test_y,
                   fmnist.classes[:5])
    with pytest.raises(RunError, match="has 5 classes but the run .* was trained with 10"):
        train_run(tiny_arch(), five, RECIPE, finished)
    with pytest.raises(RunError, match="recipe lr is 0.001 but the run .* was started with 0.002"):
        train_run(tiny_arch(), fmnist, replace(RECIPE, lr=1e-3), finished)
    with pytest.raises(RunError, match="recipe epochs is 3"):
        train_run(tiny_arch(), fmnist, replace(RECIPE, epochs=3), finished)
    assert _files(finished) == before
    train_run(tiny_arch(), fmnist, replace(RECIPE, threads=2), finished)  # where it runs is not the recipe
    assert _files(finished) == before
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(RunError, match="not empty and holds no training run"):
        train_run(tiny_arch(), fmnist, RECIPE, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
    with pytest.raises(RunError, match="recipe drop_path_rate must be in"):
        train_run(tiny_arch(), fmnist, replace(RECIPE, drop_path_rate=1.0), tmp_path / "new")
    assert not (tmp_path / "new").exists()


def test_validation_never_touches_the_test_split(tmp_path, fmnist):
    """The validation images are training-split images never trained on; a data set without a test
    split trains and validates identically."""
    recipe = replace(RECIPE, epochs=1)
    train, val = fmnist.split_validation(recipe.val_size, seed=recipe.seed, train_size=recipe.train_size)
    assert not set(train.index.tolist()) & set(val.index.tolist())
    no_test = Dataset(fmnist.name, fmnist.train_x, fmnist.train_y, fmnist.test_x[:0], fmnist.test_y[:0],
                      fmnist.classes)
    blind = train_run(tiny_arch(), no_test, recipe, tmp_path / "no_test")
    assert blind.test_accuracy is None
    full = train_run(tiny_arch(), fmnist, recipe, tmp_path / "full", dataset_spec="fashion-mnist")
    assert blind.val_history == full.val_history and full.test_accuracy is not None
    x, y = validation_images(tmp_path / "full", fmnist)
    _, _, info = load_run(tmp_path / "full")
    assert info["dataset_spec"] == "fashion-mnist"
    mean, std = torch.tensor(info["mean"]), torch.tensor(info["std"])
    assert torch.equal(x, prepare(fmnist.train_x[val.index], recipe.resolution, mean, std))
    assert torch.equal(y, fmnist.train_y[val.index])
