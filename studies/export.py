"""`nas export`: one trial of a study as files that run without nas.

    >>> from studies.export import export_trial
    >>> report = export_trial(study, "exported/best")            # doctest: +SKIP
    >>> report.files                                               # doctest: +SKIP
    ['arch.json', 'model.pt2', 'model.onnx', 'MODEL_CARD.md']

The directory holds:

- ``arch.json``: the config (``nas.load_config`` / ``nas.build_model`` read it);
- ``model.pt2``: a ``torch.export`` program (``torch.export.load(path).module()``), or
  ``model.ts``, TorchScript (``torch.jit.load``), when ``torch.export`` cannot trace a block;
- ``model.onnx``: opset 17, input ``image`` (N, 3, R, R), output ``logits`` (N, classes), dynamic N;
  checked with ``onnx.checker`` and run in ONNX Runtime against PyTorch on the same input;
- ``MODEL_CARD.md``: what was recorded in the search and what the files are.

The weights are freshly initialised: a search trains only a short proxy, so the exported config
must be trained for real. Before anything is written, the config's analytic params and MACs
(design resolution, 1000 classes) must equal what the study recorded for the trial.
"""
from __future__ import annotations

import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

from studies.record import TrialRecord
from studies.storage import InputError

ONNX_TOLERANCE = 1e-4  # max abs difference of the logits, ONNX Runtime vs PyTorch
ONNX_OPSET = 17


class ExportError(InputError):
    """A trial cannot be exported; the message says why (exit code 2 on the command line)."""


@dataclass
class ExportReport:
    directory: str
    study: Optional[str]  # the study and trial exported, or None for a training run
    trial: Optional[int]
    arch_id: str
    layout: str
    num_classes: int
    resolution: int
    torch_format: str  # "torch.export" or "torchscript"
    torch_fallback_reason: Optional[str]
    torch_max_abs_diff: float  # the saved program reloaded vs the eager model
    onnx_max_abs_diff: float  # ONNX Runtime vs the eager model
    params: int  # of the exported model (num_classes outputs)
    macs: int  # of the exported model at ``resolution``
    files: list[str] = field(default_factory=list)
    run: Optional[str] = None  # the training run directory whose weights were exported
    top1_matches: Optional[int] = None  # validation images on which ONNX Runtime's top-1 equals PyTorch's
    validation_images: Optional[int] = None

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------------- choosing the trial
def select_trial(study, trial: Optional[int] = None, front_rank: Optional[int] = None):
    """The trial numbered ``trial``; else the ``front_rank``-th best (1-based) by the first metric on
    the study's Pareto front; else the front's best."""
    from studies.results import front_frame, pareto_trials

    if trial is not None and front_rank is not None:
        raise ExportError("give either a trial number or a front rank, not both")
    if trial is not None:
        trials = study.get_trials(deepcopy=False)
        found = next((t for t in trials if t.number == trial), None)
        if found is None:
            last = max((t.number for t in trials), default=None)
            span = f"trials are numbered 0-{last}" if last is not None else "it has no trials"
            raise ExportError(f"study {study.study_name!r} has no trial {trial} ({span})")
        record = TrialRecord.from_trial(found)
        if record.arch_json is None:
            why = record.reason or "no architecture was recorded"
            raise ExportError(f"trial {trial} of study {study.study_name!r} has no architecture to export ({why})")
        return found
    front = front_frame(study) if pareto_trials(study) else None
    if front is None or front.empty:
        raise ExportError(f"study {study.study_name!r} has no feasible evaluated trial yet, so no Pareto front; "
                          "pass --trial N to export another trial")
    rank = front_rank or 1
    if not 1 <= rank <= len(front):
        raise ExportError(f"front rank {rank} is out of range: the Pareto front of {study.study_name!r} has "
                          f"{len(front)} trial(s) (ranks 1-{len(front)}, by {study.metric_names[0]})")
    number = int(front.iloc[rank - 1]["trial"])
    return next(t for t in study.get_trials(deepcopy=False) if t.number == number)


