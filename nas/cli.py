"""The ``nas`` command line.

Every user error (unknown name, malformed file, bad number) ends in one line on stderr and exit
code 2; heavy libraries (Optuna, Ray, plotly) are imported only by the commands that need them.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable, Optional

from nas.config import ArchConfig, ConfigError


class UsageError(Exception):
    """Bad input from the user: reported in one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not usage + error
        raise UsageError(f"{self.prog}: {message} (see --help)")


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(name: str) -> Callable:
    def wrap(fn: Callable) -> Callable:
        COMMANDS[name] = fn
        return fn
    return wrap


# ---------------------------------------------------------------------------- helpers
def resolve_arch(spec: str) -> tuple[str, ArchConfig]:
    """A preset name or a path to a JSON config -> (display name, config)."""
    import nas

    if spec in nas.list_archs():
        return spec, nas.get_arch(spec)
    path = Path(spec)
    if path.suffix == ".json" or path.exists():
        return path.stem, nas.load_config(path)
    close = [n for n in nas.list_archs() if n.split("_")[0] == spec.split("_")[0]]
    hint = f"; did you mean one of {', '.join(close)}" if close else "; `nas archs` lists them"
    raise UsageError(f"{spec!r} is neither a known architecture nor a config file{hint}")


def _positive(kind: type) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}")
        return value
    return parse


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}")
    return value


def _emit(data: Any, as_json: bool, render: Callable[[Any], str]) -> None:
    print(json.dumps(data, indent=2) if as_json else render(data))


