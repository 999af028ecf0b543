"""The built-in evaluators: thin adapters from the measuring functions to the evaluator contract
(``evaluators.base``). Each is registered here once; nothing else lists them."""
from __future__ import annotations

import time
from dataclasses import replace
from typing import Any, Iterator, Mapping

from evaluators.base import MEASURE, EvalContext, Evaluator, Measurement, register


class ShortTraining(Evaluator):
    name, unit, stepwise, worst = "train", "accuracy", True, 0.0
    description = "validation accuracy after a short seeded training run"

    title = "proxy accuracy (short training)"

    @property
    def metric(self) -> str:
        return "accuracy"

    def steps(self, arch, context: EvalContext) -> Iterator[Measurement]:
        from evaluators.train import ProxyTrainer

        start = time.perf_counter()
        trainer = ProxyTrainer(arch, context.data, replace(context.train, threads=None), context.device)
        for epoch in range(1, context.train.epochs + 1):
            accuracy = trainer.run_epoch()
            yield Measurement(accuracy, self.unit, trainer.device, time.perf_counter() - start,
                              {"images_per_second": trainer.images_per_second,
                               "validation": trainer.validation, "precision": trainer.precision.name,
                               "skipped_images": trainer.skipped_images},
                              step=epoch, final=epoch == context.train.epochs)

    def evaluate(self, arch, context: EvalContext) -> Measurement:
        for measurement in self.steps(arch, context):
            pass
        return measurement

    def how(self, settings: Mapping[str, Any]) -> str:
        train = settings.get("train") or {}
        return (f"validation accuracy after {train.get('epochs')} epoch(s) of proxy training at "
                f"{train.get('resolution')} px on {train.get('train_size')} images of {settings.get('dataset')} "
                f"(validated on {train.get('val_size')} images held out from the training split)")


class InheritedWeights(Evaluator):
    name, unit, worst = "supernet", "accuracy", 0.0
    description = "validation accuracy with weights inherited from a trained supernet (BatchNorm re-estimated)"

    def evaluate(self, arch, context: EvalContext) -> Measurement:
        from evaluators.supernet import CALIBRATION_IMAGES, check_scorable, inherited_accuracy
        from evaluators.threads import torch_threads

        start = time.perf_counter()
        supernet, record = context.supernet
        split = context.split
        check_scorable(supernet, arch, split.num_classes)
        with torch_threads(context.threads):
            accuracy = inherited_accuracy(supernet, arch, split, batch_size=2 * context.train.batch_size)
        return Measurement(accuracy, self.unit, str(supernet.device), time.perf_counter() - start,
                           {"validation": split.validation, "calibration_images": CALIBRATION_IMAGES,
                            "supernet_epochs": record.get("epochs_done")})

    def how(self, settings: Mapping[str, Any]) -> str:
        from evaluators.supernet import CALIBRATION_IMAGES

        train = settings.get("train") or {}
        return (f"validation accuracy at {train.get('resolution')} px with weights inherited from a weight-sharing "
                f"supernet, BatchNorm statistics re-estimated on {CALIBRATION_IMAGES} training images of "
                f"{settings.get('dataset')}")


class ZeroCost(Evaluator):
    """A zero-cost proxy on one fixed real minibatch of the training split."""

    def __init__(self, name: str, description: str):
        self.name, self.description, self.unit = name, description, "score"

    def evaluate(self, arch, context: EvalContext) -> Measurement:
        from evaluators.proxies import score_proxy

        cfg, data = context.train, context.data
        x, y = data.minibatch(cfg.batch_size, cfg.resolution, seed=cfg.seed)
        score = score_proxy(arch, self.name, x, y, data.num_classes, seed=cfg.seed, device=context.device)
        return Measurement(score.score, self.unit, score.device, score.seconds,
                           {"resolution": score.resolution, "batch_size": score.batch_size})


class Size(Evaluator):
    """Params or MACs at the design resolution with 1000 classes (as a study records them): the
    baselines every proxy has to beat."""

    instant = True

    def __init__(self, name: str, unit: str):
        self.name, self.unit = name, unit
        self.description = f"{name} at the design resolution (bigger = predicted better)"

    def evaluate(self, arch, context: EvalContext) -> Measurement:
        from nas.builder import analytic_cost

        start = time.perf_counter()
        cost = analytic_cost(arch)
        value = cost.params if self.name == "params" else cost.macs
        return Measurement(float(value), self.unit, "analytic", time.perf_counter() - start)


class Latency(Evaluator):
    name, unit, kind = "latency", "ms", MEASURE
    description = "batch-1 latency, the 10th percentile of timed runs"

    @property
    def metric(self) -> str:
        return "latency_ms"

    def evaluate(self, arch, context: EvalContext) -> Measurement:
        from evaluators.latency import measure_latency

        start = time.perf_counter()
        rep = measure_latency(arch, None, threads=context.threads, max_seconds=context.latency_seconds)
        return Measurement(rep.latency_ms, self.unit, rep.device, time.perf_counter() - start,
                           {"ci_ms": [rep.ci_low_ms, rep.ci_high_ms], "median_ms": rep.median_ms,
                            "threads": rep.threads, "runs": rep.runs})


register(ShortTraining())
register(InheritedWeights())
for _name, _what in (("synflow", "synaptic flow (Tanaka et al. 2020) with positive weights on an all-ones input"),
                     ("naswot", "log-determinant of the activation-code kernel (Mellor et al. 2021)"),
                     ("grad_norm", "sum of the L2 norms of the loss gradients"),
                     ("snip", "connection sensitivity sum |theta * dL/dtheta| (Lee et al. 2019)")):
    register(ZeroCost(_name, _what))
register(Size("params", "params"))
register(Size("macs", "MACs"))
register(Latency())