def check_recorded_cost(arch, record: TrialRecord) -> None:
    """The config must reproduce the trial's recorded id, params and MACs (design resolution,
    1000 classes), or the study and this code disagree about what the architecture is."""
    import nas

    if record.arch_id not in (None, arch.arch_id):
        raise ExportError(f"the recorded config hashes to {arch.arch_id}, but the trial recorded arch id "
                          f"{record.arch_id}: the config format has changed since the search")
    cost = nas.analytic_cost(arch)
    wrong = [f"{what} {now:,} != recorded {then:,}" for what, now, then in (("params", cost.params, record.params),
             ("macs", cost.macs, record.macs)) if then is not None and then != now]
    if wrong:
        raise ExportError("the rebuilt architecture does not match the study: " + "; ".join(wrong)
                          + " (counted at the design resolution with 1000 classes); the blocks' code has changed "
                          "since the search")


# ---------------------------------------------------------------------------- the artifacts
def save_torch_program(model, x, directory: Path) -> tuple[str, str, Optional[str], float]:
    """``model.pt2`` by torch.export (dynamic batch), else ``model.ts`` by TorchScript tracing.

    Returns (file name, format, why the fallback was needed or None, max abs diff of the reloaded
    program vs the model on ``x``)."""
    import torch

    with torch.no_grad():
        expected = model(x)
    try:
        batch = torch.export.Dim("batch", min=1, max=4096)
        program = torch.export.export(model, (x,), dynamic_shapes=({0: batch},))
        path = directory / "model.pt2"
        torch.export.save(program, str(path))
        with torch.no_grad():
            got = torch.export.load(str(path)).module()(x)
        return path.name, "torch.export", None, float((got - expected).abs().max())
    except Exception as e:  # noqa: BLE001 - any tracing failure means: fall back, and say why
        reason = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"[:300]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, (x,), check_trace=False)
        path = directory / "model.ts"
        torch.jit.save(traced, str(path))
        with torch.no_grad():
            got = torch.jit.load(str(path))(x)
    return path.name, "torchscript", reason, float((got - expected).abs().max())


def save_onnx(model, x, directory: Path) -> tuple[str, float]:
    """``model.onnx`` checked by onnx.checker; returns (file name, max abs diff ONNX Runtime vs PyTorch)."""
    import onnx
    import onnxruntime as ort
    import torch

    from evaluators.latency import export_onnx

    path = directory / "model.onnx"
    export_onnx(model, x, str(path))
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as e:
        raise ExportError(f"the ONNX file fails onnx.checker: {str(e).splitlines()[0]}") from None
    opts = ort.SessionOptions()
    opts.log_severity_level = 4
    with torch.no_grad():
        expected = model(x).numpy()
    try:
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    except Exception as e:  # noqa: BLE001 - onnxruntime's own exception types
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise ExportError(f"ONNX Runtime cannot run the exported graph at {x.shape[-1]}x{x.shape[-1]} ({first}); "
                          "blocks that pad their input (window attention) trace only at sizes needing no padding: export at the "
                          "design resolution (drop --resolution)") from None
    if got.shape != expected.shape:
        raise ExportError(f"ONNX Runtime returned shape {got.shape}, PyTorch {expected.shape}")
    return path.name, float(abs(got - expected).max())


def export_model(arch, directory: str | Path, num_classes: int, resolution: Optional[int] = None, seed: int = 0,
                 batch: int = 2) -> dict:
    """Build ``arch`` (seeded, freshly initialised) and write arch.json, the torch program and
    model.onnx into ``directory``; returns what was written and measured. ONNX Runtime must agree
    with PyTorch within ``ONNX_TOLERANCE`` on a random input, or ExportError."""
    import torch

    import nas

    resolution = resolution or arch.resolution
    torch.manual_seed(seed)
    model = nas.build_model(arch, num_classes).eval()
    x = torch.randn(batch, 3, resolution, resolution, generator=torch.Generator().manual_seed(seed))
    return export_module(model, arch, directory, x, num_classes)


def export_module(model, arch, directory: str | Path, x, num_classes: int) -> dict:
    """Write ``model`` (built from ``arch``, in eval mode) as arch.json, a torch program and
    model.onnx, traced and checked on the inputs ``x``."""
    import nas

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    resolution = x.shape[-1]
    nas.save_config(arch, directory / "arch.json")
    torch_file, torch_format, fallback, torch_diff = save_torch_program(model, x, directory)
    onnx_file, onnx_diff = save_onnx(model, x, directory)
    if not onnx_diff <= ONNX_TOLERANCE:
        raise ExportError(f"ONNX Runtime and PyTorch disagree by {onnx_diff:.3g} (max abs logit difference, "
                          f"tolerance {ONNX_TOLERANCE:g}); the ONNX file is left in {directory} for inspection")
    cost = nas.analytic_cost(arch, resolution, num_classes)
    params = sum(p.numel() for p in model.parameters())
    if params != cost.params:
        raise ExportError(f"the built model has {params:,} parameters but the config counts {cost.params:,}")
    return {"files": ["arch.json", torch_file, onnx_file], "torch_format": torch_format, "torch_fallback": fallback,
            "torch_max_abs_diff": torch_diff, "onnx_max_abs_diff": onnx_diff, "params": params, "macs": cost.macs,
            "resolution": resolution, "num_classes": num_classes}


