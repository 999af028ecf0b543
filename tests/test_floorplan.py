"""The layers and contracts of the orchestration: the import rule and no cycles, one evaluator
contract (a plug-in proxy runs a whole search), a study that knows its space, and studies written
before the trial record still reading the same."""
from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from studies.record import Objective, Provenance, TrialRecord, study_objectives
from studies.search import Search, SearchError, SearchSettings
from studies.storage import load_study

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {"nas": 0, "search_spaces": 1, "evaluators": 1, "studies": 2, "nas_cli": 3}
FIXTURE = ROOT / "tests" / "fixtures" / "pre_floorplan.db"  # written by the code before the trial record


def _modules() -> dict[str, Path]:
    found = {}
    for package in LAYERS:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(module: str, path: Path, known: set[str], top_level: bool = False) -> set[str]:
    """The project modules ``module`` imports anywhere in its file (function-level imports too),
    or with ``top_level`` only those run when it is imported."""
    out = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    for node in (tree.body if top_level else ast.walk(tree)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module:
                out.add(name)
    return out


def test_each_layer_imports_only_the_layers_below():
    modules = _modules()
    broken = []
    for module, path in modules.items():
        layer = module.split(".")[0]
        for target in _imports(module, path, set(modules)):
            other = target.split(".")[0]
            if other != layer and LAYERS[other] >= LAYERS[layer]:
                broken.append(f"{module} imports {target}")
    assert not broken, broken


def test_there_are_no_import_cycles():
    """Between the modules imported at import time. (A registry that imports its members on first
    use, from inside a function, is the one sanctioned loop: ``nas.registry`` and ``evaluators.base``.)"""
    modules = _modules()
    graph = {m: _imports(m, p, set(modules), top_level=True) for m, p in modules.items()}
    # a package's __init__ re-exporting its modules is not a cycle with them
    graph = {m: {t for t in targets if not (m.startswith(t + ".") and (modules[t].name == "__init__.py"))}
             for m, targets in graph.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                cycle = stack[stack.index(t):] + [t]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_import_nas_stays_light():
    code = ("import sys, nas; print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'search_spaces', 'evaluators', 'studies', 'nas_cli', 'optuna', 'ray', 'plotly', 'pandas'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ---------------------------------------------------------------------------- the evaluator contract
TOY = '''
from evaluators.base import Evaluator, Measurement


class Toy(Evaluator):
    name, unit, description = "toy", "blocks", "total depth (a toy proxy)"

    def evaluate(self, arch, context):
        return Measurement(float(sum(s.depth for s in arch.stages)), self.unit, details={"stages": len(arch.stages)})
'''


def _plugin(tmp_path: Path) -> dict:
    """A package outside the repository that registers the toy proxy through an entry point."""
    (tmp_path / "toyproxy.py").write_text(TOY)
    info = tmp_path / "toyproxy-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toyproxy\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[nas.evaluators]\ntoy = toyproxy:Toy\n")
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}


def test_a_plugged_in_proxy_runs_a_whole_search(tmp_path):
    env = _plugin(tmp_path)
    storage = f"sqlite:///{tmp_path}/toy.db"
    help_text = subprocess.run([sys.executable, "-m", "nas_cli", "search", "--help"], capture_output=True,
                               text=True, env=env).stdout
    assert "toy: total depth (a toy proxy)" in help_text
    r = subprocess.run([sys.executable, "-m", "nas_cli", "search", "--space", "coatnet_ctt", "--budget", "1gflop",
                        "--proxy", "toy", "--trials", "3", "--workers", "0", "--storage", storage, "--study", "toy"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    study = load_study("toy", storage)
    assert study.metric_names == ["proxy_toy", "macs"]
    done = [t for t in study.trials if t.user_attrs.get("feasible")]
    assert len(done) == 3
    for t in done:
        record = TrialRecord.from_trial(t)
        measured = record.measurements["proxy_toy"]
        assert t.values[0] == measured.value == sum(record.depths) and measured.unit == "blocks"
        assert measured.details == {"stages": len(record.depths)}
    r = subprocess.run([sys.executable, "-m", "nas_cli", "score", "coatnet_0", "--proxy", "toy", "--json"],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0 and json.loads(r.stdout)["score"] == 2 + 3 + 5 + 2  # coatnet_0's depths


def test_objectives_are_defined_once():
    train = study_objectives("train", latency=True)
    assert [(o.name, o.direction, o.unit) for o in train] == [
        ("accuracy", "maximize", "accuracy"), ("macs", "minimize", "MACs"), ("latency_ms", "minimize", "ms")]
    assert [o.name for o in study_objectives("synflow", latency=False)] == ["proxy_synflow", "macs"]
    record = TrialRecord(macs=5, provenance=Provenance())
    assert Objective("macs", "minimize", "MACs", 1e9).value(record) == 5.0
    assert train[0].value(record) is None  # not measured: the driver tells the objective's worst value


def test_a_record_round_trips_through_trial_attributes():
    from evaluators.base import Measurement

    record = TrialRecord("{}", "abc", "C-T", [8, 16], [1, 2], 10, 20,
                         {"accuracy": Measurement(0.5, "accuracy", "cpu", 1.5, {"images_per_second": 9.0}, 2, True),
                          "latency_ms": Measurement(3.0, "ms", "cpu", 0.2, {"threads": 1})},
                         [0.4, 0.5], True, False, None, None, Provenance("h:1", "coatnet_0", 3, True))
    attrs = json.loads(json.dumps(record.attrs()))  # as a storage keeps them
    assert TrialRecord.from_attrs(attrs) == record


# ---------------------------------------------------------------------------- a study knows its space
def _params_search(tmp_path, **kw) -> Search:
    settings = dict(space="metaformer", macs_budget=2 * 10**9, proxy="params", trials=2, workers=0,
                    storage=f"sqlite:///{tmp_path}/s.db", study_name="s")
    return Search(SearchSettings(**{**settings, **kw}))


def test_resuming_after_the_space_changed_names_the_change(tmp_path, monkeypatch):
    import search_spaces
    from nas.domains import IntRange
    from search_spaces.base import Space

    _params_search(tmp_path).run()
    old = search_spaces.get_space("metaformer")
    changed = Space(old.name, old.description, {**old.overrides, "stages.0.depth": IntRange(1, 7)},
                    old.presets, old.layouts, old.blocks)
    monkeypatch.setitem(search_spaces.SPACES, "metaformer", changed)
    with pytest.raises(SearchError, match=r"has changed .*stages\.0\.depth: int in \[1, 24\] -> int in \[1, 7\]"):
        _params_search(tmp_path, trials=4).run()


def test_resuming_after_the_space_changed_on_the_command_line(tmp_path):
    storage = f"sqlite:///{tmp_path}/s.db"
    _params_search(tmp_path).run()
    study = load_study("s", storage)
    dims = dict(study.user_attrs["space_dimensions"])
    dims["stages.0.depth"] = "int in [1, 3]"  # what an older version of the space offered
    study.set_user_attr("space_dimensions", dims)
    r = subprocess.run([sys.executable, "-m", "nas_cli", "search", "--space", "metaformer", "--budget", "2gflop",
                        "--proxy", "params", "--trials", "4", "--workers", "0", "--storage", storage, "--study", "s"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "has changed" in r.stderr and "stages.0.depth: int in [1, 3] ->" in r.stderr


# ---------------------------------------------------------------------------- studies from before the record
@pytest.fixture()
def old_storage(tmp_path) -> str:
    shutil.copy(FIXTURE, tmp_path / "old.db")
    return f"sqlite:///{tmp_path}/old.db"


def _nas(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nas_cli", *args], capture_output=True, text=True, timeout=timeout)


def test_an_old_study_reads_the_same(old_storage):
    r = _nas("pareto", "old-latency", "--storage", old_storage, "--json")
    assert r.returncode == 0, r.stderr
    front = json.loads(r.stdout)
    assert [(row["trial"], row["arch_id"], row["macs"], row["latency_ms"]) for row in front] == [
        (5, "99e7df892bad", 989200384, pytest.approx(95.96, abs=0.01)),
        (25, "c4d8a9572b55", 911383040, pytest.approx(51.89, abs=0.01))]
    r = _nas("pareto", "old-train", "--storage", old_storage)
    assert r.returncode == 0 and "be11779a24ad" in r.stdout and "0.2200" in r.stdout
    study = load_study("old-train", old_storage)
    stopped = [TrialRecord.from_trial(t) for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert all(r.reason for r in stopped if r.feasible is False)  # the old *_reason keys are read


def test_an_old_study_opens_in_the_dashboard_and_exports(old_storage, tmp_path):
    r = _nas("dashboard", "old-train", "--storage", old_storage, "-o", str(tmp_path / "d.html"))
    assert r.returncode == 0, r.stderr
    page = (tmp_path / "d.html").read_text()
    assert "be11779a24ad" in page and "proxy accuracy (short training)" in page
    r = _nas("export", "old-latency", "--storage", old_storage, "--trial", "25", "-o", str(tmp_path / "x"))
    assert r.returncode == 0, r.stderr
    card = (tmp_path / "x" / "MODEL_CARD.md").read_text()
    assert "51.89 ms" in card and "c4d8a9572b55" in card
