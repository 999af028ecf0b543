"""`nas search` and the study it records: budgets, constraints, contents, recovery, storage, Ray."""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time

import optuna
import pytest

import nas
import studies.search as search_mod
from evaluators.train import TrainConfig
from studies.budgets import BudgetError, parse_duration_s, parse_latency_ms, parse_macs, parse_params
from studies.record import TrialRecord
from studies.results import front_frame, pareto_trials
from studies.storage import load_study
from studies.search import Search, SearchError, SearchSettings

TINY_TRAIN = TrainConfig(epochs=2, resolution=32, train_size=256, val_size=128, batch_size=64)


@pytest.mark.parametrize("text, macs", [("500mflop", 500_000_000), ("1gflop", 1_000_000_000),
                                        ("1.5GMAC", 1_500_000_000), ("800M", 800_000_000), ("2e9", 2_000_000_000),
                                        ("1 GFLOPs", 1_000_000_000)])
def test_parse_macs(text, macs):
    assert parse_macs(text) == macs


def test_parse_other_budgets():
    assert parse_latency_ms("20ms") == 20 and parse_latency_ms("0.5s") == 500
    assert parse_params("10m") == 10_000_000 and parse_params("500k") == 500_000
    assert parse_duration_s("30m") == 1800 and parse_duration_s("1h") == 3600


@pytest.mark.parametrize("bad", ["", "1 gigaflop", "-5mflop", "0gflop", "abc", "1.2.3g"])
def test_malformed_budgets(bad):
    with pytest.raises(BudgetError):
        parse_macs(bad)


def _settings(tmp_path, **kw) -> SearchSettings:
    base = dict(space="metaformer", macs_budget=parse_macs("300mflop"), trials=3, proxy="train", workers=0,
                storage=f"sqlite:///{tmp_path}/s.db", study_name="t", train=TINY_TRAIN, seed=1)
    base.update(kw)
    return SearchSettings(**base)


def test_over_budget_candidates_are_rejected_before_building(tmp_path, monkeypatch):
    # candidates are fitted to the budget first; without the fitting many samples are over it
    monkeypatch.setattr("search_spaces.base.Space.fit", lambda self, arch, *a, **k: arch)
    built = []
    real = nas.build_model

    def spy(arch, *a, **k):
        built.append(nas.analytic_cost(arch).macs)
        return real(arch, *a, **k)

    monkeypatch.setattr("evaluators.train.build_model", spy)
    study = Search(_settings(tmp_path)).run()
    budget = parse_macs("300mflop")
    assert built and all(m <= budget for m in built)
    infeasible = [t for t in study.trials if t.state.name == "COMPLETE" and not t.user_attrs["feasible"]]
    assert infeasible, "the metaformer space at 300M should sample over-budget candidates"
    for t in infeasible:
        assert t.user_attrs["macs"] > budget and "over budget" in TrialRecord.from_trial(t).reason
        assert t.constraints and max(t.constraints.values()) > 0
    feasible = [t for t in study.trials if t.user_attrs.get("feasible")]
    assert len(feasible) == 3 and all(max(t.constraints.values()) <= 0 for t in feasible)


def test_study_contents(tmp_path):
    Search(_settings(tmp_path, trials=2, latency_budget_ms=10_000.0)).run()
    study = load_study("t", f"sqlite:///{tmp_path}/s.db")
    assert study.metric_names == ["accuracy", "macs", "latency_ms"]
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE", "MINIMIZE"]
    done = [t for t in study.trials if t.user_attrs.get("feasible")]
    assert len(done) == 2
    for t in done:
        a = t.user_attrs
        arch = nas.ArchConfig.from_json(a["arch"])
        assert a["arch_id"] == arch.arch_id and a["layout"] == arch.layout
        cost = nas.analytic_cost(arch)
        assert (a["params"], a["macs"]) == (cost.params, cost.macs)
        assert a["latency_ms"] > 0 and len(a["history"]) == 2
        assert 0.0 <= t.values[0] <= 1.0 and t.values[1] == a["macs"] and t.values[2] == a["latency_ms"]
    assert len(front_frame(study)) == len(pareto_trials(study)) >= 1


