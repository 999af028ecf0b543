"""The command line, run as a user runs it: in a subprocess."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

import nas


def run(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nas_cli", *args], capture_output=True, text=True, timeout=timeout)


def test_archs_json_lists_every_preset_with_integer_counts():
    r = run("archs", "--json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [row["name"] for row in rows] == nas.list_archs()
    for row in rows:
        assert isinstance(row["params"], int) and isinstance(row["macs"], int)
        assert row["resolution"] in (224, 256)
        assert "published_top1" in row and "deviation" in row


def test_archs_table():
    r = run("archs")
    assert r.returncode == 0 and "poolformer_s12" in r.stdout and "11.915" in r.stdout


def test_spaces_and_space_show():
    r = run("spaces", "--json")
    assert r.returncode == 0
    names = [s["name"] for s in json.loads(r.stdout)]
    assert "hybrid" in names and "metaformer" in names
    r = run("space", "show", "metaformer")
    assert r.returncode == 0 and "stages.1.width" in r.stdout and "poolformer_s12" in r.stdout


def test_profile_preset_and_config_file(tmp_path):
    r = run("profile", "poolformer_s12", "--counter", "analytic", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["params"] == 11_915_176 and data["resolution"] == 224 and data["count_seconds"] >= 0
    path = tmp_path / "arch.json"
    nas.save_config(nas.get_arch("poolformer_s12"), path)
    r = run("profile", str(path), "--resolution", "64", "--num-classes", "10", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["resolution"] == 64 and data["counter"] == "fvcore"
    assert data["params"] == nas.analytic_cost(nas.get_arch("poolformer_s12"), 64, 10).params


def test_profile_latency_records_the_protocol():
    r = run("profile", "poolformer_s12", "--resolution", "32", "--counter", "analytic", "--latency",
            "--min-seconds", "0.5", "--max-seconds", "1", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["ci_low_ms"] <= data["latency_ms"] <= data["ci_high_ms"] and data["latency_ms"] <= data["median_ms"]
    assert data["threads"] == 1 and data["batch"] == 1 and data["resolution"] == 32 and data["backend"] == "torch"
    assert data["versions"]["torch"] and data["device"].startswith("cpu") and data["runs"] >= 15


@pytest.mark.parametrize("args, needle", [
    (("profile", "poolformer_s13"), "poolformer_s12"),
    (("profile", "poolformer_s12", "--resolution", "abc"), "positive int"),
    (("space", "show", "nope"), "hybrid"),
    (("score", "poolformer_s12", "--proxy", "synflow", "--dataset", "cifar10:/nonexistent"), "not found"),
    (("score", "poolformer_s12", "--proxy", "nope"), "invalid choice"),
    (("nosuchcommand",), "invalid choice"),
])
def test_bad_input_is_one_line_and_exit_2(args, needle):
    r = run(*args)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], r.stderr
    assert "Traceback" not in r.stderr


def test_malformed_config_files(tmp_path):
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{not json")
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"stem": {"type": "patch", "width": 64, "params": {"nope": 1}}}))
    for path, needle in ((bad_json, "not valid JSON"), (wrong, "unknown field"), (tmp_path / "missing.json", "not found")):
        r = run("profile", str(path))
        assert r.returncode == 2 and needle in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
