"""Commands that look at the core: ``archs``, ``spaces``, ``space show``, ``profile``."""
from __future__ import annotations

import argparse
import json
import sys

from nas_cli.common import Command, Parser, dumps, positive, resolve_arch, table


class Archs(Command):
    name, help = "archs", "list the published architectures with our and the papers' counts"

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("--json", action="store_true", help="machine-readable output (params and macs as integers)")

    def run(self, args: argparse.Namespace) -> int:
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
            print(dumps(rows))
            return 0
        print(table(rows, [("name", "name"), ("layout", "layout"), ("params_m", "params M"), ("macs_g", "MACs G"),
                           ("resolution", "res"), ("published_params_m", "paper M"),
                           ("published_macs_g", "paper G"), ("published_top1", "top-1")]))
        print("\nMACs: analytic counter (agrees with fvcore within 1%); `--json` adds deviations and references.")
        return 0


class Spaces(Command):
    name, help = "spaces", "list the search spaces"

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("--json", action="store_true")

    def run(self, args: argparse.Namespace) -> int:
        import search_spaces

        rows = [{"name": s.name, "presets": list(s.presets), "description": s.description}
                for s in search_spaces.list_spaces()]
        if args.json:
            print(dumps(rows))
        else:
            for r in rows:
                print(f"{r['name']:<16} {len(r['presets']):>3} presets  {r['description']}")
        return 0


class Space(Command):
    name, help = "space", "inspect a search space"

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        actions = p.add_subparsers(dest="space_command", metavar="ACTION", parser_class=Parser, required=True)
        show = actions.add_parser("show", help="the dimensions of a space, their domains and the presets inside it")
        show.add_argument("name", help="space name (see `nas spaces`)")
        show.add_argument("--json", action="store_true")

    def run(self, args: argparse.Namespace) -> int:
        import search_spaces

        space = search_spaces.get_space(args.name)
        dims = space.dimensions()
        narrowing = {label: dom.describe() for label, dom in space.supernet.items()}
        if args.json:
            least = space.smallest_cost()
            print(dumps({"name": space.name, "description": space.description, "presets": list(space.presets),
                         "dimensions": [{"label": l, "domain": d, "when": w} for l, d, w in dims],
                         "budget_note": space.budget_note,
                         "smallest": {"macs": least.macs, "params": least.params},
                         "supernet": {"narrowing": narrowing, "presets": list(space.supernet_space().presets)}}))
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
        least = space.smallest_cost()
        print(f"\nbudgets: {space.budget_note}\nThe cheapest architecture of the space has {least.macs / 1e6:.3g} M "
              f"MACs and {least.params / 1e6:.3g} M params: a smaller budget is refused.")
        if narrowing:
            fixed = {l: d for l, d in narrowing.items() if d.startswith("fixed ")}
            print(f"\nsupernet: a weight-sharing supernet (`nas supernet train`, `--proxy supernet`) holds the "
                  f"sub-space with these domains ({', '.join(space.supernet_space().presets) or 'no preset'} inside):")
            for label, dom in narrowing.items():
                if label not in fixed:
                    print(f"  {label:<44} {dom}")
            print(f"  fixed ({len(fixed)}): " + ", ".join(f"{l}={d.removeprefix('fixed ')}" for l, d in fixed.items()))
        return 0


class Profile(Command):
    name, help = "profile", "params and MACs of an architecture (a preset name or a config JSON)"

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("arch", metavar="ARCH_OR_CONFIG_JSON")
        p.add_argument("--resolution", type=positive(int), default=None, help="input size (default: the design size)")
        p.add_argument("--num-classes", type=positive(int), default=1000)
        p.add_argument("--counter", choices=("fvcore", "analytic"), default="fvcore",
                       help="fvcore traces the built model (the reference); analytic counts from the config alone")
        p.add_argument("--latency", action="store_true",
                       help="also measure latency: the 10th percentile of timed runs with its 95%% CI, and the median")
        p.add_argument("--backend", choices=("torch", "onnxruntime"), default="torch")
        p.add_argument("--threads", type=positive(int), default=1,
                       help="intra-op threads (default 1: the reproducible setting on shared machines)")
        p.add_argument("--batch", type=positive(int), default=1)
        p.add_argument("--min-seconds", type=positive(float), default=10.0,
                       help="time the runs for at least this long, to see past a slow stretch (default 10)")
        p.add_argument("--max-seconds", type=positive(float), default=20.0,
                       help="time cap of the timed runs (default 20)")
        p.add_argument("--json", action="store_true")

    def run(self, args: argparse.Namespace) -> int:
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
                                  num_classes=args.num_classes, min_seconds=args.min_seconds,
                                  max_seconds=args.max_seconds)
            data.update(lat.to_dict())
            lines.append(f"latency     {lat.latency_ms:.2f} ms, 10th percentile (95% CI {lat.ci_low_ms:.2f}-"
                         f"{lat.ci_high_ms:.2f}); median {lat.median_ms:.2f} ms, IQR {lat.p25_ms:.2f}-"
                         f"{lat.p75_ms:.2f}; {lat.runs} runs{'' if lat.converged else ', time cap hit'}")
            lines.append(f"            batch {lat.batch}, {lat.threads} thread{'s' if lat.threads > 1 else ''}, "
                         f"{lat.dtype}, {lat.backend} on {lat.device}")
        print(json.dumps(data, indent=2) if args.json else "\n".join(lines))
        return 0