def is_run_dir(path: str | Path) -> bool:
    """Whether ``path`` is a ``nas train`` run directory (rather than a study name)."""
    return (Path(path) / "arch.json").is_file() and (Path(path) / "recipe.json").is_file()


def export_run(run_dir: str | Path, directory: str | Path, batch: int = 256) -> ExportReport:
    """Export a ``nas train`` run with its trained weights (the EMA's when the recipe kept one), at
    the resolution it was trained at. ONNX Runtime must give the same top-1 as PyTorch on every one
    of the run's validation images, or ExportError."""
    import numpy as np
    import onnxruntime as ort
    import torch

    import nas
    from studies.training import RunError, load_run, validation_images

    try:
        arch, weights, info = load_run(run_dir)
        images, _ = validation_images(run_dir, info.get("dataset_spec") or info["dataset"])
    except RunError as e:
        raise ExportError(str(e)) from None
    model = nas.build_model(arch, info["num_classes"]).eval()
    model.load_state_dict(weights, strict=True)
    written = export_module(model, arch, directory, images[:2], info["num_classes"])
    opts = ort.SessionOptions()
    opts.log_severity_level = 4
    session = ort.InferenceSession(str(Path(directory) / "model.onnx"), opts, providers=["CPUExecutionProvider"])
    matches = 0
    with torch.no_grad():
        for i in range(0, len(images), batch):
            x = images[i:i + batch]
            ours = model(x).argmax(1).numpy()
            theirs = np.argmax(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0], axis=1)
            matches += int((ours == theirs).sum())
    if matches != len(images):
        raise ExportError(f"ONNX Runtime's top-1 differs from PyTorch's on {len(images) - matches} of {len(images)} "
                          f"validation images; the files are left in {directory} for inspection")
    report = ExportReport(
        directory=str(directory), study=None, trial=None, arch_id=arch.arch_id, layout=arch.layout,
        num_classes=info["num_classes"], resolution=written["resolution"], torch_format=written["torch_format"],
        torch_fallback_reason=written["torch_fallback"], torch_max_abs_diff=written["torch_max_abs_diff"],
        onnx_max_abs_diff=written["onnx_max_abs_diff"], params=written["params"], macs=written["macs"],
        files=written["files"] + ["MODEL_CARD.md"], run=str(run_dir), top1_matches=matches,
        validation_images=len(images))
    (Path(directory) / "MODEL_CARD.md").write_text(run_card(arch, info, report))
    return report


# ---------------------------------------------------------------------------- the whole export
def export_trial(study, directory: str | Path, trial: Optional[int] = None, front_rank: Optional[int] = None,
                 num_classes: Optional[int] = None, resolution: Optional[int] = None, seed: int = 0) -> ExportReport:
    """Export one trial of ``study`` (see ``select_trial``) into ``directory``."""
    import nas

    chosen = select_trial(study, trial, front_rank)
    record = TrialRecord.from_trial(chosen)
    try:
        arch = record.arch
    except nas.ConfigError as e:
        raise ExportError(f"trial {chosen.number} records a config this version cannot read: {e}") from None
    check_recorded_cost(arch, record)
    settings = study.user_attrs.get("settings") or {}
    if num_classes is None:
        from evaluators.data import DatasetError, dataset_num_classes

        spec = settings.get("dataset") or "fashion-mnist"
        try:
            num_classes = dataset_num_classes(spec)
        except DatasetError as e:
            raise ExportError(f"cannot tell how many classes the study's dataset {spec!r} has ({e}); "
                              "pass --num-classes") from None
    if num_classes < 1:
        raise ExportError(f"--num-classes must be >= 1, got {num_classes}")
    stride = nas.network_stride(arch)
    if resolution is not None and (resolution < 1 or resolution % stride):
        raise ExportError(f"cannot export at resolution {resolution}: it must be a multiple of the network's "
                          f"stride {stride} (the design resolution is {arch.resolution})")
    directory = Path(directory)
    written = export_model(arch, directory, num_classes, resolution, seed)
    report = ExportReport(
        directory=str(directory), study=study.study_name, trial=chosen.number, arch_id=arch.arch_id,
        layout=arch.layout, num_classes=num_classes, resolution=written["resolution"],
        torch_format=written["torch_format"], torch_fallback_reason=written["torch_fallback"],
        torch_max_abs_diff=written["torch_max_abs_diff"], onnx_max_abs_diff=written["onnx_max_abs_diff"],
        params=written["params"], macs=written["macs"], files=written["files"] + ["MODEL_CARD.md"])
    (directory / "MODEL_CARD.md").write_text(model_card(study, chosen, arch, report, seed))
    return report


