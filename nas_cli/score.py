"""``nas score``: one architecture through one evaluator."""
from __future__ import annotations

import argparse

from nas_cli.common import Command, UsageError, dumps, fraction, positive, progress, resolve_arch


class Score(Command):
    name, help = "score", "score an architecture with a proxy: short training or a zero-cost score"
    description = ("Scores are 'higher = predicted better'. --proxy train reports validation accuracy in [0, 1] after "
                   "a short seeded training run, validated on images held out from the training split.")

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        from evaluators.base import SCORE, list_evaluators

        proxies = list_evaluators(SCORE)
        p.add_argument("arch", metavar="ARCH_OR_CONFIG_JSON")
        p.add_argument("--proxy", required=True, choices=[e.name for e in proxies],
                       help="; ".join(f"{e.name}: {e.description}" for e in proxies))
        p.add_argument("--dataset", default="fashion-mnist", help="fashion-mnist (default), cifar10:PATH or folder:PATH")
        p.add_argument("--resolution", type=positive(int), default=32, help="input size (default 32)")
        p.add_argument("--epochs", type=positive(int), default=2, help="training epochs (train proxy)")
        p.add_argument("--batch-size", type=positive(int), default=128, help="minibatch size (also the proxies' batch)")
        p.add_argument("--train-size", type=int, default=10000, help="training images used (0 = all)")
        p.add_argument("--val-size", type=int, default=2000,
                       help="validation images, held out from the training split (0 = all)")
        p.add_argument("--width-mult", type=fraction, default=1.0,
                       help="train a copy with every width scaled by this, in (0, 1] (default 1: the architecture itself)")
        p.add_argument("--threads", type=positive(int), default=None, help="torch threads (default: torch's)")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--supernet", metavar="FILE",
                       help="a `nas supernet train` file (--proxy supernet); its data set, resolution, sizes and seed "
                            "are used, so that the validation images are those of its training run")
        p.add_argument("--json", action="store_true")

    def run(self, args: argparse.Namespace) -> int:
        from evaluators.base import EvalContext, get_evaluator
        from evaluators.threads import torch_threads
        from evaluators.data import DatasetError
        from evaluators.train import TrainConfig

        name, arch = resolve_arch(args.arch)
        evaluator = get_evaluator(args.proxy)
        train = TrainConfig(epochs=args.epochs, resolution=args.resolution, batch_size=args.batch_size,
                            train_size=args.train_size or None, val_size=args.val_size or None, seed=args.seed,
                            width_mult=args.width_mult)
        if evaluator.name == "supernet":
            from studies.supernet import scoring_context

            if args.supernet is None:
                raise UsageError("--proxy supernet needs --supernet FILE (written by `nas supernet train`)")
            context = scoring_context(args.supernet, args.threads)
            args.dataset, args.resolution = context.dataset, context.train.resolution
        elif args.supernet is not None:
            raise UsageError("--supernet is for --proxy supernet")
        else:
            context = EvalContext(args.dataset, train, threads=args.threads)
        try:
            if not evaluator.instant:
                context.data  # a missing data set is the user's to fix, before anything runs
        except DatasetError as e:
            raise UsageError(str(e)) from None
        history = []
        bar = progress(args.epochs if evaluator.stepwise else 1, "epoch" if evaluator.stepwise else "score",
                       disable=args.json)
        try:
            with torch_threads(args.threads):
                for m in evaluator.steps(arch, context):
                    history.append(m.value)
                    bar.update(1)
                    bar.set_postfix_str(f"{evaluator.unit} {m.value:.4g}")
        except DatasetError as e:  # e.g. a validation split larger than a small folder
            raise UsageError(str(e)) from None
        finally:
            bar.close()
        out = {"arch": name, "arch_id": arch.arch_id, "proxy": evaluator.name, "score": m.value, "unit": m.unit,
               "dataset": args.dataset, "device": m.device, "seconds": m.seconds, "details": dict(m.details)}
        if evaluator.stepwise:
            out.update(history=history, resolution=args.resolution, width_mult=args.width_mult)
        print(dumps(out) if args.json else f"{name}: {evaluator.name} = {m.value:.6g}")
        return 0
