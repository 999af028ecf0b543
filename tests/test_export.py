"""`nas export`: trial choice, recorded-cost check, the artifacts (round trip through arch.json,
ONNX Runtime vs PyTorch), loading them without nas, and bad input."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch

import nas
from studies.export import ONNX_TOLERANCE, ExportError, export_model, export_trial, select_trial
from studies.results import front_frame
from studies.search import Search, SearchSettings

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
RESOLUTION = 64  # small inputs keep the traces quick; the design resolution is the default


@pytest.fixture(scope="module")
def study_and_storage(tmp_path_factory):
    """A real instant-proxy study of the MetaFormer space under 2 GMACs; trial 0 is the seeded
    poolformer_s12, quick to trace (the tests export it at a small resolution)."""
    storage = f"sqlite:///{tmp_path_factory.mktemp('export')}/e.db"
    settings = SearchSettings(space="metaformer", macs_budget=2_000_000_000, trials=3, proxy="params", workers=0,
                              storage=storage, study_name="e", seed=0, presets=1)
    return Search(settings).run(), storage


def nas_cli(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nas_cli", *args], capture_output=True, text=True, timeout=timeout)


# ---------------------------------------------------------------------------- choosing the trial
def test_default_is_the_fronts_best_and_ranks_follow_the_metric(study_and_storage):
    study, _ = study_and_storage
    front = front_frame(study)
    assert select_trial(study).number == front.iloc[0]["trial"]
    values = [select_trial(study, front_rank=k).values[0] for k in range(1, len(front) + 1)]
    assert values == sorted(values, reverse=True)
    with pytest.raises(ExportError, match=rf"front rank {len(front) + 1} is out of range.*has {len(front)}"):
        select_trial(study, front_rank=len(front) + 1)
    with pytest.raises(ExportError, match="no trial 9999"):
        select_trial(study, trial=9999)
    over = [t for t in study.trials if t.user_attrs.get("feasible") is False]
    if over:  # any trial with a config may be exported, over budget too
        assert select_trial(study, trial=over[0].number).number == over[0].number


def test_a_trial_without_a_config_or_an_empty_front_is_refused():
    study = optuna.create_study(directions=["maximize", "minimize"], study_name="empty")
    study.set_metric_names(["accuracy", "macs"])
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.FAIL,
                                              user_attrs={"invalid": True, "fail_reason": "invalid: too narrow"}))
    with pytest.raises(ExportError, match="no architecture to export.*too narrow"):
        select_trial(study, trial=0)
    with pytest.raises(ExportError, match="no feasible evaluated trial"):
        select_trial(study)


def test_recorded_cost_must_match_the_rebuilt_config(tmp_path):
    arch = nas.get_arch("poolformer_s12")
    cost = nas.analytic_cost(arch)
    study = optuna.create_study(directions=["maximize", "minimize"], study_name="tampered")
    study.set_metric_names(["proxy_params", "macs"])
    study.add_trial(optuna.trial.create_trial(values=[1.0, cost.macs], user_attrs={
        "arch": arch.to_json(), "arch_id": arch.arch_id, "params": cost.params + 1, "macs": cost.macs,
        "feasible": True}))
    with pytest.raises(ExportError, match=r"does not match the study: params .* != recorded"):
        export_trial(study, tmp_path / "out", trial=0)
    assert not (tmp_path / "out").exists()  # nothing written


def test_classes_of_a_vanished_dataset_must_be_given(tmp_path):
    arch = nas.get_arch("poolformer_s12")
    cost = nas.analytic_cost(arch)
    study = optuna.create_study(directions=["maximize", "minimize"], study_name="moved")
    study.set_user_attr("settings", {"dataset": f"folder:{tmp_path / 'gone'}"})
    study.add_trial(optuna.trial.create_trial(values=[0.5, cost.macs], user_attrs={
        "arch": arch.to_json(), "arch_id": arch.arch_id, "params": cost.params, "macs": cost.macs, "feasible": True}))
    with pytest.raises(ExportError, match=r"cannot tell how many classes .*image folder not found.*--num-classes"):
        export_trial(study, tmp_path / "out", trial=0)
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------- the artifacts
def test_round_trip(study_and_storage, tmp_path):
    study, _ = study_and_storage
    report = export_trial(study, tmp_path, trial=0, resolution=RESOLUTION)
    assert report.files == ["arch.json", "model.pt2", "model.onnx", "MODEL_CARD.md"]
    assert all((tmp_path / f).is_file() for f in report.files)
    trial = study.trials[0]
    assert trial.user_attrs["preset"] == "poolformer_s12"
    assert report.trial == 0 and report.num_classes == 10  # Fashion-MNIST, as searched
    # arch.json rebuilds the very config, through the public API
    config = nas.load_config(tmp_path / "arch.json")
    assert config == nas.ArchConfig.from_json(trial.user_attrs["arch"]) and config.arch_id == report.arch_id
    torch.manual_seed(0)  # the export's seed: the same fresh weights
    model = nas.build_model(config, num_classes=10).eval()
    assert sum(p.numel() for p in model.parameters()) == report.params
    # ONNX Runtime vs PyTorch on one input, within the tolerance (and as recorded)
    import onnxruntime as ort

    x = torch.randn(3, 3, RESOLUTION, RESOLUTION)
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {"image": x.numpy()})[0]
    with torch.no_grad():
        expected = model(x).numpy()
    assert got.shape == (3, 10) and np.abs(got - expected).max() <= ONNX_TOLERANCE
    assert report.onnx_max_abs_diff <= ONNX_TOLERANCE and report.torch_max_abs_diff <= 1e-5
    program = torch.export.load(str(tmp_path / "model.pt2")).module()
    assert np.abs(program(x).detach().numpy() - expected).max() <= 1e-5
    card = (tmp_path / "MODEL_CARD.md").read_text()
    for needle in ("freshly initialised", "**10 classes**", report.arch_id, config.layout, f"trial {trial.number}",
                   "`e`", "proxy_params", "torch.export.load", "onnxruntime"):
        assert needle in card, needle


def test_torchscript_fallback_when_torch_export_fails(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise RuntimeError("data-dependent control flow")

    monkeypatch.setattr(torch.export, "export", refuse)
    out = export_model(nas.get_arch("poolformer_s12"), tmp_path, num_classes=5, resolution=RESOLUTION)
    assert out["files"] == ["arch.json", "model.ts", "model.onnx"]
    assert out["torch_format"] == "torchscript" and "data-dependent" in out["torch_fallback"]
    assert out["torch_max_abs_diff"] <= 1e-5 and out["onnx_max_abs_diff"] <= ONNX_TOLERANCE
    assert load_without_nas(tmp_path, RESOLUTION)["classes"] == 5


# ---------------------------------------------------------------------------- without nas
LOADER = r"""
import importlib.util, json, pathlib, sys
repo = sys.argv[1]
# an editable install of nas adds a finder (and a path hook) that imports it from the checkout: drop them
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in str(getattr(f, "__module__", ""))]
sys.path_hooks[:] = [h for h in sys.path_hooks if "editable" not in str(getattr(h, "__module__", ""))]
sys.path[:] = [p for p in sys.path if p and pathlib.Path(p).resolve() != pathlib.Path(repo).resolve()]  # a venv may live inside the checkout
sys.path_importer_cache.clear()
for name in ("nas", "studies", "search_spaces", "evaluators"):
    assert importlib.util.find_spec(name) is None, f"{name} is still importable"
    sys.modules[name] = None  # and any import of it fails