def _versions() -> dict:
    import onnx
    import onnxruntime
    import torch

    return {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
            "python": platform.python_version()}


def model_card(study, trial, arch, report: ExportReport, seed: int) -> str:
    """The card, Markdown: recorded numbers first, then the files and how to load them."""
    from evaluators.base import list_evaluators
    from studies.results import metric_names, pareto_trials

    r = TrialRecord.from_trial(trial)
    settings = study.user_attrs.get("settings") or {}
    metric = metric_names(study)[0]
    value = trial.values[0] if trial.values and r.feasible else None
    scorer = next((e for e in list_evaluators() if e.metric == metric), None)
    how = scorer.how(settings) if scorer is not None else f"`{metric}` (no evaluator of that name is installed)"
    on_front = trial.number in {t.number for t in pareto_trials(study)}
    status = ("feasible, on the Pareto front" if on_front else "feasible" if r.feasible else
              trial.state.name.lower() + (f" ({r.reason})" if r.reason else ""))
    lat = r.latency
    recorded = [("study", f"`{study.study_name}` (space `{study.user_attrs.get('space')}`)"),
                ("trial", f"{trial.number} ({status})"),
                (metric, f"{value:.4f}" if value is not None and abs(value) < 1e4 else
                 (f"{value:.4g}" if value is not None else "not evaluated")),
                ("how it was measured", how),
                ("params", f"{(r.params or 0) / 1e6:.3f} M ({r.params:,}), 1000 classes"),
                ("MACs", f"{(r.macs or 0) / 1e9:.3f} G ({r.macs:,}) at {arch.resolution}x{arch.resolution}, "
                         "1000 classes"),
                ("latency", f"{lat.value:.2f} ms (10th percentile of timed runs, batch 1, "
                            f"{lat.details.get('threads') or '?'} thread(s), {lat.device})"
                 if lat is not None else "not measured (the search had no latency budget)")]
    if r.provenance.preset:
        recorded.append(("seeded preset", f"`{r.provenance.preset}` (a published architecture)"))
    budgets = [f"{k} {v:g}" for k, v in (("MACs", settings.get("macs_budget")), ("params", settings.get("params_budget")),
                                          ("latency ms", settings.get("latency_budget_ms"))) if v]
    recorded.append(("budgets", ", ".join(budgets) or "none"))
    widths = "/".join(str(s.width) for s in arch.stages)
    depths = "/".join(str(s.depth) for s in arch.stages)
    stages = "\n".join(f"| {i} | {s.block} | {s.depth} | {s.width} | {s.stride} | {s.embed.type} |"
                       for i, s in enumerate(arch.stages))
    torch_file = next(f for f in report.files if f.startswith("model.") and not f.endswith(".onnx"))
    torch_line = (f"`torch.export` program (dynamic batch); reloaded, it matches the eager model to "
                  f"{report.torch_max_abs_diff:.2g}" if report.torch_format == "torch.export" else
                  f"TorchScript (traced), because torch.export failed: {report.torch_fallback_reason}; reloaded, "
                  f"it matches the eager model to {report.torch_max_abs_diff:.2g}")
    versions = ", ".join(f"{k} {v}" for k, v in _versions().items())
    r = report.resolution
    load_torch = ("program = torch.export.load(\"model.pt2\").module()" if report.torch_format == "torch.export"
                  else "program = torch.jit.load(\"model.ts\")")
    return f"""# Model card: {study.study_name}, trial {trial.number}

Architecture `{arch.arch_id}`, layout **{arch.layout}**, widths {widths}, depths {depths}.
Exported by `nas export` for **{report.num_classes} classes** (the classes of the dataset the search used,
`{settings.get('dataset', 'fashion-mnist')}`, unless `--num-classes` said otherwise), input {r}x{r}.

**The weights are freshly initialised (seed {seed}), not trained.** The search trains each candidate
only briefly, as a proxy for ranking architectures, and keeps no weights. Train this config for real
before using it (e.g. `nas.build_model(nas.load_config("arch.json"), num_classes={report.num_classes})`).

## Recorded in the search

| | |
|---|---|
""" + "\n".join(f"| {k} | {v} |" for k, v in recorded) + f"""

## The architecture

Stem `{arch.stem.type}` ({arch.stem.width} channels), head `{arch.head.type}`, design resolution
{arch.resolution}{f", {arch.global_tokens.num} global tokens" if arch.global_tokens else ""}.

| stage | block | depth | width | stride | embedding |
|---|---|---|---|---|---|
{stages}

## The exported model

{report.params:,} parameters and {report.macs / 1e6:.1f} M MACs at {r}x{r} with {report.num_classes} classes
(analytic count; the built model has exactly these parameters).

| file | what it is |
|---|---|
| `arch.json` | the config: `nas.load_config("arch.json")`, then `nas.build_model(config, num_classes={report.num_classes})` |
| `{torch_file}` | {torch_line} |
| `model.onnx` | ONNX opset {ONNX_OPSET}, input `image` float32 (N, 3, {r}, {r}), output `logits` (N, {report.num_classes}), dynamic N; passes `onnx.checker`; ONNX Runtime matches PyTorch to {report.onnx_max_abs_diff:.2g} (max abs logit difference, tolerance {ONNX_TOLERANCE:g}) |
| `MODEL_CARD.md` | this card |

Inputs are RGB images scaled to [0, 1] and normalised per channel (grey images repeated to three
channels), as the search's proxy training fed them.

## Loading without nas

```python
import torch
{load_torch}
logits = program(torch.randn(1, 3, {r}, {r}))

import numpy as np, onnxruntime as ort
session = ort.InferenceSession("model.onnx", providers=["CPUExecutionProvider"])
logits = session.run(None, {{"image": np.random.randn(1, 3, {r}, {r}).astype(np.float32)}})[0]
```

Exported with {versions}.
"""


