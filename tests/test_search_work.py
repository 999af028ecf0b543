"""A search that wastes nothing and always ends: Pareto-aware stopping, no repeated work (across
resumes and concurrent drivers), a timeout honoured while asking, and a stop after failures."""
from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections import Counter

import pytest

from studies.record import TrialRecord
from studies.results import trials_frame
from studies.search import Search, SearchError, SearchSettings
from studies.stopping import ParetoHalving, median_keeps, pareto_levels
from studies.storage import load_study


# ---------------------------------------------------------------------------- stopping
def test_pareto_levels():
    points = [(0.9, 10), (0.8, 5), (0.7, 7), (0.6, 1), (0.5, 9)]
    assert pareto_levels(points) == [0, 0, 1, 0, 2]


def test_halving_keeps_the_cheapest_front_member_that_the_median_rule_stops():
    rng = random.Random(0)
    rule = ParetoHalving(eta=3)
    peers = []
    for _ in range(12):  # a seeded toy study: accuracy grows with MACs, plus noise
        macs = rng.uniform(300e6, 1e9)
        accuracy = 0.5 + 0.3 * macs / 1e9 + rng.uniform(-0.03, 0.03)
        rule.add(1, accuracy, macs)
        peers.append(accuracy)
    cheapest = (0.45, 100e6)  # less accurate than every peer, and cheaper than all of them
    assert not median_keeps(peers, cheapest[0])
    assert rule.keeps(1, *cheapest)
    # a dominated candidate in the worst third goes, and few peers keep everything
    assert not rule.keeps(1, 0.4, 950e6)
    assert ParetoHalving(eta=3).keeps(1, 0.0, 1e12)


def test_halving_rungs_are_powers_of_eta():
    rule = ParetoHalving(eta=3)
    assert [s for s in range(1, 30) if rule.is_rung(s)] == [1, 3, 9, 27]
    for step in (2, 3):
        for k in range(6):
            rule.add(step, 0.9 - 0.01 * k, 100e6)
    assert rule.keeps(2, 0.1, 1e9)  # between rungs everyone goes on
    assert not rule.keeps(3, 0.1, 1e9)


def _settings(tmp_path, **kw) -> SearchSettings:
    base = dict(space="metaformer", macs_budget=2 * 10**9, proxy="params", trials=8, workers=0,
                storage=f"sqlite:///{tmp_path}/s.db", study_name="s", sampler="random")
    return SearchSettings(**{**base, **kw})


def _evaluated(study) -> list[TrialRecord]:
    records = [TrialRecord.from_trial(t) for t in study.trials]
    return [r for r in records if r.feasible and not r.provenance.duplicate]


# ---------------------------------------------------------------------------- seeding
@pytest.mark.parametrize("presets, seeded", [(None, ["mobileformer_214m", "mobileformer_26m"]),
                                             (3, ["mobileformer_214m", "mobileformer_96m", "mobileformer_26m"]),
                                             (0, [])])
def test_a_new_study_is_seeded_with_a_few_presets_spread_over_macs(tmp_path, presets, seeded):
    """Five Mobile-Former variants fit 250M MACs; by default a quarter of the trials (2 of 8) are
    seeded, the costliest and the cheapest, and the rest is sampled."""
    search = Search(_settings(tmp_path, space="mobileformer", macs_budget=250 * 10**6, presets=presets))
    study = search.run()
    assert search.seeded == seeded
    assert [t.user_attrs.get("preset") for t in study.trials[:len(seeded)]] == seeded
    assert sum(1 for t in study.trials if t.user_attrs.get("preset")) == len(seeded)


def test_a_negative_preset_count_is_refused(tmp_path):
    with pytest.raises(SearchError, match="--presets must be 0 or more, got -1"):
        Search(_settings(tmp_path, presets=-1))


# ---------------------------------------------------------------------------- no repeated work
def test_a_resumed_random_study_repeats_nothing(tmp_path):
    Search(_settings(tmp_path)).run()
    search = Search(_settings(tmp_path, trials=16))
    study = search.run()
    evaluated = _evaluated(study)
    assert len(evaluated) == 16 and len({r.arch_id for r in evaluated}) == 16
    # the sampler of the resumed run did not replay the first run's seed
    assert search.progress.repeated == 0


def test_a_repeated_sample_reuses_the_result_and_does_not_count(tmp_path):
    search = Search(_settings(tmp_path, trials=4))
    study = search.run()
    first = next(t for t in study.trials if t.user_attrs.get("feasible"))
    study.enqueue_trial(first.params)  # the sampler proposes an evaluated architecture again
    search = Search(_settings(tmp_path, trials=5))
    study = search.run()
    repeats = [t for t in study.trials if t.user_attrs.get("duplicate")]
    assert len(repeats) == 1 and repeats[0].values == first.values
    assert len(_evaluated(study)) == 5


