"""A search space is a tree of choices shaped like the architecture config.

Its dimensions carry stable dotted labels (``stages.2.block``, ``stages.2.mbconv.expand_ratio``:
a component's parameters sit under its type's name, so a label always means one domain)
and are derived from the config types themselves: every ``Params`` field declares its domain
(``nas.domains.param``), and a space only narrows or fixes domains by label. One walk over the
config serves every use, so they cannot disagree:

- ``sample(trial)``: define-by-run through an Optuna trial (only active dimensions are suggested);
- ``freeze(values)``: a dict of label -> value into an :class:`~nas.ArchConfig`;
- ``encode(arch)``: the inverse, ``freeze(encode(a)) == a`` for every ``a`` inside the space;
- ``contains(arch)``: ``None``, or the reason ``arch`` lies outside;
- ``fit(arch, macs_budget=...)``: the same shape with its widths (and, if need be, depths) scaled
  to the budget.

Every sample is valid by construction: values that must agree with others are derived, not
left to chance. The walk itself keeps the network stride dividing the resolution and gives a
stage an embedding when its block cannot downsample or change the width; a component whose
parameters still break its rule (heads that do not divide the width, a stem whose last conv is
not the stem width, a block that needs global tokens) has the offending value replaced by the
nearest one of its domain that satisfies the rule, and the walk runs again. The replacement is a
pure function of the values, so ``freeze(trial.params)`` gives back the sampled architecture.

Values are scalars (a tuple field becomes ``label.len`` plus ``label.0``, ``label.1``, ...), so
``encode(arch)`` can seed an Optuna study with ``study.enqueue_trial``.
"""
from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass, field, fields, replace
from functools import lru_cache
from typing import Any, Callable, Mapping, Optional

from nas import registry
from nas.builder import Placed, analytic_cost, check_arch, components
from nas.config import (ArchConfig, ConfigError, EmbedConfig, GlobalTokensConfig, HeadConfig, StageConfig,
                        StemConfig)
from nas.domains import Choice, Domain, Fixed, IntRange, Same, Seq, domain_of
from nas.registry import Cost, Geometry

# Structural domains of the hybrid space; the per-component ones come from the Params types.
RESOLUTIONS = Choice(224, 256)
NUM_STAGES = IntRange(1, 6)
DEPTHS = IntRange(1, 32)
WIDTHS = IntRange(8, 2048, 4)
STRIDES = Choice(1, 2)
NUM_GLOBAL_TOKENS = IntRange(0, 64)
GLOBAL_TOKEN_DIMS = Choice(None, 64, 128, 192, 256)

# What a budget fit scales: every channel width of the stem, the stages and the head, and the stage depths.
WIDTH_LABELS = re.compile(r"stem\.width|stem\.\w+\.widths\.\d+|stages\.\d+\.(width|mobilevit\.dim)"
                          r"|head\.\w+\.(width|conv_width|fc_width|hidden_width)")
DEPTH_LABELS = re.compile(r"stages\.\d+\.(depth|embed\.mbconv\.depth)")
FIT_RANGE = 256.0  # multipliers searched in [1/256, 256]; each value is clamped to its own domain anyway
FIT_LOW, FIT_GOOD, FIT_AIM = 0.5, 0.85, 0.92  # a fit lands in [0.5, 1] x the budget, aiming at 0.92
FIT_STEPS = 10
MAX_FIXES = 16  # derived replacements per walk; a valid architecture needs a handful at most
WIDTH_CANDIDATES = 8  # widths tried when a component's own parameters cannot satisfy its rule


class InvalidArchitecture(ValueError):
    """A sample or a set of values that makes no valid architecture; the message says why."""


Decide = Callable[[str, Domain], Any]
Trace = dict[str, tuple[Domain, Any]]  # label -> (domain used, value decided) in one walk