def test_presets_that_fit_are_enqueued_first(tmp_path):
    study = Search(_settings(tmp_path, macs_budget=parse_macs("2gflop"), proxy="params", trials=3,
                                presets=1)).run()
    first = study.trials[0]
    assert first.user_attrs.get("preset") == "poolformer_s12"
    assert nas.ArchConfig.from_json(first.user_attrs["arch"]) == nas.get_arch("poolformer_s12")


def test_a_failing_trial_does_not_stop_the_search(tmp_path, monkeypatch):
    from studies.worker import CandidateWorker

    real = CandidateWorker.run
    calls = []

    def flaky(self, key, task):
        calls.append(key)
        if len(calls) == 1:
            raise RuntimeError("DefaultCPUAllocator: not enough memory")
        return real(self, key, task)

    monkeypatch.setattr(CandidateWorker, "run", flaky)
    study = Search(_settings(tmp_path, trials=2)).run()
    failed = [t for t in study.trials if t.state.name == "FAIL" and not t.user_attrs.get("invalid")]
    assert len(failed) == 1 and "not enough memory" in TrialRecord.from_trial(failed[0]).reason
    assert sum(bool(t.user_attrs.get("feasible")) for t in study.trials) == 2


def test_resuming_a_finished_study_adds_nothing(tmp_path):
    s = _settings(tmp_path, proxy="params", trials=4)
    first = len(Search(s).run().trials)
    assert len(Search(s).run().trials) == first
    more = Search(_settings(tmp_path, proxy="params", trials=6)).run()
    assert sum(bool(t.user_attrs.get("feasible")) for t in more.trials) == 6


def test_trials_of_dead_drivers_are_failed_and_run_again(tmp_path, monkeypatch):
    import studies.search
    monkeypatch.setattr(studies.search, "HEARTBEAT_S", 1)  # a trial naming no driver is old after 3 s
    s = _settings(tmp_path, proxy="params", trials=2)
    study = Search(s).run()
    alive = study.ask()
    alive.set_user_attr("driver", f"{socket.gethostname()}:{os.getpid()}")  # this process: left alone
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a process of this machine that no longer runs
    dead = study.ask()
    dead.set_user_attr("driver", f"{socket.gethostname()}:{gone.pid}")
    # killed between asking and naming itself (or still to name itself): left alone while young, so the
    # search waits before ending until it is old enough to reap
    just_asked = study.ask()
    search = Search(dataclasses.replace(s, trials=3))
    start = time.monotonic()
    study = search.run()
    by_number = {t.number: t for t in study.trials}
    assert search.resumed and search.reaped == 2 and time.monotonic() - start < 3 * 1 + 10
    assert by_number[alive.number].state.name == "RUNNING"
    for t in (dead, just_asked):
        assert by_number[t.number].state.name == "FAIL" and "killed" in TrialRecord.from_trial(by_number[t.number]).reason


def test_resume_with_other_settings_is_refused(tmp_path):
    Search(_settings(tmp_path, proxy="params", trials=1)).run()
    with pytest.raises(SearchError, match="other settings"):
        Search(_settings(tmp_path, proxy="params", trials=1, macs_budget=parse_macs("1gflop"))).run()


