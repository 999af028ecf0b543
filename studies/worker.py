"""What a worker does: run evaluators on candidates, with the data it keeps in memory.

A plain class, so it runs in-process (tests, ``--workers 0``) or as a long-lived Ray actor that
loads the data set once. Candidates arrive as config JSON inside a :class:`~studies.search.Task`;
a stepwise evaluation (training) advances one step per call, its state kept here between calls,
so the driver can stop a hopeless candidate between steps.
"""
from __future__ import annotations

import os
from typing import Iterator

from evaluators.base import EvalContext, Measurement, get_evaluator
from evaluators.threads import torch_threads
from nas.config import ArchConfig


class CandidateWorker:
    def __init__(self, context: EvalContext):
        self.context = context
        self.running: dict[int, Iterator[Measurement]] = {}  # trial key -> its stepwise evaluation

    def ping(self, needs_data: bool = True) -> int:
        """Fail early (e.g. the data set is missing on this node) rather than on the first candidate."""
        if needs_data:
            self.context.data
        return os.getpid()

    def run(self, key: int, task) -> Measurement:
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