def run_card(arch, info: dict, report: ExportReport) -> str:
    """The model card of a trained run: the recipe and measured accuracies, then the files."""
    from studies.training import describe_run

    r = report.resolution
    torch_file = next(f for f in report.files if f.startswith("model.") and not f.endswith(".onnx"))
    load_torch = ("program = torch.export.load(\"model.pt2\").module()" if report.torch_format == "torch.export"
                  else "program = torch.jit.load(\"model.ts\")")
    test = (f"{info['test_accuracy']:.4f}" if info.get("test_accuracy") is not None
            else "not measured (the run has not finished)")
    return f"""# Model card: trained run `{report.run}`

Architecture `{arch.arch_id}`, layout **{arch.layout}**, widths {"/".join(str(s.width) for s in arch.stages)},
depths {"/".join(str(s.depth) for s in arch.stages)}; **trained weights** for {report.num_classes} classes
({info['dataset']}), input {r}x{r}.

## Training

{describe_run(info)}

| | |
|---|---|
| epochs | {info['epochs_done']} of {info['recipe']['epochs']} |
| validation accuracy | {info['val_accuracy']:.4f} ({info['validation']}) |
| test accuracy | {test} |
| params / MACs | {report.params:,} / {report.macs / 1e6:.1f} M at {r}x{r} |

Inputs: RGB images scaled to [0, 1], resized to {r}x{r} and normalised per channel with mean
{[round(v, 4) for v in info['mean']]} and std {[round(v, 4) for v in info['std']]} (grey images repeated to
three channels).

## Files

| file | what it is |
|---|---|
| `arch.json` | the config (`nas.load_config`) |
| `{torch_file}` | the trained model as a {report.torch_format} program; matches the eager model to {report.torch_max_abs_diff:.2g} |
| `model.onnx` | ONNX opset {ONNX_OPSET}, input `image` (N, 3, {r}, {r}), output `logits`; the same top-1 as PyTorch on all {report.validation_images} validation images (max abs logit difference {report.onnx_max_abs_diff:.2g} on two of them) |

```python
import torch
{load_torch}
logits = program(torch.randn(1, 3, {r}, {r}))
```

Exported with {", ".join(f"{k} {v}" for k, v in _versions().items())}.
"""