def _cli(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "nas_cli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kw)


def test_resume_after_sigkill(tmp_path):
    storage = f"sqlite:///{tmp_path}/k.db"
    args = ["search", "--space", "metaformer", "--budget", "300mflop", "--trials", "4", "--workers", "0",
            "--epochs", "2", "--train-size", "512", "--val-size", "128", "--storage", storage, "--study", "k"]
    proc = _cli(*args)
    # wait until one trial is complete and another is running, then kill -9
    deadline = time.time() + 240
    while time.time() < deadline:
        time.sleep(1)
        try:
            study = optuna.load_study(study_name="k", storage=storage)
        except KeyError:
            continue
        training = [t for t in study.trials if t.state.name == "RUNNING" and "arch" in t.user_attrs]
        if training and sum(bool(t.user_attrs.get("feasible")) for t in study.trials) >= 1:
            break
    else:
        proc.kill()
        pytest.fail("the search never reached a complete + a running trial")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    study = optuna.load_study(study_name="k", storage=storage)  # as the kill left it
    completed_before = {t.number for t in study.trials if t.user_attrs.get("feasible")}
    running = [t for t in study.trials if t.state.name == "RUNNING"]  # training, or still being sampled
    r = subprocess.run([sys.executable, "-m", "nas_cli", *args], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "resumed" in r.stderr
    study = optuna.load_study(study_name="k", storage=storage)
    by_number = {t.number: t for t in study.trials}
    assert completed_before <= {t.number for t in study.trials if t.user_attrs.get("feasible")}  # nothing lost
    for t in running:
        assert by_number[t.number].state.name == "FAIL"
        assert "killed" in TrialRecord.from_trial(by_number[t.number]).reason
        if t.params:  # a candidate that was being evaluated runs again
            assert any(x.user_attrs.get("retry_of") == t.number for x in study.trials)
    assert sum(bool(t.user_attrs.get("feasible")) for t in study.trials) == 4
    assert not [t for t in study.trials if t.state.name == "RUNNING"]


def test_worker_threads(tmp_path):
    assert _settings(tmp_path, worker_threads=3).threads_per_worker == 3
    assert _settings(tmp_path, workers=2).threads_per_worker == max(1, os.cpu_count() // 2)


def test_ray_with_two_workers(tmp_path):
    study = Search(_settings(tmp_path, workers=2, trials=2, proxy="synflow")).run()
    assert sum(bool(t.user_attrs.get("feasible")) for t in study.trials) == 2


@pytest.mark.skipif(not os.environ.get("NAS_TEST_POSTGRES_URL"), reason="set NAS_TEST_POSTGRES_URL (.ci/run does)")
def test_postgresql_storage(tmp_path):
    url = os.environ["NAS_TEST_POSTGRES_URL"]
    name = f"pg-{os.getpid()}-{int(time.time())}"
    study = Search(_settings(tmp_path, storage=url, study_name=name, proxy="params", trials=3)).run()
    assert sum(bool(t.user_attrs.get("feasible")) for t in load_study(name, url).trials) == 3
    del study


@pytest.mark.parametrize("args, needle", [
    (["--space", "nope", "--budget", "1gflop"], "unknown search space"),
    (["--space", "metaformer", "--budget", "1 gigaflop"], "cannot read MAC budget"),
    (["--space", "metaformer", "--trials", "0"], "--trials"),
    (["--space", "metaformer", "--storage", "notaurl"], "not a database URL"),
    (["--space", "metaformer", "--dataset", "cifar10:/nonexistent"], "not found"),
])
def test_search_bad_input(tmp_path, args, needle):
    r = subprocess.run([sys.executable, "-m", "nas_cli", "search", "--proxy", "train", *args],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    lines = [line for line in r.stderr.strip().splitlines() if line.startswith("nas: error")]
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in r.stderr, r.stderr


def test_studies_and_pareto_commands(tmp_path):
    storage = f"sqlite:///{tmp_path}/s.db"
    Search(_settings(tmp_path, proxy="params", trials=3)).run()
    r = subprocess.run([sys.executable, "-m", "nas_cli", "studies", "--storage", storage, "--json"], capture_output=True,
                       text=True)
    assert r.returncode == 0 and json.loads(r.stdout)[0]["study"] == "t"
    r = subprocess.run([sys.executable, "-m", "nas_cli", "pareto", "t", "--storage", storage, "--csv"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("trial,arch_id,layout")
    r = subprocess.run([sys.executable, "-m", "nas_cli", "pareto", "nope", "--storage", storage], capture_output=True,
                       text=True)
    assert r.returncode == 2 and "no study 'nope'" in r.stderr


def test_the_front_of_a_study_whose_trials_have_not_finished_is_empty():
    """A search stopped by --timeout before any candidate finished prints an empty front (its trials
    have no values, so there is no metric column to sort by)."""
    from optuna.trial import TrialState

    from studies.results import format_front

    study = optuna.create_study(directions=["maximize", "minimize"])
    study.tell(study.ask(), state=TrialState.FAIL)
    study.ask()  # still running
    front = front_frame(study)
    assert front.empty and format_front(front, "accuracy") == "(no feasible trial yet)"
