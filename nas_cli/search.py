"""``nas search``: the constrained multi-objective search."""
from __future__ import annotations

import argparse
import sys

from nas_cli.common import Command, UsageError, add_storage, fraction, positive, progress


class Search(Command):
    name, help = "search", "multi-objective, constrained architecture search"
    uses_studies = True
    description = ("Search a space for the best proxy score at the fewest MACs (and lowest latency with "
                   "--latency-budget). Budgets are hard constraints checked before any model is built. FLOPs "
                   "budgets are MACs (multiply-accumulates), at 224x224 (MobileViT 256). Re-running the same "
                   "command resumes the study.")

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        from evaluators.base import SCORE, list_evaluators
        from studies.search import SAMPLERS

        proxies = list_evaluators(SCORE)
        p.add_argument("--space", required=True, help="search space (see `nas spaces`)")
        p.add_argument("--budget", help="MAC budget, e.g. 500mflop, 1gflop, 1.5GMAC (FLOPs here are MACs)")
        p.add_argument("--latency-budget", help="latency budget per image, e.g. 20ms: batch 1 on this machine with "
                       "each worker's threads, the 10th percentile of timed runs (as `nas profile --latency`)")
        p.add_argument("--params-budget", help="parameter budget, e.g. 10m, 500k")
        p.add_argument("--trials", type=int, default=20, help="candidates evaluated in total, trained to the end or "
                       "stopped early, resumed runs included (over-budget samples and repeats of an evaluated "
                       "architecture do not count; default 20)")
        p.add_argument("--timeout", help="stop after this long, e.g. 30m, 1h (checked while sampling and between "
                       "epochs)")
        p.add_argument("--candidate-timeout", help="fail a candidate still unfinished after this long, e.g. 10m "
                       "(checked between epochs; default: no limit)")
        p.add_argument("--proxy", choices=[e.name for e in proxies], default="train",
                       help="the objective to maximise (default train): "
                            + "; ".join(f"{e.name}: {e.description}" for e in proxies))
        p.add_argument("--dataset", default="fashion-mnist", help="fashion-mnist (default), cifar10:PATH or folder:PATH")
        p.add_argument("--epochs", type=positive(int), default=2, help="proxy-training epochs (default 2)")
        p.add_argument("--resolution", type=positive(int), default=32, help="proxy-training input size (default 32)")
        p.add_argument("--train-size", type=positive(int), default=5000,
                       help="training images per candidate (default 5000)")
        p.add_argument("--val-size", type=positive(int), default=1000,
                       help="validation images, held out from the training split (default 1000)")
        p.add_argument("--width-mult", type=fraction, default=1.0,
                       help="proxy-train a copy of each candidate with its widths scaled by this, in (0, 1]: faster, "
                            "ranks approximately (default 1); MACs and params are always the real architecture's")
        p.add_argument("--sampler", choices=SAMPLERS, default="tpe", help="Optuna sampler (default tpe)")
        p.add_argument("--workers", type=int, default=None,
                       help="Ray workers (default: one per GPU of the Ray cluster, else one per CPU); 0 evaluates in "
                            "this process")
        p.add_argument("--gpus-per-worker", type=float, default=None,
                       help="GPU share of each Ray worker, in [0, 1] (default 1 when the cluster has GPUs; 0.5 puts two "
                            "workers on a GPU; 0 keeps workers on CPUs)")
        p.add_argument("--worker-threads", type=positive(int), default=None,
                       help="torch threads of each worker (default: the machine's cores divided among the workers)")
        p.add_argument("--address", help="HOST:PORT of a running Ray cluster (`auto`: the one on this machine); "
                       "default: a private local cluster for this search")
        add_storage(p)
        p.add_argument("--study", help="study name (default: from space, proxy and budgets)")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--supernet", metavar="FILE",
                       help="--proxy supernet: the `nas supernet train` file that scores candidates (its space and "
                            "budget must cover the search's)")
        p.add_argument("--verify", type=int, default=0, metavar="K",
                       help="--proxy supernet: train the best K of the supernet front stand-alone with the default "
                            "proxy and report the front of those (both scores are kept)")
        p.add_argument("--presets", type=int, default=None,
                       help="seed a new study with at most this many of the space's published architectures that "
                            "fit the budgets, spread over their MACs (default: a quarter of --trials; 0: none)")

    def run(self, args: argparse.Namespace) -> int:
        import dataclasses

        from evaluators.base import get_evaluator
        from evaluators.data import DatasetError, load_dataset
        from studies.budgets import BudgetError, parse_duration_s, parse_latency_ms, parse_macs, parse_params
        from studies.results import format_front, front_frame
        from studies.search import Search, SearchSettings
        from studies.storage import DEFAULT_STORAGE

        try:
            macs = parse_macs(args.budget) if args.budget else None
            latency = parse_latency_ms(args.latency_budget) if args.latency_budget else None
            params = parse_params(args.params_budget) if args.params_budget else None
            timeout = parse_duration_s(args.timeout) if args.timeout else None
            candidate_timeout = parse_duration_s(args.candidate_timeout) if args.candidate_timeout else None
        except BudgetError as e:
            raise UsageError(str(e)) from None
        if args.trials < 1:
            raise UsageError(f"--trials must be at least 1, got {args.trials}")
        if args.workers is not None and args.workers < 0:
            raise UsageError(f"--workers must be >= 0, got {args.workers}")
        if not get_evaluator(args.proxy).instant:
            try:
                load_dataset(args.dataset)  # fail before starting anything
            except DatasetError as e:
                raise UsageError(str(e)) from None
        base = SearchSettings(space=args.space)
        train = dataclasses.replace(base.train, epochs=args.epochs, resolution=args.resolution,
                                    train_size=args.train_size, val_size=args.val_size, width_mult=args.width_mult)
        settings = SearchSettings(
            space=args.space, macs_budget=macs, latency_budget_ms=latency, params_budget=params, trials=args.trials,
            timeout_s=timeout, candidate_timeout_s=candidate_timeout, proxy=args.proxy, dataset=args.dataset, sampler=args.sampler,
            workers=args.workers, worker_threads=args.worker_threads, gpus_per_worker=args.gpus_per_worker,
            address=args.address, storage=args.storage, study_name=args.study, seed=args.seed, presets=args.presets,
            train=train, supernet=args.supernet, verify=args.verify)
        if args.verify < 0:
            raise UsageError(f"--verify must be 0 or more, got {args.verify}")
        bar = progress(args.trials, "trial")

        def show(p) -> None:
            bar.n = min(p.complete, args.trials)
            bar.set_postfix_str(f"feasible {p.feasible}, over budget {p.infeasible}, stopped {p.stopped}, "
                                f"failed {p.failed}, repeats {p.repeated}, front {p.front}", refresh=True)

        search = Search(settings, on_progress=show,
                        on_pool=lambda where: print(f"search: candidates evaluated by {where}", file=sys.stderr))
        search.open()
        print(f"search: study {search.name!r} in {settings.storage}; space {settings.space}; proxy {settings.proxy}; "
              f"{settings.trials} trials", file=sys.stderr)
        study = search.run()
        bar.close()
        if search.resumed:
            print(f"search: resumed the existing study; {search.reaped} interrupted trial(s) marked failed and "
                  "queued again", file=sys.stderr)
        if search.seeded:
            print(f"search: seeded with the published architectures that fit: {', '.join(search.seeded)}",
                  file=sys.stderr)
        p = search.progress
        print(f"\nPareto front of {search.name} ({p.front} of {p.feasible} feasible trials; {p.infeasible} over "
              f"budget, {p.stopped} stopped early, {p.failed} failed, {p.invalid} invalid samples, {p.repeated} "
              "repeats not evaluated again):\n")
        print(format_front(front_frame(study), settings.metric_names[0]))
        if settings.verify:
            from studies.results import verified_front

            print(f"\nverifying the best {settings.verify} of the front by stand-alone proxy training "
                  f"({settings.train.epochs} epochs of {settings.train.train_size} images at "
                  f"{settings.train.resolution} px)...", file=sys.stderr)
            search.verify(study, lambda number, acc: print(f"  trial {number}: stand-alone accuracy {acc:.4f}",
                                                           file=sys.stderr))
            print("\nFinal front (stand-alone proxy accuracy of the verified members, with their inherited accuracy):\n")
            print(format_front(verified_front(front_frame(study)), settings.metric_names[0]))
        storage = "" if settings.storage == DEFAULT_STORAGE else f" --storage {settings.storage}"
        print("\nnext:\n" + "\n".join(f"  {n}" for n in (
            f"nas pareto {search.name}{storage} --csv", f"nas dashboard {search.name}{storage} -o {search.name}.html",
            f"nas export {search.name}{storage} -o exported/{search.name}")))
        return 0
