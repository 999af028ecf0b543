"""The evaluator contract: ``evaluate(arch, context) -> Measurement``, registered once by name.

An evaluator measures one thing about an architecture: a proxy score (short training, a
zero-cost proxy, params) or a measurement such as latency. The search driver, its workers, the
command line's ``--proxy`` choices, the dashboard's axis titles and the model card all read the
registry, so a new proxy is one file and one registration::

    from evaluators.base import Evaluator, Measurement, register

    class Depth(Evaluator):
        name, unit, description = "depth", "blocks", "total depth (deeper = predicted better)"
        instant = True           # no model, no data: the driver scores it itself

        def evaluate(self, arch, context):
            return Measurement(float(sum(s.depth for s in arch.stages)), self.unit)

    register(Depth())

Packages outside this repository register theirs under the entry-point group ``nas.evaluators``
(the entry point names an ``Evaluator`` instance or class).

Invariants: ``evaluate`` is a function of (arch, context) only: it leaves process-wide state
(thread counts, seeds of other code) as it found them; a stepwise evaluator's ``steps`` yields
partial measurements (``final=False``) and ends with one ``final=True`` measurement whose value
equals ``evaluate``'s.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Optional

from nas.config import ConfigError

if TYPE_CHECKING:  # the heavy modules are imported only where an evaluation runs
    from evaluators.data import AnyDataset
    from evaluators.train import TrainConfig
    from nas.config import ArchConfig

ENTRY_POINT_GROUP = "nas.evaluators"
SCORE, MEASURE = "score", "measure"  # an evaluator's kind: a maximised proxy score, or a measured quantity


@dataclass(frozen=True)
class Measurement:
    """One measured value with its unit, where and how long it took, and anything else worth keeping.
    ``step`` is the fidelity reached (an epoch) for stepwise evaluators; ``final`` is False for a
    partial result."""

    value: float
    unit: str
    device: str = "cpu"
    seconds: float = 0.0
    details: Mapping[str, Any] = field(default_factory=dict)
    step: Optional[int] = None
    final: bool = True

    def to_dict(self) -> dict:
        return {**asdict(self), "details": dict(self.details)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Measurement":
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


class EvalContext:
    """What an evaluator may use besides the architecture: the data set (loaded on first use and
    kept), the proxy-training settings, the threads and device to use. A worker holds one context
    for its whole life, so the data set is read once per worker. An image folder is loaded for the
    training resolution: held in memory when it fits (then it travels to Ray workers whole), else
    streamed from its files (then every node must see them at the same path)."""

    def __init__(self, dataset: str = "fashion-mnist", train: Optional["TrainConfig"] = None, threads: int = 1,
                 device: Optional[str] = None, latency_seconds: float = 5.0, data: Optional["AnyDataset"] = None,
                 supernet: Optional[str] = None, supernet_state: Optional[tuple] = None):
        from evaluators.train import TrainConfig

        self.dataset, self.threads, self.latency_seconds = dataset, threads, latency_seconds
        self.train = train or TrainConfig()
        self.device = device or ("cuda" if _cuda() else "cpu")
        self._data = data  # ``dataset`` already loaded (e.g. handed over by Ray's object store)
        self.supernet_file = supernet  # a `nas supernet train` file, for the supernet proxy
        self._supernet = supernet_state  # (Supernet, training record) already loaded
        if supernet_state is not None and str(supernet_state[0].device) != self.device:
            self._supernet = (supernet_state[0].to(self.device), supernet_state[1])
        self._split = None

    @property
    def supernet(self) -> tuple:
        """(the supernet, its training record), loaded from ``supernet_file`` once."""
        if self._supernet is None:
            from evaluators.supernet import load_supernet

            if self.supernet_file is None:
                raise ConfigError("the supernet proxy needs a trained supernet file (--supernet FILE)")
            supernet, record = load_supernet(self.supernet_file)
            self._supernet = (supernet.to(self.device), record)
        return self._supernet

    @property
    def split(self):
        """The proxy's training and validation images held in memory, prepared once (``evaluators.supernet``)."""
        if self._split is None:
            from evaluators.supernet import prepared_split

            self._split = prepared_split(self.data, self.train, self.device)
        return self._split

    @property
    def data(self) -> "AnyDataset":
        if self._data is None:
            from evaluators.data import load_dataset

            self._data = load_dataset(self.dataset, resolution=self.train.resolution)
        return self._data


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


