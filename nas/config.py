"""Architecture configs: frozen, typed values with a JSON round trip and a stable id.

An architecture is a stem, an ordered list of stages and a head, plus optional global tokens.
Every component names a registered type and carries that type's own frozen ``Params``
dataclass; geometry (channels, stride, depth) lives on the stage, style in the params.

    >>> import nas
    >>> arch = nas.get_arch("poolformer_s12")
    >>> nas.ArchConfig.from_json(arch.to_json()) == arch
    True
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Optional

from nas.domains import domain_of


class ConfigError(ValueError):
    """A config breaks a rule. The message names the rule and the offending value."""


@dataclass(frozen=True)
class Params:
    """Base class of every component's typed parameters.

    Subclasses are frozen dataclasses; every field is declared with ``nas.domains.param`` so
    that search spaces can be derived from it. ``check(geometry)`` may return the reason a
    combination is invalid (e.g. width not divisible by heads).
    """

    # fields whose every value has weights of its own in a weight-sharing supernet (nas.supernet),
    # as a block type has: tensors whose layout they change in a way slicing cannot follow
    unshared: ClassVar[tuple[str, ...]] = ()

    def check(self, geometry: Any) -> Optional[str]:
        return None

    def unsliceable(self) -> Optional[str]:
        """Why a weight-sharing supernet cannot hold a component with these values (its tensors'
        meaning moves with their size in a way no slice follows), or None."""
        return None

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list):  # JSON gives lists; configs hold tuples
                object.__setattr__(self, f.name, value := tuple(value))
            domain = domain_of(f)
            if not _type_ok(value, domain):
                raise ConfigError(f"{type(self).__name__}.{f.name}: {value!r} has the wrong type "
                                  f"for {domain.describe()}")


def _type_ok(value: Any, domain: Any) -> bool:
    from nas.domains import Choice, Fixed, IntRange, Seq

    if isinstance(domain, Seq):
        return isinstance(value, tuple) and all(_type_ok(v, domain.item) for v in value)
    if isinstance(domain, IntRange):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(domain, Fixed):
        return type(value) is type(domain.value) or (isinstance(value, (int, float)) and not isinstance(value, bool))
    if isinstance(domain, Choice):
        kinds = {type(v) for v in domain.values}
        return type(value) in kinds or (float in kinds and isinstance(value, int) and not isinstance(value, bool))
    return True


@dataclass(frozen=True)
class StemConfig:
    """Maps the image to the first feature map of ``width`` channels."""

    type: str
    width: int
    params: Params


@dataclass(frozen=True)
class EmbedConfig:
    """The embedding (downsampling) module that opens a stage; ``none`` lets the first block do it."""

    type: str = "none"
    params: Params = None  # filled with the type's defaults by __post_init__

    def __post_init__(self) -> None:
        if self.params is None:
            from nas.registry import lookup
            object.__setattr__(self, "params", lookup("embed", self.type).params())


@dataclass(frozen=True)
class StageConfig:
    """``depth`` blocks of one type at ``width`` channels; the stage downsamples by ``stride``."""

    block: str
    depth: int
    width: int
    stride: int
    params: Params
    embed: EmbedConfig = field(default_factory=EmbedConfig)


@dataclass(frozen=True)
class HeadConfig:
    type: str
    params: Params


@dataclass(frozen=True)
class GlobalTokensConfig:
    """Learned tokens carried beside the feature map (ViT's class token, LightViT, Mobile-Former).

    ``dim=None`` means the tokens follow the stage width and are projected (LayerNorm + Linear)
    whenever the width changes, as LightViT does; a fixed ``dim`` keeps them apart, as in
    Mobile-Former.
    """

    num: int
    dim: Optional[int] = None


@dataclass(frozen=True)
class ArchConfig:
    """A whole architecture. ``resolution`` is the design input size: it sizes the few
    resolution-tied parameters (positional embeddings, relative-position tables, sMLP mixing)
    and is the default resolution for counting."""

    stem: StemConfig
    stages: tuple[StageConfig, ...]
    head: HeadConfig
    global_tokens: Optional[GlobalTokensConfig] = None
    resolution: int = 224

    def __post_init__(self) -> None:
        if isinstance(self.stages, list):
            object.__setattr__(self, "stages", tuple(self.stages))

    # ----------------------------------------------------------------- serialisation
    def to_dict(self) -> dict:
        return _to_plain(self)

    def to_json(self, indent: Optional[int] = None) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=indent is None)

    @classmethod
    def from_dict(cls, data: dict) -> "ArchConfig":
        return _from_plain(cls, data, "arch")

    @classmethod
    def from_json(cls, text: str) -> "ArchConfig":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"config is not valid JSON: {e}") from None
        return cls.from_dict(data)

    @property
    def arch_id(self) -> str:
        """A stable content hash: equal configs have equal ids across runs and machines."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    @property
    def layout(self) -> str:
        """The stage-type pattern, e.g. ``C-C-T-T``."""
        from nas.registry import lookup
        return "-".join(lookup("block", s.block).code for s in self.stages)

    def replace(self, **changes: Any) -> "ArchConfig":
        return dataclasses.replace(self, **changes)


def _to_plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _to_plain(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, tuple):
        return [_to_plain(v) for v in obj]
    return obj


_COMPONENT_KIND = {StemConfig: "stem", EmbedConfig: "embed", StageConfig: "block", HeadConfig: "head"}


def _from_plain(cls: type, data: Any, where: str) -> Any:
    from nas.registry import lookup

    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected an object, got {type(data).__name__} {data!r}")
    names = {f.name for f in fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {sorted(unknown)}; allowed: {sorted(names)}")
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        sub = f"{where}.{f.name}"
        if f.name == "params" and cls in _COMPONENT_KIND:
            type_key = "block" if cls is StageConfig else "type"
            spec = lookup(_COMPONENT_KIND[cls], data.get(type_key, "none"))
            kwargs[f.name] = _from_plain(spec.params, value if value is not None else {}, sub)
            continue
        hint = hints[f.name]
        target = _dataclass_in(hint)
        if value is None:
            kwargs[f.name] = None
        elif target is not None and typing.get_origin(hint) is tuple:
            if not isinstance(value, list):
                raise ConfigError(f"{sub}: expected a list, got {value!r}")
            kwargs[f.name] = tuple(_from_plain(target, v, f"{sub}.{i}") for i, v in enumerate(value))
        elif target is not None:
            kwargs[f.name] = _from_plain(target, value, sub)
        else:
            kwargs[f.name] = tuple(value) if isinstance(value, list) else value
    missing = [f.name for f in fields(cls) if f.name not in kwargs
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"{where}: missing field(s) {missing}")
    try:
        return cls(**kwargs)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    except TypeError as e:
        raise ConfigError(f"{where}: {e}") from None


def _dataclass_in(hint: Any) -> Optional[type]:
    """The dataclass inside a hint such as ``Optional[X]`` or ``tuple[X, ...]``, if any."""
    if dataclasses.is_dataclass(hint):
        return hint
    for arg in typing.get_args(hint):
        if dataclasses.is_dataclass(arg):
            return arg
    return None
