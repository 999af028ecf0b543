"""Weight sharing: one set of tensors of which every architecture of a space is a slice.

A point's weights are views of the supernet's tensors, and its forward pass is the plain module
``build_model(arch)`` run on them (``torch.func.functional_call``): no block is implemented twice
and nothing holds an "active subnet" state. ``extract(arch)`` returns that module with copies of
its weights, loaded strictly.

Keys. A point's state_dict key names the block type it belongs to in the supernet (single path,
as in SPOS): ``stages.2.blocks.0.attn.qkv.weight`` of a ``rel_attention`` stage is
``stages.2.blocks:rel_attention.0.attn.qkv.weight``; likewise the stem, each stage's embedding and
the head carry their type. Points of one type share the weights of that type; the first blocks of
a stage, the first channels of a width and the first heads of an attention are the ones shared
(as in OFA and AutoFormer).

Slicing by meaning. Every dimension of a tensor is one or more factors (:class:`Dim`), each
sliced from its start, or around its centre for spatial factors: a convolution's kernel (a 3x3
kernel is the middle of a 5x5 one), a relative-position table (the offsets nearest zero). A module
whose tensors fuse several things declares them with a ``slice_layout()`` method: an attention's
qkv projection is (3, heads, head_dim) x input width, so a point with fewer heads or smaller heads
takes the first heads of each of q, k and v, and the first channels of each head. What cannot be
sliced by meaning has weights of its own: a component's ``Params.unshared`` fields name values
that choose their own path, as a block type does (EfficientFormer's per-head [q | k | v] of
unequal widths: ``stages.3.blocks:mb3d[key_dim=32,attn_ratio=4]``).
"""
from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable, Optional, Sequence

import torch
from torch import nn

from nas.builder import Placed, build_component, build_model, components, module_path
from nas.config import ArchConfig, ConfigError
from nas.layers import Dim

FORMAT = "nas-supernet/1"
CACHED_MODULES = 8  # modules kept built for forward passes (the sandwich's largest and smallest stay)
# the component types whose tensors are sliced by their meaning (declared and contract-tested)
SUPPORTED = {"stem": ("conv_stack", "patch", "lightvit", "fused_mbconv"),
             "embed": ("none", "mbconv", "conv", "residual_merge", "patch_merging"),
             "block": ("mbconv", "fused_mbconv", "rel_attention", "pool_mixer", "smlp", "vit", "mobilevit", "lite_mla",
                       "lightvit", "window_attention", "lsla", "lewin", "mb4d", "mb3d", "mobile_former", "bneck_lite"),
             "head": ("norm_mlp", "pool", "conv_pool", "efficientvit", "lightvit", "mobileformer")}


def unsupported_types(types: dict[str, Iterable[str]]) -> list[str]:
    """Of ``types`` (kind -> type names, e.g. ``Space.component_types()``), those not ``SUPPORTED``,
    described per kind."""
    out = []
    for kind, names in types.items():
        missing = sorted(set(names) - set(SUPPORTED[kind]))
        if missing:
            out.append(f"{kind} type{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}")
    return out


class SupernetError(ConfigError):
    """An architecture the supernet does not hold, or a supernet file that cannot be used."""


@dataclass(frozen=True)
class _Slot:
    key: str  # the point's state_dict key
    shared: str  # the supernet's key
    factors: tuple[int, ...]  # every factor of every dimension
    per_dim: tuple[int, ...]  # how many factors each dimension has
    centred: tuple[bool, ...]  # per factor
    shape: tuple[int, ...]  # the point's tensor shape


def layouts(model: nn.Module) -> dict[str, tuple[Dim, ...]]:
    """The factors of every tensor of ``model``'s state_dict (see the module docstring)."""
    declared: dict[str, tuple[Optional[Dim], ...]] = {}
    for prefix, module in model.named_modules():
        own = getattr(module, "slice_layout", None)
        if own is not None:
            declared.update({f"{prefix}.{k}" if prefix else k: v for k, v in own().items()})
    conv_weights = {f"{prefix}.weight" if prefix else "weight" for prefix, m in model.named_modules()
                    if isinstance(m, nn.modules.conv._ConvNd)}
    out = {}
    for key, tensor in model.state_dict().items():
        shape = tuple(tensor.shape)
        dims = declared.get(key) or (None,) * len(shape)
        if len(dims) != len(shape):
            raise ConfigError(f"slice layout of {key} has {len(dims)} dimensions, the tensor {len(shape)}")
        resolved = []
        for j, (size, dim) in enumerate(zip(shape, dims)):
            if dim is None:
                dim = Dim((size,), centred=key in conv_weights and j >= 2)
            resolved.append(_resolve(key, dim, size))
        out[key] = tuple(resolved)
    return out


