"""A search space is a tree of choices shaped like the architecture config.

Its dimensions carry stable dotted labels (``stages.2.block``, ``stages.2.mbconv.expand_ratio``:
a component's parameters sit under its type's name, so a label always means one domain)
and are derived from the config types themselves: every ``Params`` field declares its domain
(``nas.domains.param``), and a space only narrows or fixes domains by label. One walk over the
config serves four uses, so they cannot disagree:

- ``sample(trial)``: define-by-run through an Optuna trial (only active dimensions are suggested);
- ``freeze(values)``: a dict of label -> value into an :class:`~nas.ArchConfig`;
- ``encode(arch)``: the inverse, ``freeze(encode(a)) == a`` for every ``a`` inside the space;
- ``contains(arch)``: ``None``, or the reason ``arch`` lies outside.

Values are scalars (a tuple field becomes ``label.len`` plus ``label.0``, ``label.1``, ...), so
``encode(arch)`` can seed an Optuna study with ``study.enqueue_trial``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Mapping, Optional

from nas import registry
from nas.builder import check_arch
from nas.config import (ArchConfig, ConfigError, EmbedConfig, GlobalTokensConfig, HeadConfig, StageConfig,
                        StemConfig)
from nas.domains import Choice, Domain, Fixed, IntRange, Same, Seq, domain_of

# Structural domains of the hybrid space; the per-component ones come from the Params types.
RESOLUTIONS = Choice(224, 256)
NUM_STAGES = IntRange(1, 8)
DEPTHS = IntRange(1, 32)
WIDTHS = IntRange(8, 2048, 4)
STRIDES = Choice(1, 2)
NUM_GLOBAL_TOKENS = IntRange(0, 64)
GLOBAL_TOKEN_DIMS = Choice(None, 64, 128, 192, 256)


class InvalidArchitecture(ValueError):
    """A sample or a set of values that makes no valid architecture; the message says why."""


@dataclass(frozen=True)
class Space:
    """A named search space. ``overrides`` maps labels, or patterns with ``*`` standing for one
    label segment (``stages.*.mbconv.expand_ratio``), to the domain used instead of the base one;
    the exact label wins over patterns, and patterns apply in order. Parameter labels name the
    component type: ``stem.patch.patch_size``, ``stages.1.embed.conv.norm``, ``stages.2.mbconv.expand_ratio``,
    ``head.pool.norm``. ``layouts`` makes the stage
    pattern (e.g. ``C-C-T-T``) one dimension, with ``blocks`` naming the block type of each code."""

    name: str
    description: str
    overrides: Mapping[str, Domain] = field(default_factory=dict)
    presets: tuple[str, ...] = ()
    layouts: tuple[str, ...] = ()
    blocks: Mapping[str, str] = field(default_factory=dict)

    # ------------------------------------------------------------------ domains
    def domain(self, label: str, base: Domain) -> Domain:
        if label in self.overrides:
            return self.overrides[label]
        for pattern, dom in self.overrides.items():
            if "*" in pattern and _pattern(pattern).fullmatch(label):
                return dom
        return base

    # ------------------------------------------------------------------ the one walk
    def _walk(self, decide: Callable[[str, Domain], Any]) -> ArchConfig:
        decided: dict[str, Any] = {}

        def pick(label: str, base: Domain, fits: Optional[Callable[[Any], bool]] = None) -> Any:
            dom = self.domain(label, base)
            if isinstance(dom, Same):
                dom = Fixed(decided[dom.label])
            if fits is not None and isinstance(dom, Choice):
                fitting = [v for v in dom.values if fits(v)]
                # Optuna needs a label's choices to be the same in every trial, so the domain cannot
                # shrink to a smaller choice; when one value alone can make a valid network, it is fixed.
                if len(fitting) == 1:
                    dom = Fixed(fitting[0])
            decided[label] = value = decide(label, dom)
            return value

        resolution = pick("resolution", RESOLUTIONS)
        stem_type = pick("stem.type", Choice(*registry.names("stem")))
        stem = StemConfig(stem_type, pick("stem.width", WIDTHS),
                          self._params(f"stem.{stem_type}", registry.lookup("stem", stem_type).params, pick))
        num_tokens = pick("global_tokens.num", NUM_GLOBAL_TOKENS)
        tokens = GlobalTokensConfig(num_tokens, pick("global_tokens.dim", GLOBAL_TOKEN_DIMS)) if num_tokens else None
        if self.layouts:
            codes = pick("layout", Choice(*self.layouts)).split("-")
            block_names = [self.blocks[c] for c in codes]
        else:
            block_names = [pick(f"stages.{i}.block", Choice(*registry.names("block")))
                           for i in range(pick("num_stages", NUM_STAGES))]
        stages = []
        total_stride = registry.lookup("stem", stem_type).stride(stem.params)
        for i, block in enumerate(block_names):
            p = f"stages.{i}"
            depth, width = pick(f"{p}.depth", DEPTHS), pick(f"{p}.width", WIDTHS)
            stride = pick(f"{p}.stride", STRIDES, fits=lambda s: resolution % (total_stride * s) == 0)
            total_stride *= stride
            embed_type = pick(f"{p}.embed.type", Choice(*registry.names("embed")))
            embed = EmbedConfig(embed_type, self._params(f"{p}.embed.{embed_type}",
                                                         registry.lookup("embed", embed_type).params, pick))
            params = self._params(f"{p}.{block}", registry.lookup("block", block).params, pick)
            stages.append(StageConfig(block, depth, width, stride, params, embed))
        head_type = pick("head.type", Choice(*registry.names("head")))
        head = HeadConfig(head_type, self._params(f"head.{head_type}", registry.lookup("head", head_type).params, pick))
        return ArchConfig(stem, tuple(stages), head, tokens, resolution)

    def _params(self, prefix: str, cls: type, pick: Callable[[str, Domain], Any]) -> Any:
        values = {}
        for f in fields(cls):
            label = f"{prefix}.{f.name}"
            dom = self.domain(label, domain_of(f))
            if isinstance(dom, Seq):
                n = pick(f"{label}.len", IntRange(dom.min_len, dom.max_len))
                values[f.name] = tuple(pick(f"{label}.{j}", dom.item) for j in range(n))
            else:
                values[f.name] = pick(label, dom)
        return cls(**values)

    # ------------------------------------------------------------------ the four uses
    def sample(self, trial: Any) -> ArchConfig:
        """Sample through an Optuna trial; raises :class:`InvalidArchitecture` with the reason
        when the sampled values make no valid architecture."""

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
                return trial.suggest_int(label, dom.low, dom.high, step=dom.step)
            raise TypeError(f"{label}: cannot sample domain {dom!r}")

        return self._checked(lambda: self._walk(decide))

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

        arch = self._checked(lambda: self._walk(decide))
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
            rebuilt = self._walk(decide)
        except Outside as e:
            return {}, str(e)
        except (ConfigError, KeyError) as e:
            return {}, str(e)
        if rebuilt != arch:
            return {}, "the space cannot express this architecture exactly"
        reason = check_arch(arch)
        if reason:
            return {}, f"invalid architecture: {reason}"
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

    # ------------------------------------------------------------------ description
    def dimensions(self) -> list[tuple[str, str, str]]:
        """(label, domain, condition) of every dimension an architecture of this space may use;
        ``condition`` says when a conditional dimension is active ("" when always)."""
        out: list[tuple[str, str, str]] = []

        def add(label: str, base: Domain, when: str = "") -> Domain:
            dom = self.domain(label, base)
            out.append((label, dom.describe(), when))
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


def _pattern(pattern: str) -> re.Pattern:
    return re.compile(re.escape(pattern).replace(r"\*", r"[^.]+"))


def _single(dom: Domain) -> Any:
    if isinstance(dom, Choice) and len(dom.values) == 1:
        return dom.values[0]
    if isinstance(dom, IntRange) and dom.low == dom.high:
        return dom.low
    return None


def _values(dom: Domain) -> list:
    if isinstance(dom, Fixed):
        return [dom.value]
    if isinstance(dom, Choice):
        return list(dom.values)
    return []
