"""The architectures a weight-sharing supernet of a space is sized from (``nas.Supernet``).

A supernet must hold, factor by factor, the largest tensor any point within the budget needs. No
single point does (the widest stage and the deepest one do not fit one budget together), so the
supernet is the per-factor maximum over a set of *probes*, each an architecture of the space
(valid, but not itself within the budget) at the edge of what the budget allows:

- for each structure of the space (a layout, or a number of stages with one stage's block type)
  and each stage of it at each depth the budget allows, that stage at the widest width it can
  have at that depth, with everything else as cheap as the space allows (the width is the most
  any point can give it: the others can only cost more);
- every other width at the most the budget allows it alone, other stages one block deep (their
  deeper blocks come from their own probes);
- the probed stage's other numeric values (expansions, MLP ratios, head sizes, kernels, an
  embedding's depth) in every combination when there are at most ``MAX_COMBINATIONS``, else all at
  their largest, all at their smallest, all at their cheapest, and each value alone with the others
  at their cheapest, with depths and tuple lengths still at every value: a width snapped to its
  grid can make a middle value's tensor the largest, the smallest head size makes the most heads,
  the cheapest values allow the deepest stage, and one large ratio among cheap values the widest;
- every stride the stage may have, the earlier stages' at their least (the cheapest context's
  network stride may leave the stage one stride only), since a block may downsample with other
  layers than it keeps its size with;
- each value of every choice of the probed stage (an embedding or not, a norm style, a stem type),
  since a choice may add tensors (an embedding's own, and those of the first block it feeds, are
  largest at the widest stage: it is probed one block deep); a choice that brings dimensions of
  its own (a convolutional stem's layers) starts from its cheapest architecture and has its own
  widths searched. Values that have weights of their own (``Params.unshared``, e.g. EfficientFormer's head shape) are probed in
  every combination, each with every choice;
- the stage once more from a narrower input when the widest one equals its width, since a width
  change adds tensors too (projection shortcuts).

Each width is searched with the probed stage's own values as set and everything else as cheap as
the space allows, so no point within the budget with those values has a wider stage at that depth;
the probes themselves (the other widths at their largest) cost more than the budget.
``Supernet.covers`` tells whether a given point fits; the tests check random and TPE points.
"""
from __future__ import annotations

import bisect
import itertools
import math
import re
from typing import Any, Optional

from nas import registry
from nas.builder import analytic_cost
from nas.config import ArchConfig
from nas.domains import Choice, Domain, Fixed, IntRange
from search_spaces.base import (DEPTH_LABELS, WIDTH_LABELS, InvalidArchitecture, Space, Trace, _is_number,
                                _values, flatten)

STRUCTURE = ("layout", "num_stages", "resolution")
STRIDE_LABEL = re.compile(r"stages\.\d+\.stride")
MAX_COMBINATIONS = 64  # a probed stage's numeric values are all combined up to this many combinations


