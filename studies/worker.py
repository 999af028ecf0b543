"""What a worker does: run evaluators on candidates, with the data it keeps in memory.

A plain class, so it runs in-process (tests, ``--workers 0``) or as a long-lived Ray actor. An
actor gets the data set from Ray's object store (the driver loaded it once), so a node without
the data set's files can evaluate. Candidates arrive as config JSON inside a
:class:`~studies.search.Task`; a stepwise evaluation (training) advances one step per call, its
state kept here between calls, so the driver can stop a hopeless candidate between steps. As a Ray
actor, every measurement says where it was made: ``details["node"]`` (the Ray node id) and
``details["device"]`` (with the GPU's name); in-process, the trial's driver (host and process)
says it already.
"""
from __future__ import annotations

import dataclasses
import sys
from typing import TYPE_CHECKING, Iterator, Optional

from evaluators.base import EvalContext, Measurement, get_evaluator
from evaluators.threads import torch_threads
from nas.config import ArchConfig

if TYPE_CHECKING:
    from evaluators.data import Dataset


def worker_context(context: EvalContext, threads: Optional[int] = None, device: Optional[str] = None,
                   data: Optional["Dataset"] = None, supernet: Optional[tuple] = None) -> EvalContext:
    """A new context like ``context``, with a worker's threads and device, holding ``data`` and
    ``supernet`` (a loaded supernet and its record) when given (else it loads them on first use).
    ``context``'s own loaded data and supernet are not carried over, so the result pickles small."""
    return EvalContext(context.dataset, context.train, threads or context.threads, device or context.device,
                       context.latency_seconds, data, context.supernet_file, supernet)


def _ray_node() -> Optional[str]:
    """The Ray node this process runs on as a Ray actor, or None."""
    ray = sys.modules.get("ray")  # only a process that uses Ray has it imported; importing it costs a second
    if ray is None or not ray.is_initialized():  # (get_runtime_context would start a Ray instance)
        return None
    context = ray.get_runtime_context()
    return context.get_node_id() if context.get_actor_id() else None


def _device_name(device: str) -> str:
    if not device.startswith("cuda"):
        return device
    import torch

    return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"


class CandidateWorker:
    def __init__(self, context: EvalContext, data: Optional["Dataset"] = None, supernet: Optional[tuple] = None):
        self.context = context if data is None and supernet is None else worker_context(context, data=data,
                                                                                        supernet=supernet)
        self.running: dict[int, Iterator[Measurement]] = {}  # trial key -> its stepwise evaluation
        self.node = _ray_node()

    def ping(self) -> Optional[str]:
        """The node this worker runs on, once it has started (with its data set, when it was given one)."""
        return self.node

    def run(self, key: int, task) -> Measurement:
        measurement = self._run(key, task)
        if self.node is None:
            return measurement
        where = {"node": self.node, "device": _device_name(measurement.device)}
        return dataclasses.replace(measurement, details={**measurement.details, **where})

    def _run(self, key: int, task) -> Measurement:
        evaluator = get_evaluator(task.evaluator)
        with torch_threads(self.context.threads):
            if not task.stepwise:
                return evaluator.evaluate(ArchConfig.from_json(task.arch_json), self.context)
            steps = self.running.get(key)
            if steps is None:
                steps = self.running[key] = evaluator.steps(ArchConfig.from_json(task.arch_json), self.context)
            try:
                measurement = next(steps)
            except BaseException:
                self.running.pop(key, None)
                raise
        if measurement.final:
            self.running.pop(key, None)
        return measurement

    def drop(self, key: int) -> None:
        steps = self.running.pop(key, None)
        if steps is not None:
            steps.close()
