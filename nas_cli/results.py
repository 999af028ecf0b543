"""Commands that read studies back: ``studies``, ``pareto``, ``dashboard``, ``export``."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nas_cli.common import Command, UsageError, add_storage, positive


class Studies(Command):
    name, help = "studies", "list the studies in a storage"
    uses_studies = True

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        add_storage(p)
        p.add_argument("--json", action="store_true")

    def run(self, args: argparse.Namespace) -> int:
        from studies.results import studies_frame

        frame = studies_frame(args.storage)
        if args.json:
            print(frame.to_json(orient="records", indent=2))
        elif frame.empty:
            print(f"no studies in {args.storage}")
        else:
            print(frame.to_string(index=False))
        return 0


class Pareto(Command):
    name, help = "pareto", "print the Pareto front of a study"
    uses_studies = True

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("study")
        add_storage(p)
        fmt = p.add_mutually_exclusive_group()
        fmt.add_argument("--json", action="store_true")
        fmt.add_argument("--csv", action="store_true")

    def run(self, args: argparse.Namespace) -> int:
        from studies.results import format_front, front_frame, metric_names, to_json_rows
        from studies.storage import load_study

        study = load_study(args.study, args.storage)
        front = front_frame(study)
        if args.json:
            print(to_json_rows(front))
        elif args.csv:
            print(front.to_csv(index=False), end="")
        else:
            print(format_front(front, metric_names(study)[0]))
        return 0


class Dashboard(Command):
    name, help = "dashboard", "write a study's dashboard: one self-contained HTML file"
    uses_studies = True
    description = ("Pareto fronts (score vs MACs, latency, params) with the published architectures, hypervolume "
                   "over trials, score EDFs per layout and per searched dimension, parameter importances and a "
                   "sortable trial table, in one HTML file with plotly.js inlined (works offline).")

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("study")
        add_storage(p)
        p.add_argument("--compare", metavar="STUDY", help="a second study of the same objective in the same storage "
                       "(e.g. the same search run with --sampler random) to compare hypervolume, fronts and EDFs with")
        p.add_argument("-o", "--output", metavar="FILE.html", help="output file (default: STUDY.html)")

    def run(self, args: argparse.Namespace) -> int:
        from studies.dashboard import write_dashboard
        from studies.storage import load_study

        study = load_study(args.study, args.storage)
        compare = load_study(args.compare, args.storage) if args.compare else None
        output = Path(args.output or f"{args.study}.html")
        try:
            path = write_dashboard(study, output, compare)
        except OSError as e:
            raise UsageError(f"cannot write {output}: {e.strerror or e}") from None
        size = path.stat().st_size / 1e6
        print(f"wrote {path} ({size:.1f} MB, self-contained: open it in any browser, no network needed)")
        return 0


class Export(Command):
    name, help = "export", "export a trial as arch.json, a torch program, ONNX and a model card"
    uses_studies = True
    description = ("Writes arch.json (nas.load_config), model.pt2 (torch.export; model.ts, TorchScript, when "
                   "torch.export fails), model.onnx (checked, compared with PyTorch in ONNX Runtime) and "
                   "MODEL_CARD.md. The weights are freshly initialised: the search trains only a proxy. Default: "
                   "the best trial on the Pareto front.")

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("study", metavar="STUDY_OR_RUN_DIR",
                       help="a study, or a `nas train` run directory (exports its trained weights)")
        add_storage(p)
        which = p.add_mutually_exclusive_group()
        which.add_argument("--trial", type=int, metavar="N", help="the trial number to export")
        which.add_argument("--front-rank", type=positive(int), metavar="K",
                           help="the K-th best trial on the Pareto front by the first metric (1 = the best)")
        p.add_argument("--num-classes", type=positive(int), default=None,
                       help="classifier outputs (default: the classes of the dataset the search used)")
        p.add_argument("--resolution", type=positive(int), default=None,
                       help="input size of the exported programs (default: the config's design resolution)")
        p.add_argument("--seed", type=int, default=0, help="seed of the fresh initialisation")
        p.add_argument("-o", "--output", metavar="DIR", help="output directory (default: exported/STUDY)")
        p.add_argument("--json", action="store_true", help="print the export report as JSON")

    def run(self, args: argparse.Namespace) -> int:
        from studies.export import export_run, export_trial, is_run_dir
        from studies.storage import load_study

        run = is_run_dir(args.study)
        output = Path(args.output or f"exported/{Path(args.study).name}")
        if run and (args.trial is not None or args.front_rank or args.num_classes or args.resolution):
            raise UsageError("a training run exports its trained model as it is: --trial, --front-rank, "
                             "--num-classes and --resolution are for studies")
        study = None if run else load_study(args.study, args.storage)
        if not args.json and sys.stderr.isatty():
            print(f"export: building and tracing {args.study!r}...", file=sys.stderr)
        try:
            report = (export_run(args.study, output) if run else
                      export_trial(study, output, args.trial, args.front_rank, args.num_classes, args.resolution,
                                   args.seed))
        except OSError as e:
            raise UsageError(f"cannot write to {output}: {e.strerror or e}") from None
        if args.json:
            print(json.dumps(report.to_dict(), indent=2))
            return 0
        fallback = f" (torch.export failed: {report.torch_fallback_reason})" if report.torch_fallback_reason else ""
        what = (f"the trained run {report.run}" if run else f"trial {report.trial} of {report.study}")
        print(f"exported {what} ({report.layout}, arch id {report.arch_id}) to "
              f"{output}/\n  {', '.join(report.files)}\n"
              f"  {report.num_classes} classes, input {report.resolution}x{report.resolution}, "
              f"{report.params / 1e6:.3f} M params, {report.macs / 1e6:.1f} M MACs\n"
              f"  torch program: {report.torch_format}{fallback}\n"
              f"  ONNX Runtime vs PyTorch: max abs difference {report.onnx_max_abs_diff:.2g}"
              + (f"; the same top-1 on {report.top1_matches} of {report.validation_images} validation images\n"
                 "  trained weights; see MODEL_CARD.md" if run else
                 "\n  the weights are freshly initialised: `nas train` trains the config for real; see MODEL_CARD.md"))
        return 0