def envelope_points(space: Space, macs_budget: Optional[float] = None) -> list[ArchConfig]:
    """The probes (see the module docstring) of ``space`` under ``macs_budget`` MACs (design
    resolution, 1000 classes, as a search counts them); without a budget, every dimension at its
    largest."""
    limit = float("inf") if macs_budget is None else float(macs_budget)
    base = flatten(space._cheapest("macs"))
    probes: dict[str, ArchConfig] = {}
    for structure, stages in _structures(space, base):
        context = {**base, **structure}
        walked = space._build_from(context)
        if walked is None:
            continue
        arch, trace = walked
        if any(arch.stages[i].block != structure.get(f"stages.{i}.block", arch.stages[i].block) for i in stages):
            continue  # the walk moved the block elsewhere: another structure covers it
        if analytic_cost(arch).macs > limit:
            continue
        widest = {label: _largest(space, context, label, dom, limit) for label, (dom, _) in trace.items()
                  if WIDTH_LABELS.fullmatch(label)}
        for i in stages:
            def own(label: str) -> bool:  # the probed stage's dimensions, and the global ones with the first stage
                return label.startswith(f"stages.{i}.") or (i == stages[0] and not label.startswith("stages."))

            # every combination of the values that choose weights of their own (``Params.unshared``), each
            # with every other choice in turn
            paths = {label: _values(dom) for label, (dom, _) in trace.items() if own(label) and _unshared(label)}
            choices = [{}] + [{label: v} for label, (dom, _) in trace.items() if own(label) and label not in structure
                              and label not in paths and _choice(label, dom) and not STRIDE_LABEL.fullmatch(label)
                              for v in _values(dom)]
            # an embedding's tensors, and the first block's it feeds, are largest at the widest stage: one block deep
            embedding = f"stages.{i}.embed.type"
            # the stage's every stride, the earlier stages' at their least: the network stride the cheapest
            # context reaches may leave this stage none but one
            earlier = {f"stages.{j}.stride": min(_declared(space, j)) for j in range(i)}
            choices += [{**earlier, f"stages.{i}.stride": v} for v in _declared(space, i)]
            variants = [{**dict(zip(paths, path)), **choice} for path in itertools.product(*paths.values())
                        for choice in choices]
            for extra in variants:
                shallow = set(extra) - set(paths) == {embedding}
                walked = space._build_from({**context, **extra})
                if walked is None:
                    continue
                if set(walked[1]) - set(trace):  # the choice brings dimensions of its own: at their cheapest
                    extra = {**flatten(space._cheapest("macs", {**structure, **extra})), **extra}
                    walked = space._build_from({**context, **extra})
                    if walked is None:
                        continue
                knobs = {label: _values(dom) for label, (dom, _) in walked[1].items() if own(label) and _numeric(dom)
                         and label not in STRUCTURE and not WIDTH_LABELS.fullmatch(label)
                         and label != f"stages.{i}.depth" and not _unshared(label) and not _choice(label, dom)}
                # every combination of the stage's numeric values when there are few, else three ends (see the
                # module docstring), depths and tuple lengths still at every value
                depths = [label for label in knobs if DEPTH_LABELS.fullmatch(label) or label.endswith(".len")]
                if math.prod(len(v) for v in knobs.values()) <= MAX_COMBINATIONS:
                    settings = [dict(zip(knobs, chosen)) for chosen in itertools.product(*knobs.values())]
                else:  # the largest values, the smallest, the cheapest (as the context has them), and each value alone
                    ends = [{label: end(values) for label, values in knobs.items()} for end in (max, min)] + [{}]
                    ends += [{label: v} for label, values in knobs.items() if label not in depths for v in values]
                    settings = [{**end, **dict(zip(depths, chosen))}
                                for end in ends for chosen in itertools.product(*(knobs[k] for k in depths))]
                for chosen in settings:
                    values = {**context, **extra, **chosen}
                    # a choice may bring widths of its own (a convolutional stem's layers), which depend on its values
                    shaped = space._build_from(values)
                    own_widest = {**{label: _largest(space, values, label, dom, limit)
                                     for label, (dom, _) in (shaped[1] if shaped else {}).items()
                                     if WIDTH_LABELS.fullmatch(label) and label not in widest}, **widest}
                    for probe in _stage_probes(space, values, own_widest, i, walked[1], limit, shallow):
                        probes.setdefault(probe.arch_id, probe)
    if not probes:
        raise InvalidArchitecture(f"space {space.name!r} has no architecture within the budget")
    return list(probes.values())


