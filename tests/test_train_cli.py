"""`nas train` and `nas export RUN_DIR` on the command line: a short run, its export with the
trained weights (loaded without nas, predicting like PyTorch), and bad input refused untouched."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import nas
from test_export import load_without_nas

SMALL = ["--epochs", "1", "--resolution", "32", "--train-size", "256", "--val-size", "64", "--batch-size", "64",
         "--threads", "1"]


def _nas(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nas_cli", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("train")
    nas.save_config(nas.scale_widths(nas.get_arch("coatnet_0"), 0.25), root / "small.json")
    out = root / "run"
    r = _nas("train", str(root / "small.json"), *SMALL, "-o", str(out), "--json")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["epochs_done"] == 1 and 0 <= result["val_accuracy"] <= 1 and result["test_accuracy"] is not None
    assert "held-out" in result["validation"]
    return out


def test_a_run_directory_holds_what_resumes_it(run_dir):
    assert {"arch.json", "recipe.json", "checkpoint.pt", "metrics.jsonl"} <= {p.name for p in run_dir.iterdir()}
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 1 and "val_accuracy" in json.loads(lines[0])
    # the same command again finds the run finished and trains nothing more
    r = _nas("train", str(run_dir.parent / "small.json"), *SMALL, "-o", str(run_dir), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["resumed_from"] == 1 and len((run_dir / "metrics.jsonl").read_text().splitlines()) == 1


def test_export_of_a_run_loads_without_nas_and_predicts_like_pytorch(run_dir, tmp_path):
    out = tmp_path / "exported"
    r = _nas("export", str(run_dir), "-o", str(out), "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["top1_matches"] == report["validation_images"] == 64 and report["resolution"] == 32
    card = (out / "MODEL_CARD.md").read_text()
    assert "trained weights" in card and "Validation accuracy" in card and "AdamW" in card
    assert load_without_nas(out, 32)["classes"] == 10


def test_bad_input_is_one_line_and_nothing_is_overwritten(run_dir, tmp_path):
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    other = nas.scale_widths(nas.get_arch("poolformer_s12"), 0.25)
    nas.save_config(other, tmp_path / "other.json")
    r = _nas("train", str(tmp_path / "other.json"), *SMALL, "-o", str(run_dir))  # a directory of another architecture
    errors = [line for line in r.stderr.splitlines() if line.startswith("nas: error:")]
    assert r.returncode == 2 and len(errors) == 1 and "another architecture" in errors[0], r.stderr
    assert "Traceback" not in r.stderr
    from PIL import Image

    for c in ("a", "b", "c"):  # a data set of 3 classes against a checkpoint of 10
        (tmp_path / "img" / c).mkdir(parents=True)
        for i in range(4):
            Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(tmp_path / "img" / c / f"{i}.png")
    r = _nas("train", str(run_dir.parent / "small.json"), *SMALL, "-o", str(run_dir), "--dataset",
             f"folder:{tmp_path / 'img'}")
    assert r.returncode == 2 and "class" in r.stderr, r.stderr
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before
    r = _nas("train", "nope-study", "--trial", "3", "-o", str(tmp_path / "x"), "--storage",
             f"sqlite:///{tmp_path}/none.db")
    assert r.returncode == 2 and "no study 'nope-study'" in r.stderr and not (tmp_path / "x").exists()