def _resolve(key: str, dim: Dim, size: int) -> Dim:
    known = math.prod(s for s in dim.sizes if s != -1)
    sizes = tuple(size // known if s == -1 else s for s in dim.sizes)
    if math.prod(sizes) != size:
        raise ConfigError(f"slice layout of {key}: factors {dim.sizes} do not make its size {size}")
    return Dim(sizes, dim.centred)


def _shared_prefix(p: Placed) -> str:
    """Where the supernet holds component ``p``: its network path, named with its type and the
    values of its ``unshared`` fields (``stages.3.blocks:mb3d[key_dim=32,attn_ratio=4]``)."""
    path = module_path(p)
    if p.spec is None:
        return path
    own = ",".join(f"{name}={getattr(p.params, name)}" for name in type(p.params).unshared)
    return f"{path}:{p.spec.name}" + (f"[{own}]" if own else "")


@lru_cache(maxsize=1 << 14)
def _component_layouts(p: Placed) -> tuple[tuple[str, tuple[Dim, ...]], ...]:
    with torch.device("meta"):  # shapes only: nothing allocated or initialised
        return tuple(layouts(build_component(p)).items())


def _slot(key: str, shared: str, dims: tuple[Dim, ...]) -> _Slot:
    return _Slot(key, shared, tuple(s for d in dims for s in d.sizes), tuple(len(d.sizes) for d in dims),
                 tuple(d.centred for d in dims for _ in d.sizes), tuple(math.prod(d.sizes) for d in dims))


def _placed_slots(arch: ArchConfig, num_classes: int, supported_only: bool = True
                  ) -> list[tuple[Optional[Placed], str, _Slot]]:
    """Every tensor of ``build_model(arch, num_classes)``'s state_dict: (its component, the
    component's own key for it, its slot); the global tokens belong to no component.
    ``supported_only``: a component type not ``SUPPORTED`` is an error (else keyed all the same,
    for measuring what a supernet of it would hold)."""
    out = []
    for p in components(arch, num_classes=num_classes):
        if supported_only and p.spec is not None:
            if p.spec.name not in SUPPORTED[p.spec.kind]:
                raise SupernetError(f"the supernet does not support {p.spec.kind} type {p.spec.name!r} yet ({p.where}); "
                                    f"supported {p.spec.kind} types: {', '.join(SUPPORTED[p.spec.kind])}")
            reason = p.params.unsliceable()
            if reason:
                raise SupernetError(f"a supernet cannot hold {p.where} ({p.spec.kind} type {p.spec.name!r}): {reason}")
        path, shared = module_path(p), _shared_prefix(p)
        out += [(p, rel, _slot(f"{path}.{rel}", f"{shared}.{rel}", dims)) for rel, dims in _component_layouts(p)]
    if arch.global_tokens is not None:
        tokens = arch.global_tokens
        dims = (Dim((1,)), Dim((tokens.num,)), Dim((tokens.dim or arch.stem.width,)))
        out.append((None, "", _slot("global_tokens", "global_tokens", dims)))
    return out


def _window(full: int, size: int, centred: bool) -> slice:
    start = (full - size) // 2 if centred else 0
    return slice(start, start + size)


class Supernet:
    """The tensors every point of a set of architectures is a slice of.

    ``Supernet(archs, num_classes)`` makes each shared tensor as large as the largest any of
    ``archs`` needs, per factor, initialised from the modules ``build_model`` makes (a point's
    initial weights are those a module of its own would have, tiled where larger). A point
    whose every tensor fits (:meth:`covers`) can be run (:meth:`forward`), trained (gradients
    reach :meth:`parameters`) and extracted.
    """

    def __init__(self, archs: Iterable[ArchConfig], num_classes: int, seed: int = 0, space: Optional[str] = None,
                 macs_budget: Optional[float] = None):
        archs = list(archs)
        if not archs:
            raise SupernetError("a supernet needs at least one architecture")
        self.num_classes, self.space, self.macs_budget = num_classes, space, macs_budget
        envelope: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[bool, ...]]] = {}
        largest: dict[str, tuple[int, Optional[Placed], str, _Slot]] = {}
        for arch in archs:
            for p, rel, s in _placed_slots(arch, num_classes):
                have = envelope.get(s.shared)
                if have is None:
                    envelope[s.shared] = (s.factors, s.per_dim, s.centred)
                elif have[1] != s.per_dim or have[2] != s.centred:
                    raise SupernetError(f"{s.shared}: the architectures lay it out differently "
                                        f"({have[1]} vs {s.per_dim} factors per dimension)")
                else:
                    envelope[s.shared] = (tuple(map(max, have[0], s.factors)), s.per_dim, s.centred)
                count = math.prod(s.factors)
                if s.shared not in largest or count > largest[s.shared][0]:
                    largest[s.shared] = (count, p, rel, s)
        self.structure = {k: (per_dim, centred) for k, (_, per_dim, centred) in envelope.items()}
        self.tensors: dict[str, torch.Tensor] = {}
        generator_state = torch.random.get_rng_state()
        try:  # each tensor starts as the largest component holding it was initialised, tiled to its envelope
            torch.manual_seed(seed)
            built: dict[Placed, dict[str, torch.Tensor]] = {}
            for key in sorted(largest):
                _, p, rel, s = largest[key]
                if p is None:  # the global tokens, initialised as build_model does
                    initial = nn.init.trunc_normal_(torch.zeros(s.factors), std=0.02)
                else:
                    if p not in built:
                        built[p] = build_component(p).state_dict()
                    initial = built[p][rel].reshape(s.factors)
                self.tensors[key] = _tiled(initial, envelope[key][0], s.centred)
        finally:
            torch.random.set_rng_state(generator_state)
        for key, tensor in self.tensors.items():
            tensor.requires_grad_(tensor.is_floating_point() and not _is_statistic(key))
        self._modules: OrderedDict[str, nn.Module] = OrderedDict()

    @classmethod
    def for_space(cls, space, macs_budget: Optional[float] = None, num_classes: int = 1000, seed: int = 0) -> "Supernet":
        """The supernet of every point of ``space`` (a ``search_spaces.Space``; of its
        ``supernet_space()``) within ``macs_budget`` MACs (design resolution, 1000 classes, as a
        search counts them): sized from ``space.envelope(macs_budget)``."""
        space = space.supernet_space()
        unsupported = unsupported_types(space.component_types())
        if unsupported:
            raise SupernetError(f"the supernet does not support space {space.name!r} yet: its {'; '.join(unsupported)} "
                                f"cannot be sliced yet")
        return cls(space.envelope(macs_budget), num_classes, seed, space.name, macs_budget)

    def __getstate__(self) -> dict:  # pickled (Ray's object store) without the built modules
        return {**self.__dict__, "_modules": OrderedDict()}

    # ------------------------------------------------------------------ the tensors
    def parameters(self) -> list[torch.Tensor]:
        """The trainable tensors (BatchNorm statistics are not)."""
        return [t for t in self.tensors.values() if t.requires_grad]

    @property
    def device(self) -> torch.device:
        return next(iter(self.tensors.values())).device

    def num_params(self) -> int:
        return sum(t.numel() for t in self.parameters())

    def to(self, device: str | torch.device) -> "Supernet":
        for key, tensor in self.tensors.items():
            self.tensors[key] = tensor.detach().to(device).requires_grad_(tensor.requires_grad)
        self._modules.clear()
        return self

    def state_dict(self) -> dict:
        """Plain tensors, numbers and strings: loadable with ``torch.load(weights_only=True)``."""
        return {"format": FORMAT, "num_classes": self.num_classes, "space": self.space, "macs_budget": self.macs_budget,
                "tensors": {k: t.detach() for k, t in self.tensors.items()},
                "structure": {k: [list(per_dim), list(centred)] for k, (per_dim, centred) in self.structure.items()}}

    @classmethod
    def from_state_dict(cls, state: dict) -> "Supernet":
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise SupernetError(f"not a supernet (format {state.get('format') if isinstance(state, dict) else None!r}, "
                                f"expected {FORMAT!r})")
        self = cls.__new__(cls)
        self.num_classes, self.space, self.macs_budget = int(state["num_classes"]), state["space"], state["macs_budget"]
        self.structure = {k: (tuple(per_dim), tuple(centred)) for k, (per_dim, centred) in state["structure"].items()}
        self.tensors = {k: t.clone().requires_grad_(t.is_floating_point() and not _is_statistic(k))
                        for k, t in state["tensors"].items()}
        self._modules = OrderedDict()
        return self

    # ------------------------------------------------------------------ the points
    def covers(self, arch: ArchConfig) -> Optional[str]:
        """None when every tensor of ``arch`` is a slice of this supernet, else why not."""
        try:
            slots = self._slots(arch)
        except SupernetError as e:
            return str(e)
        return next((reason for reason in map(self._misfit, slots) if reason), None)

    def _slots(self, arch: ArchConfig) -> list[_Slot]:
        return [s for _, _, s in _placed_slots(arch, self.num_classes)]  # component layouts are cached

    def _misfit(self, s: _Slot) -> Optional[str]:
        if s.shared not in self.tensors:
            return f"the supernet has no {s.shared} (a block type, stage or component none of its points has)"
        full = self.tensors[s.shared].shape
        if (s.per_dim, s.centred) != self.structure[s.shared] or len(full) != len(s.factors):
            return f"{s.shared} is laid out differently in the supernet"
        if any(n > f for n, f in zip(s.factors, full)):
            return f"{s.shared} needs factors {s.factors}, the supernet holds {tuple(full)}"
        return None

    def weights(self, arch: ArchConfig) -> dict[str, torch.Tensor]:
        """``arch``'s state_dict as slices of the supernet's tensors (gradients flow back to them)."""
        return {s.key: self._sliced(s, arch)[0] for s in self._slots(arch)}

    def _sliced(self, s: _Slot, arch: ArchConfig) -> tuple[torch.Tensor, tuple[slice, ...]]:
        reason = self._misfit(s)
        if reason:
            raise SupernetError(f"architecture {arch.arch_id} is outside the supernet: {reason}")
        full = self.tensors[s.shared]
        window = tuple(_window(f, n, c) for f, n, c in zip(full.shape, s.factors, s.centred))
        view = full[window]
        return (view if view.dim() == len(s.shape) else view.reshape(s.shape)), window

    def backward(self, arch: ArchConfig, x: torch.Tensor, loss_fn) -> torch.Tensor:
        """One point's share of a training step: ``loss_fn(output)`` on ``arch``'s output for ``x``,
        back-propagated, its gradients added into the supernet tensors' ``.grad`` (returns the output,
        detached). Equal to ``loss_fn(forward(arch, x)).backward()``, but the gradients are taken on
        copies of the point's slices and added into place, instead of back-propagating through the
        slicing, which allocates a zero gradient as large as each whole tensor for every point."""
        weights, places = {}, {}
        for s in self._slots(arch):
            sliced, window = self._sliced(s, arch)
            if self.tensors[s.shared].requires_grad:
                sliced = sliced.detach().clone().requires_grad_(True)
                places[s.key] = (s, window)
            weights[s.key] = sliced  # statistics stay views: BatchNorm's updates reach the supernet
        out = torch.func.functional_call(self.module(arch), weights, (x,))
        loss_fn(out).backward()
        with torch.no_grad():
            for key, (s, window) in places.items():
                grad = weights[key].grad
                if grad is None:
                    continue
                full = self.tensors[s.shared]
                if full.grad is None:
                    full.grad = torch.zeros_like(full)
                full.grad[window] += grad.reshape(s.factors)
        return out.detach()

    def module(self, arch: ArchConfig) -> nn.Module:
        """The (cached) module ``build_model(arch)`` that :meth:`forward` runs on the sliced weights."""
        if arch.arch_id in self._modules:
            self._modules.move_to_end(arch.arch_id)
        else:
            self._modules[arch.arch_id] = build_model(arch, self.num_classes).to(self.device)
            while len(self._modules) > CACHED_MODULES:
                self._modules.popitem(last=False)
        return self._modules[arch.arch_id]

    def forward(self, arch: ArchConfig, x: torch.Tensor) -> torch.Tensor:
        """``arch``'s output on ``x`` with the supernet's weights (train or eval mode as ``module(arch)``)."""
        # not strict: non-persistent buffers (index tables) are the module's own; every state_dict key is given
        return torch.func.functional_call(self.module(arch), self.weights(arch), (x,))

    def extract(self, arch: ArchConfig) -> nn.Module:
        """``build_model(arch)`` holding copies of its supernet weights (loaded strictly)."""
        model = build_model(arch, self.num_classes)
        model.load_state_dict({k: v.detach().clone() for k, v in self.weights(arch).items()}, strict=True)
        return model.to(self.device)


def _is_statistic(key: str) -> bool:
    return key.rsplit(".", 1)[-1] in ("running_mean", "running_var", "num_batches_tracked")


def _tiled(tensor: torch.Tensor, sizes: Sequence[int], centred: Sequence[bool]) -> torch.Tensor:
    """``tensor`` repeated along every factor up to ``sizes``; along a centred factor the original
    sits in the middle window, the one a point of its size slices."""
    out = tensor
    for d, (n, s, c) in enumerate(zip(sizes, tensor.shape, centred)):
        offset = (n - s) // 2 if c else 0
        out = out.index_select(d, (torch.arange(n) - offset) % s)
    return out.clone()
