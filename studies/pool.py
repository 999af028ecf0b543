"""Workers for the search driver: long-lived Ray actors (the default), or this process.

A trial's calls always go to the worker that holds its state (a training run lives there
between epochs). Errors come back as one readable line, never as an exception: a failing
candidate must not stop the search. A worker process that dies (e.g. killed for memory) is
replaced.
"""
from __future__ import annotations

from collections import deque
from typing import Any, Optional

from evaluators.base import EvalContext, Measurement
from studies.worker import CandidateWorker

Result = tuple[int, Optional[Measurement], Optional[str]]  # trial key, measurement, or the error line


def error_line(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None) or exc
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[-1] if text else ''}"[:500]


class WorkerPool:
    """The interface the driver uses: ``idle``, ``submit``, ``next_result``, ``drop``."""

    def __init__(self, settings: Any, context: EvalContext):
        self.s, self.context = settings, context
        self.workers: list[Any] = []
        self.owner: dict[int, int] = {}  # trial key -> worker index
        self.busy: set[int] = set()

    def __enter__(self) -> "WorkerPool":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def idle(self) -> bool:
        return len(self.busy) + self._reserved() < len(self.workers)

    def _reserved(self) -> int:
        return len({w for w in self.owner.values() if w not in self.busy})

    def _free_worker(self) -> int:
        taken = self.busy | set(self.owner.values())
        return next(i for i in range(len(self.workers)) if i not in taken)

    def _finished(self, key: int, measurement: Optional[Measurement]) -> None:
        if measurement is None or measurement.final:
            self.owner.pop(key, None)

    def submit(self, key: int, task) -> None:
        raise NotImplementedError

    def next_result(self) -> Result:
        raise NotImplementedError

    def drop(self, key: int) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class LocalPool(WorkerPool):
    """Evaluates in this process, one candidate at a time (``--workers 0``; tests)."""

    def __init__(self, settings: Any, context: EvalContext):
        super().__init__(settings, context)
        self.workers = [CandidateWorker(context)]
        self.results: deque[Result] = deque()

    def submit(self, key: int, task) -> None:
        self.owner[key] = 0
        try:
            self.results.append((key, self.workers[0].run(key, task), None))
        except Exception as e:  # a failing candidate is a result, not a crash
            self.results.append((key, None, error_line(e)))
        self.busy.add(0)

    def next_result(self) -> Result:
        key, measurement, error = self.results.popleft()
        self.busy.discard(0)
        self._finished(key, measurement)
        return key, measurement, error

    def drop(self, key: int) -> None:
        self.owner.pop(key, None)
        self.workers[0].drop(key)


class RayPool(WorkerPool):
    """One Ray actor per worker, each loading the data set once and keeping it in memory."""

    def __init__(self, settings: Any, context: EvalContext, needs_data: bool):
        super().__init__(settings, context)
        import ray

        self.ray = ray
        if not ray.is_initialized():
            kwargs = dict(include_dashboard=False, logging_level="ERROR", log_to_driver=False,
                          configure_logging=True)
            if settings.address:
                ray.init(address=settings.address, **kwargs)
            else:
                ray.init(num_cpus=settings.workers, **kwargs)
        self.actor_cls = ray.remote(num_cpus=1, max_restarts=0)(CandidateWorker)
        self.workers = [self._spawn() for _ in range(settings.workers)]
        ray.get([w.ping.remote(needs_data) for w in self.workers])  # fail early if a worker cannot start
        self.pending: dict[Any, tuple[int, int]] = {}  # object ref -> (key, worker index)

    def _spawn(self):
        return self.actor_cls.remote(self.context)

    def submit(self, key: int, task) -> None:
        index = self.owner.get(key)
        if index is None:
            index = self.owner[key] = self._free_worker()
        self.pending[self.workers[index].run.remote(key, task)] = (key, index)
        self.busy.add(index)

    def next_result(self) -> Result:
        ray = self.ray
        [ref], _ = ray.wait(list(self.pending), num_returns=1)
        key, index = self.pending.pop(ref)
        self.busy.discard(index)
        try:
            measurement = ray.get(ref)
        except ray.exceptions.RayActorError as e:
            self.workers[index] = self._spawn()  # the process died; its state is gone
            self.owner.pop(key, None)
            return key, None, f"worker died ({error_line(e)}); out of memory?"
        except Exception as e:
            self.owner.pop(key, None)
            return key, None, error_line(e)
        self._finished(key, measurement)
        return key, measurement, None

    def drop(self, key: int) -> None:
        index = self.owner.pop(key, None)
        if index is not None:
            self.workers[index].drop.remote(key)

    def close(self) -> None:
        for w in self.workers:
            self.ray.kill(w)
        self.workers = []
        if not self.s.address:
            self.ray.shutdown()


def make_pool(settings: Any, context: EvalContext, needs_data: bool = True) -> WorkerPool:
    return LocalPool(settings, context) if settings.workers == 0 else RayPool(settings, context, needs_data)