@dataclass(frozen=True)
class Space:
    """A named search space. ``overrides`` maps labels, or patterns with ``*`` standing for one
    label segment (``stages.*.mbconv.expand_ratio``), to the domain used instead of the base one;
    the exact label wins over patterns, and patterns apply in order. A key that matches no
    dimension of the space is refused (:class:`nas.ConfigError` naming it). Parameter labels name
    the component type: ``stem.patch.patch_size``, ``stages.1.embed.conv.norm``,
    ``stages.2.mbconv.expand_ratio``, ``head.pool.norm``. ``layouts`` makes the stage pattern
    (e.g. ``C-C-T-T``) one dimension, with ``blocks`` naming the block type of each code."""

    name: str
    description: str
    overrides: Mapping[str, Domain] = field(default_factory=dict)
    presets: tuple[str, ...] = ()
    layouts: tuple[str, ...] = ()
    blocks: Mapping[str, str] = field(default_factory=dict)
    # the least network stride (the stem's times every stage's so far) at which a block type may run;
    # a sampled block that may not run at its stage's stride is replaced by the nearest one that may
    least_stride: Mapping[str, int] = field(default_factory=dict)
    # widths never shrink from the stem to the last stage (a narrower sampled width becomes the previous one)
    growing_widths: bool = False
    # the largest network stride a stage may reach (a larger sampled stride becomes the nearest that keeps it)
    max_stride: Optional[int] = None
    # narrower domains (keys as in ``overrides``) of the points a weight-sharing supernet of this space
    # holds: see ``supernet_space``
    supernet: Mapping[str, Domain] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._init_caches()
        self._check_overrides()

    def _init_caches(self) -> None:
        # caches of the label -> override lookup (the walk asks it for every label, many times)
        object.__setattr__(self, "_patterns", [(_pattern(k), d) for k, d in self.overrides.items() if "*" in k])
        object.__setattr__(self, "_resolved", {})
        object.__setattr__(self, "_cheapest_found", {})  # smallest_cost's descents, by ("macs" / "params", fixed)
        object.__setattr__(self, "_narrowed", None)

    def supernet_space(self) -> "Space":
        """The sub-space a weight-sharing supernet of this space holds, is trained over and searches:
        this space with the ``supernet`` domains instead of its own (itself when there are none).
        A space's breadth can make its supernet too large to train (every block type at every
        stage, each at the widest and deepest the budget allows it alone; see
        ``benchmarks/supernet_size.py``), and some values change what shared weights compute
        (activations, norm styles) or cannot be sliced (grouped convs after a shuffle): the
        narrowing keeps the structure searchable and fixes or bounds the rest."""
        if not self.supernet:
            return self
        if self._narrowed is None:
            merged = {**self.overrides, **self.supernet}
            loose = object.__new__(Space)  # unchecked: its own overrides may name dimensions the narrowing removed
            for f in fields(Space):
                object.__setattr__(loose, f.name, getattr(self, f.name))
            object.__setattr__(loose, "overrides", merged)
            loose._init_caches()
            labels = loose._labels()
            # the narrowing wins over the space's own domains, a pattern of it over their exact labels too
            narrower = [_pattern(k) for k in self.supernet if "*" in k]
            kept = {k: d for k, d in self.overrides.items() if k not in self.supernet and _names_one_of(k, labels)
                    and not any(p.fullmatch(k) for p in narrower)}
            narrowed = replace(self, overrides={**kept, **self.supernet}, supernet={})
            from nas import get_arch
            inside = tuple(name for name in self.presets if narrowed.contains(get_arch(name)) is None)
            object.__setattr__(self, "_narrowed", replace(narrowed, presets=inside))
        return self._narrowed

    # ------------------------------------------------------------------ domains
    def domain(self, label: str, base: Domain) -> Domain:
        if label not in self._resolved:
            dom = self.overrides.get(label)
            if dom is None:
                dom = next((d for p, d in self._patterns if p.fullmatch(label)), None)
            self._resolved[label] = dom
        return self._resolved[label] or base

    def _labels(self) -> set[str]:
        """Every label of the space, a tuple's length and items included."""
        labels = set()
        for label, dom, _ in self._dimension_domains():
            labels.add(label)
            if isinstance(dom, Seq):
                labels |= {f"{label}.len", *(f"{label}.{j}" for j in range(dom.max_len))}
        return labels

    def _check_overrides(self) -> None:
        labels = self._labels()
        for key in self.overrides:
            if _names_one_of(key, labels):
                continue
            shapes = sorted(labels | {re.sub(r"(?<=\.)\d+(?=\.)", "*", label) for label in labels})
            close = difflib.get_close_matches(key, shapes, n=1)
            raise ConfigError(f"space {self.name!r}: override key {key!r} matches no dimension of the space"
                              + (f"; did you mean {close[0]!r}?" if close else ""))

    # ------------------------------------------------------------------ the one walk
    def _walk(self, decide: Decide, trace: Optional[Trace] = None) -> ArchConfig:
        decided: dict[str, Any] = {}

        def pick(label: str, base: Domain, fits: Optional[Callable[[Any], bool]] = None) -> Any:
            dom = self.domain(label, base)
            if isinstance(dom, Same):
                dom = Fixed(decided[dom.label])
            if fits is not None:
                fitting = [v for v in _values(dom) if fits(v)]
                # Optuna needs a label's choices to be the same in every trial, so the domain cannot
                # shrink; when one value alone fits it is fixed, otherwise a value that does not fit
                # is replaced by the nearest one that does.
                if len(fitting) == 1:
                    dom = Fixed(fitting[0])
            value = decide(label, dom)
            if fits is not None and not fits(value):
                value = next((v for v in _nearest_first(dom, value) if fits(v)), value)
            decided[label] = value
            if trace is not None:
                trace[label] = (dom, value)
            return value

        stem_type = pick("stem.type", Choice(*registry.names("stem")))
        stem_spec = registry.lookup("stem", stem_type)
        stem_width = pick("stem.width", WIDTHS)
        stem = StemConfig(stem_type, stem_width, self._params(f"stem.{stem_type}", stem_spec.params, pick))
        total_stride = stem_spec.stride(stem.params)
        resolution = pick("resolution", RESOLUTIONS, fits=lambda r: r % total_stride == 0)
        if self.layouts:
            block_names = [self.blocks[c] for c in pick("layout", Choice(*self.layouts)).split("-")]
        else:
            block_names = [None] * pick("num_stages", NUM_STAGES)  # picked per stage, once its stride is known
        head_type = pick("head.type", Choice(*registry.names("head")))
        num_tokens = pick("global_tokens.num", NUM_GLOBAL_TOKENS)
        tokens = GlobalTokensConfig(num_tokens, pick("global_tokens.dim", GLOBAL_TOKEN_DIMS)) if num_tokens else None
        # the least the later stages will downsample, so that an earlier stride leaves them room
        least_after = [math.prod(min(_values(self.domain(f"stages.{j}.stride", STRIDES)) or [1])
                                 for j in range(i + 1, len(block_names))) for i in range(len(block_names))]
        stages, channels = [], stem.width
        for i, block in enumerate(block_names):
            p = f"stages.{i}"
            depth = pick(f"{p}.depth", DEPTHS)
            width = pick(f"{p}.width", WIDTHS, fits=(lambda w: w >= channels) if self.growing_widths else None)
            stride = pick(f"{p}.stride", STRIDES,
                          fits=lambda s: resolution % (total_stride * s * least_after[i]) == 0
                          and (self.max_stride is None or total_stride * s <= self.max_stride))
            total_stride *= stride
            block = block or pick(f"{p}.block", Choice(*registry.names("block")),
                                  fits=lambda b: self.least_stride.get(b, 1) <= total_stride)
            must_embed = (stride > 1 or width != channels) and not registry.lookup("block", block).can_downsample
            geo = Geometry(channels, width, stride, (resolution, resolution), (resolution, resolution))
            embed_type = pick(f"{p}.embed.type", Choice(*registry.names("embed")),
                              fits=lambda e: not must_embed if e == "none" else _embed_fits(e, geo))
            embed = EmbedConfig(embed_type, self._params(f"{p}.embed.{embed_type}",
                                                         registry.lookup("embed", embed_type).params, pick))
            params = self._params(f"{p}.{block}", registry.lookup("block", block).params, pick)
            stages.append(StageConfig(block, depth, width, stride, params, embed))
            channels = width
        head = HeadConfig(head_type, self._params(f"head.{head_type}", registry.lookup("head", head_type).params, pick))
        return ArchConfig(stem, tuple(stages), head, tokens, resolution)

    def _params(self, prefix: str, cls: type, pick: Callable[[str, Domain], Any]) -> Any:
        values = {}
        for f in fields(cls):
            label = f"{prefix}.{f.name}"
            dom = self.domain(label, domain_of(f))
            if isinstance(dom, Seq):
                n = pick(f"{label}.len", IntRange(dom.min_len, dom.max_len))
                items: list = []
                for j in range(n):
                    fits = None
                    if self.max_stride and prefix.startswith("stem.") and f.name == "strides":
                        # a stem's stride is the product of its convs' strides
                        fits = (lambda v, done=math.prod(items): done * v <= self.max_stride)
                    items.append(pick(f"{label}.{j}", dom.item, fits))
                values[f.name] = tuple(items)
            else:
                values[f.name] = pick(label, dom)
        return _params_of(cls, tuple(values.items()))

    def _build(self, decide: Decide, trace: Optional[Trace] = None) -> ArchConfig:
        """The walk with derived values: while a component breaks its rule, one of its values is
        replaced (see :meth:`_fix`) and the walk runs again."""
        fixes: dict[str, Any] = {}
        memo: dict[tuple[str, Domain], Any] = {}  # each label is decided (suggested) once

        def fixed_first(label: str, dom: Domain) -> Any:
            if label in fixes and not isinstance(dom, Fixed):
                return fixes[label]
            if (label, dom) not in memo:
                memo[label, dom] = decide(label, dom)
            return memo[label, dom]

        for attempt in range(MAX_FIXES + 1):
            walked: Trace = {}
            arch = self._walk(fixed_first, walked)
            broken = _broken(arch)
            fix = self._fix(broken, walked, fixes) if broken is not None and attempt < MAX_FIXES else None
            if fix is None:
                if trace is not None:
                    trace.update(walked)
                return arch
            fixes.update(fix)

    def _fix(self, broken: Placed, walked: Trace, fixes: dict[str, Any]) -> Optional[dict[str, Any]]:
        """The one value to replace so that ``broken`` keeps its rule: one of its own parameters
        (see :meth:`_own_fix`), else its stage's width, else the global tokens, each the nearest
        value that lets the component keep its rule or moves it on to another rule."""
        own = self._own_fix(broken, walked)
        if own is not None:
            return own
        reason = broken.params.check(broken.geometry)
        stage = re.match(r"stages\.\d+", broken.where)
        moved_on = None  # a replacement after which the component breaks another rule: used if nothing better
        for label in ([f"{stage.group()}.width"] if stage else []) + ["global_tokens.dim", "global_tokens.num"]:
            if label not in walked:
                continue
            dom, current = walked[label]
            for candidate in _nearest_first(dom, current)[:WIDTH_CANDIDATES]:
                trial, probed = {**fixes, label: candidate}, {}

                def probe(lab: str, d: Domain) -> Any:
                    if isinstance(d, Fixed):
                        return d.value
                    return trial[lab] if lab in trial else walked[lab][1] if lab in walked else _lowest(d)

                try:
                    placed = [q for q in components(self._walk(probe, probed)) if q.where == broken.where]
                except ConfigError:
                    continue
                after = placed[0].params.check(placed[0].geometry) if placed else None
                if after is None or self._own_fix(placed[0], probed) is not None:
                    return {label: candidate}
                if moved_on is None and _rule(after) != _rule(reason):
                    moved_on = {label: candidate}
        return moved_on

    @staticmethod
    def _own_fix(broken: Placed, walked: Trace) -> Optional[dict[str, Any]]:
        """One of the component's own parameters replaced so that it keeps its rule: numbers and
        names before switches, later fields first, each the nearest value of its domain that works."""
        params, prefix = broken.params, f"{broken.where}.{broken.spec.name}"
        own = list(reversed(fields(params)))
        for f in sorted(own, key=lambda f: isinstance(getattr(params, f.name), bool)):
            value = getattr(params, f.name)
            slots = [(f"{prefix}.{f.name}.{j}", j) for j in reversed(range(len(value)))] if isinstance(value, tuple) \
                else [(f"{prefix}.{f.name}", None)]
            for label, j in slots:
                if label not in walked:
                    continue
                dom, current = walked[label]
                for candidate in _nearest_first(dom, current):
                    new = candidate if j is None else value[:j] + (candidate,) + value[j + 1:]
                    changed = {g.name: getattr(params, g.name) for g in fields(params)} | {f.name: new}
                    try:
                        if _params_of(type(params), tuple(changed.items())).check(broken.geometry) is None:
                            return {label: candidate}
                    except ConfigError:
                        continue
        return None

    # ------------------------------------------------------------------ the four uses
    def sample(self, trial: Any) -> ArchConfig:
        """Sample through an Optuna trial. Every sample is a valid architecture; a value derived
        from others may differ from the one suggested (``freeze(trial.params)`` derives it again)."""

        def decide(label: str, dom: Domain) -> Any:
            if isinstance(dom, Fixed):
                return dom.value
            if isinstance(dom, Choice):
                if len(dom.values) == 1:
                    return dom.values[0]
                return trial.suggest_categorical(label, list(dom.values))
            if isinstance(dom, IntRange):
                if dom.low == dom.high:
                    return dom.low
                return trial.suggest_int(label, dom.low, dom.high, step=dom.step, log=dom.log)
            raise TypeError(f"{label}: cannot sample domain {dom!r}")

        return self._checked(lambda: self._build(decide))

    def freeze(self, values: Mapping[str, Any]) -> ArchConfig:
        """The architecture the given values describe (``values`` as produced by ``encode``)."""
        used: set[str] = set()

        def decide(label: str, dom: Domain) -> Any:
            if label in values:
                used.add(label)
                value = values[label]
                if not dom.contains(value):
                    raise InvalidArchitecture(f"{label} = {value!r} is outside {dom.describe()}")
                return value
            if isinstance(dom, Fixed):
                return dom.value
            if isinstance(dom, (Choice, IntRange)) and _single(dom) is not None:
                return _single(dom)
            raise InvalidArchitecture(f"no value for dimension {label!r} ({dom.describe()})")

        arch = self._checked(lambda: self._build(decide))
        unused = set(values) - used
        if unused:
            raise InvalidArchitecture(f"values for inactive or unknown dimensions: {sorted(unused)}")
        return arch

    def encode(self, arch: ArchConfig) -> dict[str, Any]:
        """The values of ``arch``'s active, searched dimensions; raises if ``arch`` is outside."""
        values, reason = self._encode(arch)
        if reason:
            raise InvalidArchitecture(reason)
        return values

    def contains(self, arch: ArchConfig) -> Optional[str]:
        """``None`` if ``arch`` lies in this space, else the reason it does not."""
        return self._encode(arch)[1]

    def _encode(self, arch: ArchConfig) -> tuple[dict[str, Any], Optional[str]]:
        reason = check_arch(arch)
        if reason:
            return {}, f"invalid architecture: {reason}"
        flat = flatten(arch)
        values: dict[str, Any] = {}

        class Outside(Exception):
            pass

        def decide(label: str, dom: Domain) -> Any:
            if label not in flat:
                raise Outside(f"the architecture has no value for dimension {label!r}")
            value = flat[label]
            if not dom.contains(value):
                raise Outside(f"{label} = {value!r} is outside {dom.describe()}")
            if not isinstance(dom, Fixed) and _single(dom) is None:
                values[label] = value
            return value

        try:
            rebuilt = self._walk(decide)  # a valid architecture needs no derived replacement
        except (Outside, ConfigError, KeyError) as e:
            return {}, str(e)
        if rebuilt != arch:
            return {}, "the space cannot express this architecture exactly"
        return values, None

    def _checked(self, make: Callable[[], ArchConfig]) -> ArchConfig:
        try:
            arch = make()
        except ConfigError as e:
            raise InvalidArchitecture(str(e)) from None
        reason = check_arch(arch)
        if reason:
            raise InvalidArchitecture(reason)
        return arch

    # ------------------------------------------------------------------ budgets
    def fit(self, arch: ArchConfig, macs_budget: Optional[float] = None,
            params_budget: Optional[float] = None) -> ArchConfig:
        """``arch`` (a point of this space) with the same shape, its widths scaled to the budgets.

        Every width (stem, stages, head; see ``WIDTH_LABELS``) is multiplied by one factor and
        snapped to its own domain, so the result stays a valid point of the space; the factor is
        the largest that keeps the analytic cost (``nas.analytic_cost``: design resolution, 1000
        classes) within every budget given, found by a few steps of regula falsi. When the narrowest widths are
        still over budget, or the widest under half of it, the stage depths are scaled first the
        same way. The result lies within [0.5, 1] x the budget whenever the shape allows; otherwise
        it is the nearest the shape reaches (the caller checks the budget, and
        :meth:`smallest_cost` says what the space can reach at all)."""
        budgets = [(float(b), what) for b, what in ((macs_budget, "macs"), (params_budget, "params")) if b is not None]
        for b, what in budgets:
            if not b > 0:
                raise ConfigError(f"{what} budget must be > 0, got {b:g}")
        if not budgets:
            return arch
        outside = self.contains(arch)
        if outside:
            raise InvalidArchitecture(f"space {self.name!r} cannot fit an architecture outside it: {outside}")
        flat = flatten(arch)
        seen: dict[tuple[float, float], tuple[ArchConfig, float]] = {}

        def at(width_mult: float, depth_mult: float) -> tuple[ArchConfig, float]:
            key = (width_mult, depth_mult)
            if key not in seen:
                def decide(label: str, dom: Domain) -> Any:
                    if isinstance(dom, Fixed):
                        return dom.value
                    value = flat.get(label)
                    if WIDTH_LABELS.fullmatch(label) and _is_number(value):
                        return _snap(dom, value * width_mult)
                    if DEPTH_LABELS.fullmatch(label) and _is_number(value):
                        return _snap(dom, value * depth_mult)
                    return value if label in flat and dom.contains(value) else _lowest(dom)

                try:
                    scaled = self._checked(lambda: self._build(decide))
                except InvalidArchitecture:  # widths no value can repair count as over budget; never chosen
                    seen[key] = arch, math.inf
                else:
                    cost = analytic_cost(scaled)
                    seen[key] = scaled, max(getattr(cost, what) / b for b, what in budgets)
            return seen[key]

        ratio = at(1.0, 1.0)[1]
        if FIT_LOW <= ratio <= 1:
            return at(1.0, 1.0)[0]
        narrow, wide = 1 / FIT_RANGE, FIT_RANGE
        depth_mult = 1.0
        if ratio > 1 and at(narrow, 1.0)[1] > 1:  # too deep for the budget even at the narrowest widths
            depth_mult = _largest_within(lambda d: at(narrow, d)[1], 1 / FIT_RANGE, 1.0) or 1 / FIT_RANGE
        elif ratio < FIT_LOW and at(wide, 1.0)[1] < FIT_LOW:  # too shallow to use the budget even at the widest
            depth_mult = _largest_within(lambda d: at(wide, d)[1], 1.0, FIT_RANGE) or 1.0
        width_mult = _largest_within(lambda w: at(w, depth_mult)[1], narrow, wide) or narrow
        return at(width_mult, depth_mult)[0]

    def smallest_cost(self) -> Cost:
        """The smallest params and the smallest MACs (design resolution, 1000 classes) that
        architectures of this space reach, found by a coordinate descent from the lowest value of
        every dimension (each a reachable architecture; the two may come from different ones). A
        budget below it cannot be met."""
        return Cost(params=analytic_cost(self._cheapest("params")).params,
                    macs=analytic_cost(self._cheapest("macs")).macs)

    def _build_from(self, values: Mapping[str, Any]) -> Optional[tuple[ArchConfig, Trace]]:
        """The architecture ``values`` (label -> value) describe, every other label at its lowest
        value (a value outside its label's domain counts as absent), with its trace; None if the
        walk makes no valid architecture."""
        trace: Trace = {}

        def decide(label: str, dom: Domain) -> Any:
            if isinstance(dom, Fixed):
                return dom.value
            return values[label] if label in values and dom.contains(values[label]) else _lowest(dom)

        try:
            return self._checked(lambda: self._build(decide, trace)), trace
        except InvalidArchitecture:
            return None

    def smallest(self, what: str = "macs") -> ArchConfig:
        """The architecture with the least MACs (``what="params"``: parameters) that
        :meth:`smallest_cost` found."""
        return self._cheapest(what)

    def _cheapest(self, what: str, fixed: Optional[Mapping[str, Any]] = None) -> ArchConfig:
        """The descent of :meth:`smallest`; ``fixed`` (label -> value) holds some values where they apply."""
        fixed = dict(fixed or {})
        key = (what, tuple(sorted(fixed.items())))
        if key in self._cheapest_found:
            return self._cheapest_found[key]

        def evaluate(values: dict[str, Any]) -> Optional[tuple[tuple, ArchConfig, Trace]]:
            built = self._build_from(values)
            if built is None:
                return None
            arch, trace = built
            cost = analytic_cost(arch)
            key = (cost.params, cost.macs) if what == "params" else (cost.macs, cost.params)
            return key, arch, trace

        best = evaluate(fixed)
        if best is None:
            raise InvalidArchitecture(f"space {self.name!r}: the lowest value of every dimension makes no architecture"
                                      + (f" with {fixed}" if fixed else ""))
        improved = True
        while improved:
            improved = False
            for label, (dom, value) in list(best[2].items()):
                # the other choices; widths, depths and integer ranges start (and are cheapest) at their least
                scaled = WIDTH_LABELS.fullmatch(label) or DEPTH_LABELS.fullmatch(label)
                for candidate in dom.values if isinstance(dom, Choice) and not scaled else ():
                    if candidate == value or label not in best[2] or label in fixed:
                        continue
                    tried = evaluate({**{k: v for k, (_, v) in best[2].items()}, label: candidate, **fixed})
                    if tried is not None and tried[0] < best[0]:
                        best, improved = tried, True
        self._cheapest_found[key] = best[1]
        return best[1]

    def component_types(self) -> dict[str, set[str]]:
        """The stem, block, embedding and head types architectures of this space may use, by kind."""
        kinds = {"stem.type": "stem", "stages.*.block": "block", "stages.*.embed.type": "embed", "head.type": "head"}
        found: dict[str, set[str]] = {}
        for label, dom, _ in self._dimension_domains():
            kind = kinds.get(re.sub(r"^stages\.\d+\.", "stages.*.", label))
            if kind:
                found.setdefault(kind, set()).update(_values(dom))
            elif label == "layout":  # a layout names each stage's block by its code
                found.setdefault("block", set()).update(self.blocks[c] for x in _values(dom) for c in x.split("-"))
        return found

    def envelope(self, macs_budget: Optional[float] = None) -> list[ArchConfig]:
        """Architectures of this space whose tensors, factor by factor at their largest, hold those
        of every point within ``macs_budget`` (what ``nas.Supernet.for_space`` is sized from; see
        ``search_spaces.envelope``)."""
        from search_spaces.envelope import envelope_points
        return envelope_points(self, macs_budget)

    @property
    def budget_note(self) -> str:
        """How a budget is met in this space, in a few sentences (for ``nas space show``)."""
        labels = [(f"{label}.0", dom.item) if isinstance(dom, Seq) else (label, dom)  # a tuple's items
                  for label, dom, _ in self._dimension_domains()]
        scaled = sorted({re.sub(r"(?<=\.)\d+(?=\.|$)", "*", label) for label, dom in labels
                         if (WIDTH_LABELS.fullmatch(label) or DEPTH_LABELS.fullmatch(label))
                         and not isinstance(dom, (Fixed, Same)) and _single(dom) is None})
        return ("Every sample is a valid architecture: coupled values (a stem's last width, head counts, an "
                "embedding where a stage must downsample, the global tokens a block needs) are derived from the "
                "others. Under a MAC or params budget the sampled shape (layout, block parameters, depths) is kept "
                "and every width is scaled by one factor, found in a few steps with the analytic counter and snapped "
                "to its own domain, so that the candidate costs 0.5 to 1 x the budget; when even the narrowest "
                "widths are over budget (or the widest under half of it) the depths are scaled first. Scaled here: "
                + (", ".join(scaled) or "nothing (every width and depth is fixed)") + ".")

    # ------------------------------------------------------------------ description
    def dimensions(self) -> list[tuple[str, str, str]]:
        """(label, domain, condition) of every dimension an architecture of this space may use;
        ``condition`` says when a conditional dimension is active ("" when always)."""
        return [(label, dom.describe(), when) for label, dom, when in self._dimension_domains()]

    def _dimension_domains(self) -> list[tuple[str, Domain, str]]:
        out: list[tuple[str, Domain, str]] = []

        def add(label: str, base: Domain, when: str = "") -> Domain:
            dom = self.domain(label, base)
            out.append((label, dom, when))
            return dom

        def add_params(prefix: str, kind: str, types: list, when_label: str) -> None:
            for t in types:
                for f in fields(registry.lookup(kind, t).params):
                    add(f"{prefix}.{t}.{f.name}", domain_of(f), f"{when_label} = {t!r}" if len(types) > 1 else "")

        add("resolution", RESOLUTIONS)
        add_params("stem", "stem", _values(add("stem.type", Choice(*registry.names("stem")))), "stem.type")
        add("stem.width", WIDTHS)
        tokens = add("global_tokens.num", NUM_GLOBAL_TOKENS)
        if _values(tokens) != [0]:
            add("global_tokens.dim", GLOBAL_TOKEN_DIMS, "global_tokens.num > 0")
        if self.layouts:
            layouts = _values(add("layout", Choice(*self.layouts)))
            n_max = max(len(x.split("-")) for x in layouts)
            per_stage = [sorted({self.blocks[x.split("-")[i]] for x in layouts if len(x.split("-")) > i})
                         for i in range(n_max)]
        else:
            n = add("num_stages", NUM_STAGES)
            n_max = max(_values(n)) if _values(n) else n.high
            per_stage = [None] * n_max
        for i in range(n_max):
            p = f"stages.{i}"
            blocks = per_stage[i] or _values(add(f"{p}.block", Choice(*registry.names("block"))))
            for name, base in (("depth", DEPTHS), ("width", WIDTHS), ("stride", STRIDES)):
                add(f"{p}.{name}", base)
            embeds = _values(add(f"{p}.embed.type", Choice(*registry.names("embed"))))
            add_params(f"{p}.embed", "embed", embeds, f"{p}.embed.type")
            add_params(p, "block", blocks, f"{p}.block")
        add_params("head", "head", _values(add("head.type", Choice(*registry.names("head")))), "head.type")
        return out