def _drivers(tmp_path, storage: str, trials: int) -> None:
    args = [sys.executable, "-m", "nas_cli", "search", "--space", "coatnet_ctt", "--budget", "1gflop", "--proxy",
            "synflow", "--trials", str(trials), "--workers", "0", "--storage", storage, "--study", "two"]
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    study = load_study("two", storage)
    evaluated = _evaluated(study)
    counts = Counter(r.arch_id for r in evaluated)
    assert max(counts.values()) == 1, "an architecture was evaluated twice"
    assert trials <= len(evaluated) <= trials + 1  # both may start the last one at once
    assert len({r.provenance.driver for r in evaluated}) == 2  # both drivers took part


def test_two_drivers_on_one_sqlite_study(tmp_path):
    _drivers(tmp_path, f"sqlite:///{tmp_path}/two.db", 8)


@pytest.mark.skipif(not os.environ.get("NAS_TEST_POSTGRES_URL"), reason="no PostgreSQL server (NAS_TEST_POSTGRES_URL)")
def test_two_drivers_on_one_postgresql_study(tmp_path):
    import sqlalchemy as sa

    url = os.environ["NAS_TEST_POSTGRES_URL"]
    engine = sa.create_engine(url)
    db = f"nas_two_{os.getpid()}"
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text(f"DROP DATABASE IF EXISTS {db}"))
        conn.execute(sa.text(f"CREATE DATABASE {db}"))
    _drivers(tmp_path, str(sa.engine.make_url(url).set(database=db)), 8)


# ---------------------------------------------------------------------------- bounded
def test_the_timeout_is_honoured_while_asking_and_training(tmp_path):
    start = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "nas_cli", "search", "--space", "metaformer", "--budget", "300mflop",
                        "--trials", "100000", "--timeout", "10s", "--workers", "0", "--train-size", "256",
                        "--val-size", "64", "--storage", f"sqlite:///{tmp_path}/t.db"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - start < 30


def test_candidates_that_all_fail_end_the_search_in_one_line(tmp_path):
    # one training image: batch norm cannot train on a batch of one, so every candidate fails
    r = subprocess.run([sys.executable, "-m", "nas_cli", "search", "--space", "efficientvit", "--budget", "2gflop",
                        "--trials", "100", "--workers", "0", "--train-size", "1", "--val-size", "8",
                        "--storage", f"sqlite:///{tmp_path}/f.db", "--study", "f"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2
    lines = [line for line in r.stderr.strip().splitlines() if line.startswith("nas: error:")]
    assert len(lines) == 1 and "20 candidates failed in a row" in lines[0] and "Traceback" not in r.stderr
    study = load_study("f", f"sqlite:///{tmp_path}/f.db")
    assert not [t for t in study.trials if t.state.name == "RUNNING"]


def test_a_dead_driver_on_another_machine_is_found_by_its_stale_heartbeat(tmp_path, monkeypatch):
    import search_spaces
    import studies.search as search_mod
    from studies.storage import open_storage

    monkeypatch.setattr(search_mod, "HEARTBEAT_S", 1)  # stale after 3 s
    s = _settings(tmp_path, trials=2)
    study = Search(s).run()
    storage = open_storage(s.storage, 1)
    orphan = study.ask()
    orphan.set_user_attr("driver", "another-machine:4242")  # its process cannot be checked from here
    search_spaces.get_space("metaformer").sample(orphan)  # it had sampled its candidate
    storage.record_heartbeat(storage.get_trial_id_from_study_id_trial_number(
        storage.get_study_id_from_name("s"), orphan.number))
    alive = study.ask()
    alive.set_user_attr("driver", "another-machine:4343")  # no heartbeat yet: nothing says it died
    time.sleep(4.5)  # past the 3 s grace period by more than SQLite's whole-second timestamps can hide
    search = Search(_settings(tmp_path, trials=3))
    study = search.run()
    by_number = {t.number: t for t in study.trials}
    assert search.reaped == 1 and by_number[orphan.number].state.name == "FAIL"
    assert [t.user_attrs.get("retry_of") for t in study.trials].count(orphan.number) == 1
    frame = trials_frame(study).set_index("trial")
    assert "killed" in frame.loc[orphan.number, "reason"]
    assert by_number[alive.number].state.name == "RUNNING"
