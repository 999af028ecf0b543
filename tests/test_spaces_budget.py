"""Spaces are searchable under any budget: every sample is valid, ``Space.fit`` brings a sample
within [0.5, 1] x a MAC or params budget keeping its shape, ``smallest_cost`` says what a space
can reach, override keys are checked, and ``hybrid`` is a design space whose samples are
multi-stage hybrids."""
from __future__ import annotations

import statistics
from dataclasses import fields

import optuna
import pytest
import torch

import nas
import search_spaces
from nas.builder import network_stride
from nas.domains import Choice, Fixed, IntRange
from search_spaces import InvalidArchitecture, Space

optuna.logging.set_verbosity(optuna.logging.WARNING)
SPACES = [s.name for s in search_spaces.list_spaces()]


def _samples(space: Space, sampler: optuna.samplers.BaseSampler, n: int):
    """(trial, arch) for n samples; TPE is told the params so that it leaves its random start-up."""
    study = optuna.create_study(sampler=sampler)
    for _ in range(n):
        trial = study.ask()
        arch = space.sample(trial)  # raises InvalidArchitecture on an invalid sample
        study.tell(trial, float(nas.analytic_cost(arch).params))
        yield trial, arch


@pytest.mark.parametrize("space_name", SPACES)
def test_every_sample_is_valid_and_inside(space_name):
    space = search_spaces.get_space(space_name)
    n = 20 if space_name == "hybrid" else 40
    for sampler in (optuna.samplers.RandomSampler(seed=1), optuna.samplers.TPESampler(seed=1, n_startup_trials=10)):
        for trial, arch in _samples(space, sampler, n):
            assert nas.check_arch(arch) is None
            assert space.contains(arch) is None, space.contains(arch)
            assert space.freeze(trial.params) == arch  # derived values are derived again


@pytest.mark.parametrize("space_name", SPACES)
def test_fit_meets_budgets_keeping_the_shape(space_name):
    space = search_spaces.get_space(space_name)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=2))
    shapes = [space.sample(study.ask()) for _ in range(5)]
    cases = [(arch, budget, what) for arch in shapes
             for budget, what in ((1e8, "macs"), (1e9, "macs"), (1e10, "macs"), (5e6, "params"))]
    within = 0
    for arch, budget, what in cases:
        fitted = space.fit(arch, **{f"{what}_budget": budget})
        assert space.contains(fitted) is None, space.contains(fitted)
        assert fitted.layout == arch.layout and [s.block for s in fitted.stages] == [s.block for s in arch.stages]
        assert [s.stride for s in fitted.stages] == [s.stride for s in arch.stages]
        within += 0.5 * budget <= getattr(nas.analytic_cost(fitted), what) <= budget
    assert within >= 0.8 * len(cases), f"{space_name}: {within} of {len(cases)} fitted candidates within budget"


def test_fit_leaves_an_architecture_already_within_budget():
    space = search_spaces.get_space("coatnet_ctt")
    arch = nas.get_arch("coatnet_0")
    macs = nas.analytic_cost(arch).macs
    assert space.fit(arch, macs_budget=macs * 1.2) == arch
    assert space.fit(arch) == arch  # no budget, nothing to fit


def test_fit_scales_widths_up_and_down_and_both_budgets_hold():
    space = search_spaces.get_space("coatnet_ctt")
    arch = nas.get_arch("coatnet_0")
    small, large = space.fit(arch, macs_budget=3e8), space.fit(arch, macs_budget=2e10)
    assert [s.depth for s in small.stages] == [s.depth for s in arch.stages]
    assert all(a.width < b.width < c.width for a, b, c in zip(small.stages, arch.stages, large.stages))
    both = space.fit(arch, macs_budget=2e9, params_budget=5e6)
    cost = nas.analytic_cost(both)
    assert cost.macs <= 2e9 and cost.params <= 5e6 and max(cost.macs / 2e9, cost.params / 5e6) >= 0.5


def test_fit_refuses_a_budget_that_is_not_positive_and_an_architecture_outside():
    space = search_spaces.get_space("coatnet_ctt")
    with pytest.raises(nas.ConfigError, match="macs budget"):
        space.fit(nas.get_arch("coatnet_0"), macs_budget=0)
    with pytest.raises(InvalidArchitecture, match="outside"):
        space.fit(nas.get_arch("swin_t"), macs_budget=1e9)


@pytest.mark.parametrize("space_name", ["coatnet_ctt", "early_conv_vit", "lightvit"])
def test_smallest_cost_is_reached_and_bounds_every_preset(space_name):
    space = search_spaces.get_space(space_name)
    least = space.smallest_cost()
    for name in space.presets:
        cost = nas.analytic_cost(nas.get_arch(name))
        assert least.macs <= cost.macs and least.params <= cost.params
    assert least.macs < 1e8  # every space reaches the smallest budget the issue names
    arch = space.fit(nas.get_arch(space.presets[0]), macs_budget=least.macs / 2)
    assert nas.analytic_cost(arch).macs > least.macs / 2  # below the floor: the fit cannot meet it


@pytest.mark.parametrize("space_name", SPACES)
def test_every_builtin_space_passes_its_override_check(space_name):
    space = search_spaces.get_space(space_name)
    rebuilt = Space(**{f.name: getattr(space, f.name) for f in fields(Space)})
    assert rebuilt == space


@pytest.mark.parametrize("key", ["stages.*.mbconv.expnad_ratio", "stages.9.width", "stem.widht"])
def test_an_override_key_matching_no_dimension_is_refused(key):
    with pytest.raises(nas.ConfigError, match=key.replace("*", r"\*")):
        Space("typo", "a space with a misspelled override", overrides={key: Fixed(2.0)})


def test_a_misspelled_key_gets_a_suggestion():
    with pytest.raises(nas.ConfigError, match="did you mean 'stages.*.mbconv.expand_ratio'"):
        Space("typo", "", overrides={"stages.*.mbconv.expnad_ratio": Choice(2.0, 4.0)})


def test_hybrid_samples_are_multi_stage_hybrids():
    space = search_spaces.get_space("hybrid")
    archs = [arch for _, arch in _samples(space, optuna.samplers.RandomSampler(seed=3), 101)]
    assert statistics.median(len(a.stages) for a in archs) >= 3
    assert statistics.median(len(set(a.layout.split("-"))) for a in archs) >= 2
    # depths are log-uniform (a typical sample is not 50 blocks deep) and no stage goes past stride 32
    assert statistics.median(st.depth for a in archs for st in a.stages) <= 8
    assert max(network_stride(a) for a in archs) <= 32


def test_a_log_uniform_int_range_needs_step_one_and_a_positive_low():
    assert IntRange(1, 32, log=True).describe() == "int in [1, 32] log-uniform"
    for bad in (dict(low=0, high=8), dict(low=1, high=9, step=2)):
        with pytest.raises(ValueError, match="log-uniform IntRange needs step 1 and low >= 1"):
            IntRange(**bad, log=True)


def test_budget_note_names_what_is_scaled():
    note = search_spaces.get_space("coatnet_ctt").budget_note
    assert "stages.*.width" in note and "stages.*.depth" in note and "0.5 to 1 x the budget" in note


@pytest.mark.parametrize("space_name", ["hybrid", "mobileformer", "swin"])
def test_fitted_samples_build_and_run(space_name):
    space = search_spaces.get_space(space_name)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=4))
    arch = space.fit(space.sample(study.ask()), macs_budget=1e8)
    model = nas.build_model(arch, num_classes=5).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 64))
    assert out.shape == (1, 5) and torch.isfinite(out).all()