def _table(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    cells = [[title for _, title in columns]] + [[_fmt(r.get(key)) for key, _ in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}".rstrip("0").rstrip(".") if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


# ---------------------------------------------------------------------------- commands
@command("archs")
def cmd_archs(args: argparse.Namespace) -> int:
    import nas

    rows = []
    for p in nas.list_presets():
        cost = nas.analytic_cost(p.arch)
        rows.append({
            "name": p.name, "family": p.family, "layout": p.arch.layout, "params": cost.params, "macs": cost.macs,
            "params_m": round(cost.params / 1e6, 3), "macs_g": round(cost.macs / 1e9, 3),
            "resolution": p.arch.resolution, "ref_params_m": p.ref_params_m, "ref_macs_g": p.ref_macs_g,
            "published_params_m": p.published_params_m, "published_macs_g": p.published_macs_g,
            "published_top1": p.published_top1, "deviation": p.deviation, "arch_id": p.arch.arch_id,
        })
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(_table(rows, [("name", "name"), ("layout", "layout"), ("params_m", "params M"), ("macs_g", "MACs G"),
                            ("resolution", "res"), ("published_params_m", "paper M"),
                            ("published_macs_g", "paper G"), ("published_top1", "top-1")]))
        print("\nMACs: analytic counter (agrees with fvcore within 1%); `--json` adds deviations and references.")
    return 0


@command("spaces")
def cmd_spaces(args: argparse.Namespace) -> int:
    import search_spaces

    rows = [{"name": s.name, "presets": list(s.presets), "description": s.description}
            for s in search_spaces.list_spaces()]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            print(f"{r['name']:<16} {len(r['presets']):>3} presets  {r['description']}")
    return 0


@command("space")
def cmd_space(args: argparse.Namespace) -> int:
    import search_spaces

    space = search_spaces.get_space(args.name)
    dims = space.dimensions()
    if args.json:
        print(json.dumps({"name": space.name, "description": space.description, "presets": list(space.presets),
                          "dimensions": [{"label": l, "domain": d, "when": w} for l, d, w in dims]}, indent=2))
        return 0
    print(f"{space.name}: {space.description}\n")
    print(f"presets inside: {', '.join(space.presets) or '-'}\n")
    searched = [(l, d, w) for l, d, w in dims if not d.startswith(("fixed", "same as"))]
    fixed = [(l, d) for l, d, w in dims if d.startswith(("fixed", "same as"))]
    print(f"searched dimensions ({len(searched)}):")
    for label, dom, when in searched:
        print(f"  {label:<44} {dom}" + (f"   [if {when}]" if when else ""))
    if fixed:
        print(f"\nfixed ({len(fixed)}): " + ", ".join(f"{l}={d.removeprefix('fixed ')}" for l, d in fixed))
    return 0


@command("profile")
def cmd_profile(args: argparse.Namespace) -> int:
    from evaluators.cost import measure_cost

    name, arch = resolve_arch(args.arch)
    report = measure_cost(arch, args.resolution, args.num_classes, args.counter)
    data = {"arch": name, "arch_id": arch.arch_id, **report.to_dict(), "num_classes": args.num_classes}
    lines = [f"{name} ({arch.layout}, id {arch.arch_id})",
             f"params      {report.params / 1e6:.3f} M ({report.params:,})",
             f"MACs        {report.macs / 1e9:.3f} G at {report.resolution}x{report.resolution} ({report.counter})",
             f"counted in  {report.count_seconds * 1000:.1f} ms"]
    if args.latency:
        from evaluators.latency import measure_latency

        if not args.json:
            print(f"measuring latency ({args.backend}, batch {args.batch}, {args.threads} thread(s), "
                  f"{min(args.min_seconds, args.max_seconds):g}-{args.max_seconds:g} s)...", file=sys.stderr)
        lat = measure_latency(arch, report.resolution, args.batch, args.threads, args.backend,
                              num_classes=args.num_classes, min_seconds=args.min_seconds, max_seconds=args.max_seconds)
        data.update(lat.to_dict())
        lines.append(f"latency     {lat.latency_ms:.2f} ms, 10th percentile (95% CI {lat.ci_low_ms:.2f}-"
                     f"{lat.ci_high_ms:.2f}); median {lat.median_ms:.2f} ms, IQR {lat.p25_ms:.2f}-{lat.p75_ms:.2f}; "
                     f"{lat.runs} runs{'' if lat.converged else ', time cap hit'}")
        lines.append(f"            batch {lat.batch}, {lat.threads} thread{'s' if lat.threads > 1 else ''}, {lat.dtype}, "
                     f"{lat.backend} on {lat.device}")
    print(json.dumps(data, indent=2) if args.json else "\n".join(lines))
    return 0


@command("score")
def cmd_score(args: argparse.Namespace) -> int:
    from evaluators.data import DatasetError, load_dataset, prepare, channel_stats

    name, arch = resolve_arch(args.arch)
    try:
        data = load_dataset(args.dataset)
    except DatasetError as e:
        raise UsageError(str(e)) from None
    if args.proxy == "train":
        from evaluators.train import TrainConfig, train_proxy

        cfg = TrainConfig(epochs=args.epochs, resolution=args.resolution, batch_size=args.batch_size,
                          train_size=args.train_size or None, val_size=args.val_size or None, seed=args.seed,
                          width_mult=args.width_mult)
        bar = _progress(args.epochs, "epochs", disable=args.json)
        result = train_proxy(arch, data, cfg, on_epoch=lambda e, acc: (bar.update(1), bar.set_postfix(acc=f"{acc:.3f}")))
        bar.close()
        out = {"arch": name, "proxy": "train", "score": result.accuracy, "dataset": data.name, **result.to_dict(),
               "resolution": args.resolution, "width_mult": args.width_mult}
    else:
        import torch

        from evaluators.proxies import score_proxy

        sub = data.subset(args.batch_size, 1, seed=args.seed)
        mean, std = channel_stats(data.train_x)
        x = prepare(sub.train_x, args.resolution, mean, std)
        torch.manual_seed(args.seed)
        result = score_proxy(arch, args.proxy, x, sub.train_y, data.num_classes, seed=args.seed)
        out = {"arch": name, "dataset": data.name, **result.to_dict()}
    print(json.dumps(out, indent=2) if args.json else f"{name}: {out['proxy']} = {out['score']:.6g}")
    return 0


@command("search")
def cmd_search(args: argparse.Namespace) -> int:
    from studies.budgets import BudgetError, parse_duration_s, parse_latency_ms, parse_macs, parse_params
    from studies.search import SearchSettings

    try:
        macs = parse_macs(args.budget) if args.budget else None
        latency = parse_latency_ms(args.latency_budget) if args.latency_budget else None
        params = parse_params(args.params_budget) if args.params_budget else None
        timeout = parse_duration_s(args.timeout) if args.timeout else None
    except BudgetError as e:
        raise UsageError(str(e)) from None
    if args.trials < 1:
        raise UsageError(f"--trials must be at least 1, got {args.trials}")
    if args.workers is not None and args.workers < 0:
        raise UsageError(f"--workers must be >= 0, got {args.workers}")
    import dataclasses

    from evaluators.data import DatasetError, load_dataset
    from studies.search import Search

    if args.proxy not in ("params", "macs"):
        try:
            load_dataset(args.dataset)  # fail before starting anything
        except DatasetError as e:
            raise UsageError(str(e)) from None
    base = SearchSettings(space=args.space)
    train = dataclasses.replace(base.train, epochs=args.epochs, resolution=args.resolution,
                                train_size=args.train_size, val_size=args.val_size, width_mult=args.width_mult)
    settings = SearchSettings(
        space=args.space, macs_budget=macs, latency_budget_ms=latency, params_budget=params, trials=args.trials,
        timeout_s=timeout, proxy=args.proxy, dataset=args.dataset, sampler=args.sampler,
        workers=args.workers if args.workers is not None else base.workers, worker_threads=args.worker_threads,
        address=args.address, storage=args.storage, study_name=args.study, seed=args.seed, train=train)
    bar = _progress(args.trials, "trial")
    def show(p) -> None:
        bar.n = min(p.complete, args.trials)
        bar.set_postfix_str(f"feasible {p.feasible}, over budget {p.infeasible}, stopped {p.stopped}, "
                            f"failed {p.failed}, front {p.front}", refresh=True)
    search = Search(settings, on_progress=show)
    print(f"search: study {search.name!r} in {settings.storage}; space {settings.space}; proxy {settings.proxy}; "
          f"{settings.trials} trials on {settings.workers or 'no'} worker(s)", file=sys.stderr)
    study = search.run()
    bar.close()
    if search.resumed:
        print(f"search: resumed the existing study; {search.reaped} interrupted trial(s) marked failed and queued "
              "again", file=sys.stderr)
    if search.seeded:
        print(f"search: seeded with the published architectures that fit: {', '.join(search.seeded)}", file=sys.stderr)
    from studies.results import format_front, front_frame

    front = front_frame(study)
    metric = settings.metric_names[0]
    print(f"\nPareto front of {search.name} ({len(front)} of {search.progress.feasible} feasible trials; "
          f"{search.progress.infeasible} over budget, {search.progress.stopped} stopped early, "
          f"{search.progress.failed} failed, {search.progress.invalid} invalid samples):\n")
    print(format_front(front, metric))
    storage = "" if settings.storage == SearchSettings(space="").storage else f" --storage {settings.storage}"
    nexts = [f"nas pareto {search.name}{storage} --csv"]
    if "dashboard" in COMMANDS:
        nexts.append(f"nas dashboard {search.name}{storage} -o {search.name}.html")
    if "export" in COMMANDS:
        nexts.append(f"nas export {search.name}{storage} -o exported/{search.name}")
    print("\nnext:\n" + "\n".join(f"  {n}" for n in nexts))
    return 0


@command("studies")
def cmd_studies(args: argparse.Namespace) -> int:
    from studies.results import studies_frame

    frame = studies_frame(args.storage)
    if args.json:
        print(frame.to_json(orient="records", indent=2))
    elif frame.empty:
        print(f"no studies in {args.storage}")
    else:
        print(frame.to_string(index=False))
    return 0


@command("pareto")
def cmd_pareto(args: argparse.Namespace) -> int:
    from studies.results import format_front, front_frame, load_study, to_json_rows

    study = load_study(args.study, args.storage)
    front = front_frame(study)
    if args.json:
        print(to_json_rows(front))
    elif args.csv:
        print(front.to_csv(index=False), end="")
    else:
        print(format_front(front, (study.metric_names or ["objective_0"])[0]))
    return 0


@command("dashboard")
def cmd_dashboard(args: argparse.Namespace) -> int:
    from studies.dashboard import write_dashboard
    from studies.results import load_study

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


@command("export")
def cmd_export(args: argparse.Namespace) -> int:
    from studies.export import export_trial
    from studies.results import load_study

    study = load_study(args.study, args.storage)
    output = Path(args.output or f"exported/{args.study}")
    if not args.json and sys.stderr.isatty():
        print(f"export: building and tracing the chosen trial of {args.study!r}...", file=sys.stderr)
    try:
        report = export_trial(study, output, args.trial, args.front_rank, args.num_classes, args.resolution, args.seed)
    except OSError as e:
        raise UsageError(f"cannot write to {output}: {e.strerror or e}") from None
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return 0
    fallback = f" (torch.export failed: {report.torch_fallback_reason})" if report.torch_fallback_reason else ""
    print(f"exported trial {report.trial} of {report.study} ({report.layout}, arch id {report.arch_id}) to {output}/\n"
          f"  {', '.join(report.files)}\n"
          f"  {report.num_classes} classes, input {report.resolution}x{report.resolution}, "
          f"{report.params / 1e6:.3f} M params, {report.macs / 1e6:.1f} M MACs\n"
          f"  torch program: {report.torch_format}{fallback}\n"
          f"  ONNX Runtime vs PyTorch: max abs difference {report.onnx_max_abs_diff:.2g}\n"
          "  the weights are freshly initialised: train the config (arch.json) for real; see MODEL_CARD.md")
    return 0


def _progress(total: int, unit: str, disable: bool = False):
    from tqdm import tqdm

    return tqdm(total=total, unit=unit, disable=disable or not sys.stderr.isatty(), file=sys.stderr, leave=False)


# ---------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="nas", description=(
        "Neural architecture search over a hybrid CNN/ViT design space. MACs (multiply-accumulates) are the "
        "unit of every 'FLOPs' figure, counted at 224x224 (MobileViT 256) unless --resolution says otherwise."))
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("archs", help="list the published architectures with our and the papers' counts")
    p.add_argument("--json", action="store_true", help="machine-readable output (params and macs as integers)")

    p = sub.add_parser("spaces", help="list the search spaces")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("space", help="inspect a search space")
    ssub = p.add_subparsers(dest="space_command", metavar="ACTION", parser_class=_Parser, required=True)
    show = ssub.add_parser("show", help="the dimensions of a space, their domains and the presets inside it")
    show.add_argument("name", help="space name (see `nas spaces`)")
    show.add_argument("--json", action="store_true")

    p = sub.add_parser("profile", help="params and MACs of an architecture (a preset name or a config JSON)")
    p.add_argument("arch", metavar="ARCH_OR_CONFIG_JSON")
    p.add_argument("--resolution", type=_positive(int), default=None, help="input size (default: the design size)")
    p.add_argument("--num-classes", type=_positive(int), default=1000)
    p.add_argument("--counter", choices=("fvcore", "analytic"), default="fvcore",
                   help="fvcore traces the built model (the reference); analytic counts from the config alone")
    p.add_argument("--latency", action="store_true",
                   help="also measure latency: the 10th percentile of timed runs with its 95%% CI, and the median")
    p.add_argument("--backend", choices=("torch", "onnxruntime"), default="torch")
    p.add_argument("--threads", type=_positive(int), default=1,
                   help="intra-op threads (default 1: the reproducible setting on shared machines)")
    p.add_argument("--batch", type=_positive(int), default=1)
    p.add_argument("--min-seconds", type=_positive(float), default=10.0,
                   help="time the runs for at least this long, to see past a slow stretch (default 10)")
    p.add_argument("--max-seconds", type=_positive(float), default=20.0, help="time cap of the timed runs (default 20)")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("score", help="score an architecture with a zero-cost proxy or short training",
                       description="Scores are 'higher = predicted better'. --proxy train reports validation "
                                   "accuracy in [0, 1] after a short seeded training run.")
    p.add_argument("arch", metavar="ARCH_OR_CONFIG_JSON")
    p.add_argument("--proxy", required=True, choices=("train", "synflow", "naswot", "grad_norm", "snip", "params", "macs"))
    p.add_argument("--dataset", default="fashion-mnist", help="fashion-mnist (default), cifar10:PATH or folder:PATH")
    p.add_argument("--resolution", type=_positive(int), default=32, help="input size (default 32)")
    p.add_argument("--epochs", type=_positive(int), default=2, help="training epochs (train proxy)")
    p.add_argument("--batch-size", type=_positive(int), default=128, help="minibatch size (also the proxies' batch)")
    p.add_argument("--train-size", type=int, default=10000, help="training images used (0 = all)")
    p.add_argument("--val-size", type=int, default=2000, help="validation images used (0 = all)")
    p.add_argument("--width-mult", type=_fraction, default=1.0,
                   help="train a copy with every width scaled by this, in (0, 1] (default 1: the architecture itself)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    from studies.search import DEFAULT_STORAGE, PROXIES, SAMPLERS

    p = sub.add_parser("search", help="multi-objective, constrained architecture search",
                       description="Search a space for the best proxy accuracy at the fewest MACs (and lowest "
                                   "latency with --latency-budget). Budgets are hard constraints checked before any "
                                   "model is built. FLOPs budgets are MACs (multiply-accumulates), at 224x224 "
                                   "(MobileViT 256). Re-running the same command resumes the study.")
    p.add_argument("--space", required=True, help="search space (see `nas spaces`)")
    p.add_argument("--budget", help="MAC budget, e.g. 500mflop, 1gflop, 1.5GMAC (FLOPs here are MACs)")
    p.add_argument("--latency-budget", help="latency budget per image, e.g. 20ms: batch 1 on this machine with each "
                   "worker's threads, the 10th percentile of timed runs (as `nas profile --latency`)")
    p.add_argument("--params-budget", help="parameter budget, e.g. 10m, 500k")
    p.add_argument("--trials", type=int, default=20, help="evaluated candidates in total, resumed runs included "
                   "(over-budget samples are recorded as infeasible and do not count; default 20)")
    p.add_argument("--timeout", help="stop after this long, e.g. 30m, 1h")
    p.add_argument("--proxy", choices=PROXIES, default="train",
                   help="objective: short training accuracy (default) or a zero-cost proxy")
    p.add_argument("--dataset", default="fashion-mnist", help="fashion-mnist (default), cifar10:PATH or folder:PATH")
    p.add_argument("--epochs", type=_positive(int), default=2, help="proxy-training epochs (default 2)")
    p.add_argument("--resolution", type=_positive(int), default=32, help="proxy-training input size (default 32)")
    p.add_argument("--train-size", type=_positive(int), default=5000, help="training images per candidate (default 5000)")
    p.add_argument("--val-size", type=_positive(int), default=1000, help="validation images (default 1000)")
    p.add_argument("--width-mult", type=_fraction, default=1.0,
                   help="proxy-train a copy of each candidate with its widths scaled by this, in (0, 1]: faster, "
                        "ranks approximately (default 1); MACs and params are always the real architecture's")
    p.add_argument("--sampler", choices=SAMPLERS, default="tpe", help="Optuna sampler (default tpe)")
    p.add_argument("--workers", type=int, default=None,
                   help="Ray workers (default: one per core); 0 evaluates in this process")
    p.add_argument("--worker-threads", type=_positive(int), default=None,
                   help="torch threads of each worker (default: the machine's cores divided among the workers)")
    p.add_argument("--address", help="an existing Ray cluster's address (default: start a local one)")
    p.add_argument("--storage", default=DEFAULT_STORAGE, help=f"SQLAlchemy URL (default {DEFAULT_STORAGE})")
    p.add_argument("--study", help="study name (default: from space, proxy and budgets)")
    p.add_argument("--seed", type=int, default=0)

    p = sub.add_parser("studies", help="list the studies in a storage")
    p.add_argument("--storage", default=DEFAULT_STORAGE)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("pareto", help="print the Pareto front of a study")
    p.add_argument("study")
    p.add_argument("--storage", default=DEFAULT_STORAGE)
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true")
    fmt.add_argument("--csv", action="store_true")

    p = sub.add_parser("dashboard", help="write a study's dashboard: one self-contained HTML file",
                       description="Pareto fronts (accuracy vs MACs, latency, params) with the published "
                                   "architectures, hypervolume over trials, accuracy EDFs per layout and per searched "
                                   "dimension, parameter importances and a sortable trial table, in one HTML file "
                                   "with plotly.js inlined (works offline).")
    p.add_argument("study")
    p.add_argument("--storage", default=DEFAULT_STORAGE)
    p.add_argument("--compare", metavar="STUDY", help="a second study of the same objective in the same storage "
                   "(e.g. the same search run with --sampler random) to compare hypervolume, fronts and EDFs with")
    p.add_argument("-o", "--output", metavar="FILE.html", help="output file (default: STUDY.html)")

    p = sub.add_parser("export", help="export a trial as arch.json, a torch program, ONNX and a model card",
                       description="Writes arch.json (nas.load_config), model.pt2 (torch.export; model.ts, "
                                   "TorchScript, when torch.export fails), model.onnx (checked, compared with "
                                   "PyTorch in ONNX Runtime) and MODEL_CARD.md. The weights are freshly initialised: "
                                   "the search trains only a proxy. Default: the best trial on the Pareto front.")
    p.add_argument("study")
    p.add_argument("--storage", default=DEFAULT_STORAGE)
    which = p.add_mutually_exclusive_group()
    which.add_argument("--trial", type=int, metavar="N", help="the trial number to export")
    which.add_argument("--front-rank", type=_positive(int), metavar="K",
                       help="the K-th best trial on the Pareto front by the first metric (1 = the best)")
    p.add_argument("--num-classes", type=_positive(int), default=None,
                   help="classifier outputs (default: the classes of the dataset the search used)")
    p.add_argument("--resolution", type=_positive(int), default=None,
                   help="input size of the exported programs (default: the config's design resolution)")
    p.add_argument("--seed", type=int, default=0, help="seed of the fresh initialisation")
    p.add_argument("-o", "--output", metavar="DIR", help="output directory (default: exported/STUDY)")
    p.add_argument("--json", action="store_true", help="print the export report as JSON")
    return parser


def _search_error() -> type:
    from studies.search import SearchError
    return SearchError


def main(argv: Optional[list[str]] = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 2
        name = "space" if args.command == "space" else args.command
        return COMMANDS[name](args)
    except (UsageError, ConfigError, _search_error()) as e:
        print(f"nas: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nas: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