def _broken(arch: ArchConfig) -> Optional[Placed]:
    """The first component whose parameters break their rule at their place, if any."""
    try:
        return next((p for p in components(arch) if p.spec is not None and p.params.check(p.geometry)), None)
    except ConfigError:
        return None


def _rule(reason: str) -> str:
    """A broken rule without its numbers: two reasons differing only in values name the same rule."""
    return re.sub(r"\d+", "#", reason)


def _params_of(cls: type, items: tuple) -> Any:
    """``cls(**dict(items))``, made once: the walk builds the same frozen params many times. The
    key holds each value's type, so that 4 and 4.0 (or 1 and True) give different params."""
    return _params_cached(cls, tuple((name, type(value), value) for name, value in items))


@lru_cache(maxsize=1 << 16)
def _params_cached(cls: type, typed: tuple) -> Any:
    return cls(**{name: value for name, _, value in typed})


@lru_cache(maxsize=4096)
def _embed_fits(embed_type: str, geo: Geometry) -> bool:
    """Can this embedding, with its default parameters, take the stage's stride and width change?"""
    return registry.lookup("embed", embed_type).params().check(geo) is None


def _largest_within(cost_ratio: Callable[[float], float], low: float, high: float) -> Optional[float]:
    """The largest multiplier in [low, high] whose cost ratio is <= 1 (the ratio grows with the
    multiplier), or None if even ``low`` is over. Regula falsi in log-log scale: costs are close to
    a power of the multiplier, so a few steps land between FIT_GOOD and 1."""
    ratio_high = cost_ratio(high)
    if ratio_high <= 1:
        return high
    ratio_low = cost_ratio(low)
    if ratio_low > 1:
        return None
    for _ in range(FIT_STEPS):
        if ratio_low >= FIT_GOOD:
            break
        # where the line through the two ends reaches the aim, kept inside the bracket
        t = math.log(FIT_AIM / ratio_low) / math.log(ratio_high / ratio_low)
        mid = low * (high / low) ** min(max(t, 0.1), 0.9)
        ratio = cost_ratio(mid)
        if ratio > 1:
            high, ratio_high = mid, ratio
        else:
            low, ratio_low = mid, ratio
    return low