def _stage_probes(space: Space, values: dict[str, Any], widest: dict[str, Any], i: int, trace: Trace,
                  limit: float, shallow: bool = False) -> list[ArchConfig]:
    """Stage ``i`` at each depth the budget allows, at the widest width it can have at that depth
    (the other stages as cheap as ``values`` make them), the other widths at their ``widest``. Of
    the depths that allow one width only the deepest is kept: its tensors hold the others'.
    ``shallow``: the least depth only (the widest stage)."""
    depth_label, width_label = f"stages.{i}.depth", f"stages.{i}.width"
    widths: dict[Any, int] = {}  # width -> the deepest depth allowing it
    width = None
    for depth in _ascending(trace[depth_label][0])[:1 if shallow else None]:
        # a deeper stage is no wider: the search starts below the width of the depth before
        width = _largest(space, {**values, depth_label: depth}, width_label, trace[width_label][0], limit, width)
        if width is None:
            break  # deeper does not fit either
        widths[width] = depth
    before = "stem.width" if i == 0 else f"stages.{i - 1}.width"  # the width the stage starts from
    out = []
    for width, depth in widths.items():
        shape = {**values, **widest, depth_label: depth, width_label: width}
        options = [shape]
        if shape.get(before) == width:  # a width change adds tensors (projection shortcuts): probe one too
            lower = [v for v in _ascending(trace[before][0]) if v < width] if before in trace else []
            options += [{**shape, before: lower[-1]}] if lower else []
        for option in options:
            walked = space._build_from(option)
            if walked is not None:
                out.append(walked[0])
    return out


def _structures(space: Space, base: dict[str, Any]) -> list[tuple[dict[str, Any], list[int]]]:
    """(the values fixing a structure, the stages whose block type they fix) for every structure."""
    out = []
    if space.layouts:
        for layout in space.layouts:
            out.append(({"layout": layout}, list(range(len(layout.split("-"))))))
        return out
    probe = space._build_from(base)
    counts = _values(probe[1]["num_stages"][0]) if probe and "num_stages" in probe[1] else [len(probe[0].stages)]
    for n in counts:
        walked = space._build_from({**base, "num_stages": n})
        if walked is None:
            continue
        for i in range(n):
            label = f"stages.{i}.block"
            dom = walked[1].get(label, (Fixed(walked[0].stages[i].block), None))[0]
            for block in _values(dom):
                out.append(({"num_stages": n, label: block}, [i]))
    return out


def _largest(space: Space, values: dict[str, Any], label: str, dom: Domain, limit: float,
             upto: Optional[Any] = None) -> Optional[Any]:
    """The largest value of ``label`` (at most ``upto``, when known to be the most that fits) whose
    architecture (``values`` otherwise) costs at most ``limit`` MACs (the cost grows with the
    value), or None if even the smallest is over."""
    ordered = _ascending(dom)
    if upto is not None:
        ordered = ordered[:bisect.bisect_right(ordered, upto)]
    if limit == float("inf"):
        return ordered[-1]

    def fits(k: int) -> bool:
        walked = space._build_from({**values, label: ordered[k]})
        return walked is not None and analytic_cost(walked[0]).macs <= limit

    k = bisect.bisect_left(range(len(ordered)), True, key=lambda k: not fits(k))  # first index that does not fit
    return ordered[k - 1] if k else None


def _ascending(dom: Domain) -> list:
    return sorted(_values(dom))


def _declared(space: Space, i: int) -> list:
    """The strides stage ``i`` may have in ``space`` (its domain before the walk narrows it)."""
    from search_spaces.base import STRIDES
    return _values(space.domain(f"stages.{i}.stride", STRIDES))


def _choice(label: str, dom: Domain) -> bool:
    """A choice among names or switches (which may add tensors), or a stage's stride (a block may
    downsample with other layers than it keeps its size with), not one of the structure."""
    values = _values(dom)
    return label not in STRUCTURE and len(values) > 1 and (not all(_is_number(v) for v in values)
                                                            or STRIDE_LABEL.fullmatch(label) is not None)


def _unshared(label: str) -> bool:
    """Whether ``label`` is a field whose values have weights of their own (``Params.unshared``)."""
    parts = label.split(".")
    if parts[0] == "stages" and len(parts) == 5 and parts[2] == "embed":
        kind, name = "embed", parts[3]
    elif parts[0] == "stages" and len(parts) == 4:
        kind, name = "block", parts[2]
    elif parts[0] in ("stem", "head") and len(parts) == 3:
        kind, name = parts[0], parts[1]
    else:
        return False
    return name in registry.names(kind) and parts[-1] in registry.lookup(kind, name).params.unshared


def _numeric(dom: Domain) -> bool:
    values = _values(dom)
    return isinstance(dom, (Choice, IntRange)) and len(values) > 1 and all(_is_number(v) for v in values)