class Evaluator:
    """Base class of evaluators. Set ``name`` (registry key, ``--proxy`` choice), ``unit`` and a
    one-line ``description``; implement ``evaluate`` (and ``steps`` for a stepwise one).

    - ``kind``: ``SCORE`` (higher predicts a better architecture; maximised) or ``MEASURE``;
    - ``metric``: the name of its objective in a study (default ``proxy_<name>``);
    - ``worst``: the objective value told to the sampler when a trial has no score (over budget);
      finite, since samplers do arithmetic on it;
    - ``instant``: no model is built and no data read, so the driver evaluates it itself;
    - ``stepwise``: ``steps`` yields one partial result per step (an epoch), so a search can stop
      a hopeless candidate between steps.
    """

    name: str = ""
    unit: str = ""
    description: str = ""
    kind: str = SCORE
    worst: float = -1e300
    instant: bool = False
    stepwise: bool = False

    @property
    def metric(self) -> str:
        return f"proxy_{self.name}"

    def evaluate(self, arch: "ArchConfig", context: EvalContext) -> Measurement:
        raise NotImplementedError

    def steps(self, arch: "ArchConfig", context: EvalContext) -> Iterator[Measurement]:
        yield self.evaluate(arch, context)

    @property
    def title(self) -> str:
        """Axis and column title of its score."""
        return f"{self.name} ({self.unit}; higher = predicted better)" if self.kind == SCORE else f"{self.name} ({self.unit})"

    def how(self, settings: Mapping[str, Any]) -> str:
        """How a recorded score was measured, for the model card (``settings``: the study's)."""
        return f"{self.description} (no training)" if self.description else f"proxy `{self.name}`"

    def __repr__(self) -> str:
        return f"<evaluator {self.name!r} ({self.unit})>"


_REGISTRY: dict[str, Evaluator] = {}
_loaded = False


def register(evaluator: Evaluator) -> Evaluator:
    """Add ``evaluator`` under its name; a second evaluator with a taken name is an error."""
    if not evaluator.name or not evaluator.name.replace("_", "").isalnum():
        raise ConfigError(f"an evaluator needs a name of letters, digits and underscores, got {evaluator.name!r}")
    if evaluator.kind not in (SCORE, MEASURE):
        raise ConfigError(f"evaluator {evaluator.name!r}: kind must be {SCORE!r} or {MEASURE!r}, got {evaluator.kind!r}")
    taken = _REGISTRY.get(evaluator.name)
    if taken is not None and type(taken) is not type(evaluator):
        raise ConfigError(f"evaluator name {evaluator.name!r} is taken by {type(taken).__qualname__}")
    _REGISTRY[evaluator.name] = evaluator
    return evaluator


def _load() -> None:
    """The built-in evaluators, then those of installed packages (entry points)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    import evaluators.builtin  # noqa: F401  (registers on import)

    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            found = ep.load()
        except Exception as e:  # a broken plug-in must not break every command
            raise ConfigError(f"cannot load evaluator plug-in {ep.name!r} ({ep.value}): {type(e).__name__}: {e}") from None
        register(found() if isinstance(found, type) else found)


def get_evaluator(name: str) -> Evaluator:
    _load()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown evaluator {name!r}; choose from {', '.join(sorted(_REGISTRY))}") from None


def list_evaluators(kind: Optional[str] = None) -> list[Evaluator]:
    _load()
    return [e for e in _REGISTRY.values() if kind is None or e.kind == kind]
