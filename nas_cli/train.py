"""``nas train``: train an architecture (a preset, a config file, or a study's trial) for real."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nas_cli.common import Command, UsageError, add_storage, dumps, positive, progress, resolve_arch


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    return value


class Train(Command):
    name, help = "train", "train an architecture for real, resumably (a preset, a config file or a study's trial)"
    uses_studies = True
    description = ("A standard recipe for these families: AdamW, warm-up then cosine decay, label smoothing, "
                   "stochastic depth rising linearly over the blocks, optional mixup/cutmix and an EMA of the "
                   "weights; mixed precision on CUDA. Validation accuracy after every epoch on images held out from "
                   "the training split; test accuracy once at the end, reported apart. DIR keeps the config, a "
                   "checkpoint per epoch and metrics.jsonl: running the same command again resumes (after a crash "
                   "or kill -9) and reaches the same weights. `nas export DIR` exports the trained model.")

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        from studies.training import RecipeConfig

        d = RecipeConfig()
        p.add_argument("arch", metavar="ARCH_OR_JSON_OR_STUDY",
                       help="a preset name, a config JSON, or a study (with --trial N or --front-rank K)")
        which = p.add_mutually_exclusive_group()
        which.add_argument("--trial", type=int, metavar="N", help="train trial N of the study")
        which.add_argument("--front-rank", type=positive(int), metavar="K",
                           help="train the K-th best trial of the study's Pareto front (1 = the best)")
        add_storage(p)
        p.add_argument("-o", "--output", metavar="DIR", required=True, help="the run directory (created, or resumed)")
        p.add_argument("--dataset", default=None,
                       help="fashion-mnist, cifar10:PATH or folder:PATH (default: the study's, else fashion-mnist)")
        p.add_argument("--epochs", type=positive(int), default=d.epochs, help=f"default {d.epochs}")
        p.add_argument("--resolution", type=positive(int), default=d.resolution, help=f"default {d.resolution}")
        p.add_argument("--batch-size", type=positive(int), default=d.batch_size, help=f"default {d.batch_size}")
        p.add_argument("--lr", type=positive(float), default=d.lr, help=f"peak learning rate (default {d.lr:g})")
        p.add_argument("--weight-decay", type=float, default=d.weight_decay, help=f"default {d.weight_decay:g}")
        p.add_argument("--warmup-epochs", type=float, default=None,
                       help=f"linear warm-up (default {d.warmup_epochs:g}, or a fifth of the epochs when fewer than "
                            f"{5 * d.warmup_epochs:g})")
        p.add_argument("--label-smoothing", type=_rate, default=d.label_smoothing,
                       help=f"default {d.label_smoothing:g}")
        p.add_argument("--drop-path", type=_rate, default=d.drop_path_rate,
                       help=f"stochastic depth of the last block (default {d.drop_path_rate:g})")
        p.add_argument("--mixup", type=float, default=d.mixup_alpha, help="mixup alpha (default 0: off)")
        p.add_argument("--cutmix", type=float, default=d.cutmix_alpha, help="cutmix alpha (default 0: off)")
        p.add_argument("--ema", type=_rate, default=d.ema_decay, metavar="DECAY",
                       help="keep an exponential moving average of the weights (e.g. 0.999); off by default")
        p.add_argument("--train-size", type=positive(int), default=None,
                       help="training images (default: the whole training split less the validation images)")
        p.add_argument("--val-size", type=positive(int), default=d.val_size,
                       help=f"validation images held out from the training split (default {d.val_size})")
        p.add_argument("--threads", type=positive(int), default=None, help="torch threads (default: torch's)")
        p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--json", action="store_true", help="print the result as JSON")

    def _arch(self, args: argparse.Namespace):
        """(arch, name, dataset spec of the study or None)."""
        import nas

        from studies.export import select_trial
        from studies.record import TrialRecord
        from studies.storage import InputError, load_study

        not_an_arch = None
        if args.trial is None and args.front_rank is None:
            try:
                name, arch = resolve_arch(args.arch)
                return arch, name, None
            except UsageError as e:
                not_an_arch = e  # perhaps a study
        try:
            study = load_study(args.arch, args.storage)
        except InputError as e:
            raise UsageError(f"{not_an_arch}, nor a study in {args.storage}") if not_an_arch else e from None
        chosen = select_trial(study, args.trial, args.front_rank)
        try:
            arch = TrialRecord.from_trial(chosen).arch
        except nas.ConfigError as e:
            raise UsageError(f"trial {chosen.number} records a config this version cannot read: {e}") from None
        return arch, f"{args.arch} trial {chosen.number}", (study.user_attrs.get("settings") or {}).get("dataset")

    def run(self, args: argparse.Namespace) -> int:
        from evaluators.data import DatasetError, load_dataset
        from evaluators.train import TrainingDiverged
        from studies.training import RecipeConfig, RunError, train_run

        arch, name, study_dataset = self._arch(args)
        recipe = RecipeConfig(
            epochs=args.epochs, resolution=args.resolution, batch_size=args.batch_size, lr=args.lr,
            weight_decay=args.weight_decay,
            warmup_epochs=args.warmup_epochs if args.warmup_epochs is not None else min(
                RecipeConfig.warmup_epochs, args.epochs / 5), label_smoothing=args.label_smoothing,
            drop_path_rate=args.drop_path, mixup_alpha=args.mixup, cutmix_alpha=args.cutmix, ema_decay=args.ema,
            train_size=args.train_size, val_size=args.val_size, seed=args.seed, threads=args.threads,
            device=args.device)
        spec = args.dataset or study_dataset or "fashion-mnist"
        try:
            data = load_dataset(spec)
        except DatasetError as e:
            raise UsageError(str(e)) from None
        bar = None

        def show(p) -> None:
            nonlocal bar
            if bar is None:
                bar = progress(p.epochs * p.steps, "batch", disable=args.json)
                bar.n = (p.epoch - 1) * p.steps + p.step
            bar.update((p.epoch - 1) * p.steps + p.step - bar.n)
            text = f"epoch {p.epoch}/{p.epochs}, loss {p.loss:.3f}, {p.images_per_second:.0f} img/s"
            if p.val_accuracy is not None:
                text += f", val {p.val_accuracy:.4f}"
                if not args.json:
                    bar.write(f"epoch {p.epoch}/{p.epochs}: loss {p.loss:.4f}, validation accuracy "
                              f"{p.val_accuracy:.4f}, {p.images_per_second:.0f} images/s", file=sys.stderr)
            bar.set_postfix_str(text, refresh=False)

        if not args.json:
            print(f"train: {name} ({arch.layout}) on {data.name} for {recipe.epochs} epoch(s) at "
                  f"{recipe.resolution}x{recipe.resolution} into {args.output}", file=sys.stderr)
        try:
            result = train_run(arch, data, recipe, Path(args.output), on_progress=show, dataset_spec=spec)
        except (RunError, DatasetError) as e:
            raise UsageError(str(e)) from None
        except TrainingDiverged as e:  # the run directory keeps the last good epoch
            raise UsageError(f"training diverged ({e}); try a lower --lr") from None
        finally:
            if bar is not None:
                bar.close()
        if args.json:
            print(dumps(result.to_dict()))
            return 0
        resumed = f" (resumed after epoch {result.resumed_from})" if result.resumed_from else ""
        test = (f"\ntest accuracy {result.test_accuracy:.4f} ({result.test}), measured once, not used to select"
                if result.test_accuracy is not None else "")
        print(f"trained {name}{resumed}: validation accuracy {result.val_accuracy:.4f} after {result.epochs_done} "
              f"epoch(s) ({result.validation}); {result.images_per_second:.0f} training images/s on {result.device}"
              f"{test}\nnext: nas export {args.output} -o exported/{Path(args.output).name}")
        return 0
