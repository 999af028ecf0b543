"""How often a space's candidates are valid and within a MAC budget, with random and TPE sampling.

    python benchmarks/space_sampling.py [--samples 40] [--budgets 0.3 1 4] [--spaces hybrid coatnet_ctt] [--seed 0]

For every space, budget (GMACs) and sampler, a fresh Optuna study asks ``--samples`` candidates;
each is sampled (``Space.sample``) and fitted to the budget (``Space.fit``), then counted with the
analytic counter at its design resolution and 1000 classes. A candidate is *within* when it is
valid and costs 0.5 to 1 x the budget. TPE is told, as a ``--proxy params`` search would tell it,
the parameter count of candidates within budget and a failure for the others, so it learns from
what the driver sees. The time is the CPU time of sampling plus fitting per candidate (Optuna's
ask included; CPU time, so that other work on the machine does not inflate it).
Prints a Markdown table; the default run takes a few minutes on one core.
"""
from __future__ import annotations

import argparse
import time

import optuna

import nas
import search_spaces
from search_spaces import InvalidArchitecture


def measure(space: search_spaces.Space, sampler: optuna.samplers.BaseSampler, budget: float,
            samples: int) -> tuple[int, int, float]:
    """(valid, within budget, CPU seconds per candidate) over ``samples`` candidates of one study."""
    study = optuna.create_study(direction="maximize", sampler=sampler)
    valid = within = 0
    seconds = 0.0
    for _ in range(samples):
        start = time.process_time()
        trial = study.ask()
        try:
            arch = space.fit(space.sample(trial), macs_budget=budget)
        except InvalidArchitecture:
            seconds += time.process_time() - start
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            continue
        seconds += time.process_time() - start
        valid += 1
        cost = nas.analytic_cost(arch)
        if 0.5 * budget <= cost.macs <= budget:
            within += 1
            study.tell(trial, float(cost.params))
        else:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
    return valid, within, seconds / samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=40, help="candidates per space, budget and sampler")
    parser.add_argument("--budgets", type=float, nargs="+", default=[0.3, 1.0, 4.0], help="MAC budgets in GMACs")
    parser.add_argument("--spaces", nargs="+", default=[s.name for s in search_spaces.list_spaces()])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    print(f"{args.samples} candidates per cell; within = valid and 0.5-1 x the budget after Space.fit\n")
    print("| space | budget | random: valid / within | random CPU ms | TPE: valid / within | TPE CPU ms |")
    print("|---|---|---|---|---|---|")
    totals = {"random": [0, 0], "tpe": [0, 0]}
    for name in args.spaces:
        space = search_spaces.get_space(name)
        for giga in args.budgets:
            cells = []
            for kind, sampler in (("random", optuna.samplers.RandomSampler(seed=args.seed)),
                                  ("tpe", optuna.samplers.TPESampler(seed=args.seed))):
                valid, within, seconds = measure(space, sampler, giga * 1e9, args.samples)
                totals[kind][0] += within
                totals[kind][1] += args.samples
                cells += [f"{valid / args.samples:.0%} / {within / args.samples:.0%}", f"{seconds * 1e3:.0f}"]
            print(f"| {name} | {giga:g} GMAC | " + " | ".join(cells) + " |", flush=True)
    print("\nwithin budget overall: " + ", ".join(f"{kind} {w / n:.1%} of {n}" for kind, (w, n) in totals.items()))


if __name__ == "__main__":
    main()