import numpy as np, onnxruntime, torch
res = int(sys.argv[2])
x = torch.randn(2, 3, res, res)
if pathlib.Path("model.pt2").exists():
    program = torch.export.load("model.pt2").module()
else:
    program = torch.jit.load("model.ts")
with torch.no_grad():
    y = program(x).numpy()
session = onnxruntime.InferenceSession("model.onnx", providers=["CPUExecutionProvider"])
z = session.run(None, {"image": x.numpy()})[0]
print(json.dumps({"classes": y.shape[1], "diff": float(np.abs(y - z).max()), "nas": "nas" in sys.modules and sys.modules["nas"] is not None}))
"""


def load_without_nas(directory: Path, resolution: int) -> dict:
    r = subprocess.run([sys.executable, "-I", "-c", LOADER, str(REPO), str(resolution)], cwd=directory,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["diff"] <= ONNX_TOLERANCE and not out["nas"]
    return out


def test_cli_export_then_load_without_nas(study_and_storage, tmp_path):
    study, storage = study_and_storage
    out = tmp_path / "exported"
    r = nas_cli("export", "e", "--storage", storage, "--trial", "0", "--num-classes", "7",
                "--resolution", str(RESOLUTION), "-o", str(out), "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["trial"] == 0 and report["num_classes"] == 7 and report["torch_format"] == "torch.export"
    assert "**7 classes**" in (out / "MODEL_CARD.md").read_text()
    assert load_without_nas(out, RESOLUTION)["classes"] == 7


# ---------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("args, needle", [
    (["nope"], "no study 'nope'"),
    (["e", "--trial", "9999"], "no trial 9999"),
    (["e", "--front-rank", "99"], "front rank 99 is out of range"),
    (["e", "--front-rank", "0"], "positive int"),
    (["e", "--trial", "1", "--front-rank", "1"], "not allowed with"),
    (["e", "--resolution", "65"], "multiple of the network's stride"),
])
def test_bad_input_is_one_line_and_exit_2(study_and_storage, tmp_path, args, needle):
    _, storage = study_and_storage
    r = nas_cli("export", *args, "--storage", storage, "-o", str(tmp_path / "x"))
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "x").exists()
