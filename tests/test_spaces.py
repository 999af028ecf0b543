"""Every space contains its presets with an exact round trip; samples of every space build and
run; the space API's failure modes name the rule broken."""
from __future__ import annotations

import optuna
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nas
import search_spaces
from search_spaces import InvalidArchitecture

optuna.logging.set_verbosity(optuna.logging.WARNING)
SPACES = [s.name for s in search_spaces.list_spaces()]


def test_hybrid_contains_every_preset():
    assert set(search_spaces.get_space("hybrid").presets) == set(nas.list_archs())


@pytest.mark.parametrize("space_name", SPACES)
def test_presets_inside_with_exact_round_trip(space_name):
    space = search_spaces.get_space(space_name)
    assert space.presets, f"space {space_name} lists no presets"
    for name in space.presets:
        arch = nas.get_arch(name)
        assert space.contains(arch) is None, (name, space.contains(arch))
        values = space.encode(arch)
        assert space.freeze(values) == arch
        assert all(not isinstance(v, (tuple, list, dict)) for v in values.values()), "values must be scalars"


@pytest.mark.parametrize("space_name", SPACES)
def test_presets_seed_an_optuna_study_exactly(space_name):
    space = search_spaces.get_space(space_name)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    arch = nas.get_arch(space.presets[0])
    study.enqueue_trial(space.encode(arch))
    assert space.sample(study.ask()) == arch


# the broad hybrid space samples large models; keep its forward passes affordable all the same
MAX_MACS_AT_64 = {"hybrid": 6e9}


def _run_size(arch) -> int:
    """64 px, or more for a network that downsamples 64x or more (a 256 px design), so that its
    last strided layers still see a map at least 2x2."""
    return max(64, 2 * nas.network_stride(arch))


def _sample_valid(space, seed: int, tries: int = 200):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    for _ in range(tries):
        trial = study.ask()
        try:
            arch = space.sample(trial)
        except InvalidArchitecture:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            continue
        if nas.analytic_cost(arch, _run_size(arch)).macs < MAX_MACS_AT_64.get(space.name, 3e8):
            return arch, trial
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
    return None, None


@pytest.mark.parametrize("space_name", SPACES)
@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000))
def test_samples_build_and_run_at_64(space_name, seed):
    space = search_spaces.get_space(space_name)
    arch, trial = _sample_valid(space, seed)
    if arch is None:
        pytest.skip("no cheap valid sample in 200 tries")  # counted below: must be rare
    assert space.contains(arch) is None
    assert space.freeze(space.encode(arch)) == arch
    assert space.freeze(trial.params) == arch  # define-by-run suggested exactly the active dimensions
    model = nas.build_model(arch, num_classes=7).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, _run_size(arch), _run_size(arch)))
    assert out.shape == (2, 7) and torch.isfinite(out).all()


@pytest.mark.parametrize("space_name", SPACES)
def test_most_samples_are_valid_and_cheap_enough(space_name):
    space = search_spaces.get_space(space_name)
    found = sum(_sample_valid(space, seed, tries=50)[0] is not None for seed in range(3))
    assert found >= 2, f"{space_name}: valid, cheap samples are too rare"


def test_contains_names_the_offending_dimension():
    space = search_spaces.get_space("metaformer")
    reason = space.contains(nas.get_arch("efficientvit_b1"))
    assert reason and ("outside" in reason or "no value" in reason)


def test_freeze_rejects_bad_values():
    space = search_spaces.get_space("metaformer")
    values = space.encode(nas.get_arch("poolformer_s12"))
    with pytest.raises(InvalidArchitecture, match="stages.1.depth"):
        space.freeze({**values, "stages.1.depth": 0})
    with pytest.raises(InvalidArchitecture, match="inactive or unknown"):
        space.freeze({**values, "stages.9.depth": 2})
    missing = dict(values)
    del missing["stages.1.width"]
    with pytest.raises(InvalidArchitecture, match="stages.1.width"):
        space.freeze(missing)


def test_unknown_space_lists_choices():
    with pytest.raises(nas.ConfigError, match="hybrid"):
        search_spaces.get_space("nope")


@pytest.mark.parametrize("space_name", SPACES)
def test_dimensions_are_listed(space_name):
    dims = search_spaces.get_space(space_name).dimensions()
    labels = [label for label, _, _ in dims]
    assert "stem.type" in labels and any(label.startswith("stages.0.") for label in labels)
