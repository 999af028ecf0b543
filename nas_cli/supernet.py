"""``nas supernet train``: train a weight-sharing supernet over a space, resumably."""
from __future__ import annotations

import argparse
from pathlib import Path

from nas_cli.common import Command, Parser, UsageError, dumps, positive, progress


class SupernetCommand(Command):
    name, help = "supernet", "train a weight-sharing supernet that scores any point of a space in about a second"
    description = ("One training ranks thousands of points: every point of the space within the budget takes its "
                   "weights as slices of the supernet's tensors. `nas supernet train` trains it with the sandwich rule "
                   "(the largest, the smallest and random points within the budget on each minibatch, the others "
                   "distilled from the largest); `nas score ARCH --proxy supernet --supernet FILE` then scores a point "
                   "with inherited weights, and `nas search --proxy supernet --supernet FILE` searches with it. A "
                   "space may hold its supernet to a sub-space (hybrid: every block type in a four-stage skeleton; "
                   "`nas space show NAME` lists it): training and supernet searches draw from that.")

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        from studies.supernet import SupernetSettings

        d = SupernetSettings(space="")
        sub = p.add_subparsers(dest="action", metavar="ACTION", parser_class=Parser)
        t = sub.add_parser("train", help="train a supernet over a space (resumes an unfinished FILE)",
                           description=self.description)
        t.add_argument("--space", required=True, help="the search space (`nas spaces` lists them)")
        t.add_argument("--budget", default="1gflop",
                       help="MACs budget of its points at the design resolution (default 1gflop; FLOPs = MACs)")
        t.add_argument("-o", "--output", metavar="FILE", required=True,
                       help="the supernet file: written after every epoch; an unfinished one is resumed")
        t.add_argument("--dataset", default=d.dataset, help="fashion-mnist (default), cifar10:PATH or folder:PATH")
        t.add_argument("--epochs", type=positive(int), default=d.epochs, help=f"default {d.epochs}")
        t.add_argument("--resolution", type=positive(int), default=d.resolution, help=f"default {d.resolution}")
        t.add_argument("--batch-size", type=positive(int), default=d.batch_size, help=f"default {d.batch_size}")
        t.add_argument("--train-size", type=int, default=d.train_size,
                       help=f"training images (default {d.train_size}; 0 = all)")
        t.add_argument("--val-size", type=int, default=d.val_size,
                       help=f"validation images held out of the training split (default {d.val_size})")
        t.add_argument("--lr", type=positive(float), default=d.lr, help=f"peak AdamW learning rate (default {d.lr:g})")
        t.add_argument("--random-points", type=int, default=d.random_points,
                       help=f"random points per step besides the largest and smallest (default {d.random_points})")
        t.add_argument("--seed", type=int, default=d.seed)
        t.add_argument("--threads", type=positive(int), default=None, help="torch threads (default: torch's)")
        t.add_argument("--json", action="store_true", help="print the training record as JSON at the end")
        self._parser = p

    def run(self, args: argparse.Namespace) -> int:
        if args.action is None:
            self._parser.print_help()
            return 2
        from evaluators.data import DatasetError
        from studies.budgets import BudgetError, parse_macs
        from studies.supernet import SupernetSettings, SupernetTraining
        from evaluators.threads import torch_threads

        try:
            budget = parse_macs(args.budget)
        except BudgetError as e:
            raise UsageError(str(e)) from None
        from search_spaces import get_space
        from studies.budgets import unreachable
        # an unknown space or an unreachable budget is one line before anything loads
        reason = unreachable(get_space(args.space).supernet_space(), float(budget))
        if reason:
            raise UsageError(reason)
        settings = SupernetSettings(space=args.space, macs_budget=float(budget), dataset=args.dataset,
                                    epochs=args.epochs, resolution=args.resolution, batch_size=args.batch_size,
                                    train_size=args.train_size or None, val_size=args.val_size or None, lr=args.lr,
                                    random_points=args.random_points, seed=args.seed)
        output = Path(args.output)
        try:
            with torch_threads(args.threads):
                if not output.exists():
                    _say(args, f"sizing the supernet of {args.space} within {budget / 1e6:.0f} MMACs (probing the "
                               f"budget's extremes: seconds for a family space, minutes for hybrid)")
                run = SupernetTraining(settings, output)
                bar = progress(run.steps_per_epoch * (settings.epochs - run.epochs_done), "step", disable=args.json)
                run.on_step = lambda: bar.update(1)
                if run.epochs_done:
                    _say(args, f"resuming {output} after epoch {run.epochs_done} of {settings.epochs}")
                else:
                    _say(args, f"supernet of {args.space} within {budget / 1e6:.0f} MMACs: "
                               f"{run.supernet.num_params() / 1e6:.1f} M shared parameters; largest point "
                               f"{run.largest.layout} ({_mmacs(run.largest)}), smallest {run.smallest.layout} "
                               f"({_mmacs(run.smallest)})")

                def on_epoch(row: dict) -> None:
                    bar.clear()
                    _say(args, f"epoch {row['epoch']}/{settings.epochs}: inherited accuracy largest "
                               f"{row['largest']:.3f}, smallest {row['smallest']:.3f} ({row['seconds']:.0f} s so far)")

                try:
                    run.run(on_epoch)
                finally:
                    bar.close()
        except DatasetError as e:
            raise UsageError(str(e)) from None
        record = {"file": str(output), "space": args.space, "macs_budget": budget, "epochs": run.epochs_done,
                  "seconds": round(run.seconds, 1), "shared_params": run.supernet.num_params(), "history": run.history}
        if args.json:
            print(dumps(record))
        else:
            print(f"{output}: {run.epochs_done} epochs in {run.seconds:.0f} s; score points with "
                  f"`nas score ARCH --proxy supernet --supernet {output}`")
        return 0


def _say(args: argparse.Namespace, line: str) -> None:
    import sys

    print(line, file=sys.stderr if args.json else sys.stdout, flush=True)


def _mmacs(arch) -> str:
    from nas.builder import analytic_cost

    return f"{analytic_cost(arch).macs / 1e6:.0f} MMACs"