def flatten(arch: ArchConfig) -> dict[str, Any]:
    """Every label of ``arch`` with its value (the inverse of the walk's decisions)."""
    flat: dict[str, Any] = {"resolution": arch.resolution, "stem.type": arch.stem.type, "stem.width": arch.stem.width,
                            "num_stages": len(arch.stages), "head.type": arch.head.type}
    gt = arch.global_tokens
    flat["global_tokens.num"] = gt.num if gt else 0
    if gt:
        flat["global_tokens.dim"] = gt.dim
    _flatten_params(f"stem.{arch.stem.type}", arch.stem.params, flat)
    _flatten_params(f"head.{arch.head.type}", arch.head.params, flat)
    try:
        flat["layout"] = arch.layout
    except ConfigError:
        pass
    for i, st in enumerate(arch.stages):
        p = f"stages.{i}"
        flat.update({f"{p}.block": st.block, f"{p}.depth": st.depth, f"{p}.width": st.width, f"{p}.stride": st.stride,
                     f"{p}.embed.type": st.embed.type})
        _flatten_params(f"{p}.embed.{st.embed.type}", st.embed.params, flat)
        _flatten_params(f"{p}.{st.block}", st.params, flat)
    return flat


def _flatten_params(prefix: str, params: Any, flat: dict[str, Any]) -> None:
    for f in fields(params):
        value = getattr(params, f.name)
        label = f"{prefix}.{f.name}"
        flat[label] = value
        if isinstance(value, tuple):
            flat[f"{label}.len"] = len(value)
            flat.update({f"{label}.{j}": v for j, v in enumerate(value)})


def _names_one_of(key: str, labels: set[str]) -> bool:
    """Whether an override key (a label or a pattern) names one of ``labels``."""
    return key in labels or ("*" in key and any(_pattern(key).fullmatch(label) for label in labels))


def _pattern(pattern: str) -> re.Pattern:
    return re.compile(re.escape(pattern).replace(r"\*", r"[^.]+"))


def _single(dom: Domain) -> Any:
    if isinstance(dom, Choice) and len(dom.values) == 1:
        return dom.values[0]
    if isinstance(dom, IntRange) and dom.low == dom.high:
        return dom.low
    return None


def _values(dom: Domain) -> list:
    """Every value of a finite domain, in order ([] for a tuple domain)."""
    if isinstance(dom, Fixed):
        return [dom.value]
    if isinstance(dom, Choice):
        return list(dom.values)
    if isinstance(dom, IntRange):
        return list(range(dom.low, dom.high + 1, dom.step))
    return []


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _nearest_first(dom: Domain, value: Any) -> list:
    """The domain's other values, nearest to ``value`` first (by size for numbers, else by position)."""
    values = _values(dom)
    if _is_number(value) and all(_is_number(v) for v in values):
        order = sorted(range(len(values)), key=lambda i: (abs(values[i] - value), values[i]))
    else:
        here = next((i for i, v in enumerate(values) if v == value and type(v) is type(value)), 0)
        order = sorted(range(len(values)), key=lambda i: abs(i - here))
    return [values[i] for i in order if not (values[i] == value and type(values[i]) is type(value))]


def _lowest(dom: Domain) -> Any:
    """The smallest value of a numeric domain, else its first."""
    values = _values(dom)
    return min(values) if all(_is_number(v) for v in values) else values[0]


def _snap(dom: Domain, target: float) -> Any:
    """The domain's value nearest ``target`` (an int domain gives an int)."""
    if isinstance(dom, IntRange):
        steps = round((min(max(target, dom.low), dom.high) - dom.low) / dom.step)
        return min(dom.low + steps * dom.step, dom.high)
    values = [v for v in _values(dom) if _is_number(v)]
    return min(values, key=lambda v: (abs(v - target), v))
