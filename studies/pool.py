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
from studies.storage import SearchError
from studies.worker import CandidateWorker, worker_context

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

    def describe(self) -> str:
        """Where the workers run, in a line (for the command line to print)."""
        return f"this process, {self.context.threads} thread(s), device {self.context.device}"

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
    """One Ray actor per worker, on a private local cluster or the one at ``settings.address``.

    The driver loads the data set once and puts it in Ray's object store; every actor gets it from
    there, so no node needs the data set's files. How many workers, and what each asks Ray for,
    follows the cluster's resources (:func:`studies.cluster.resource_plan`)."""

    START_TIMEOUT_S = 180.0

    def __init__(self, settings: Any, context: EvalContext, needs_data: bool):
        super().__init__(settings, context)
        import ray

        from studies.cluster import connect, local_cpus, resource_plan

        self.ray = ray
        workers, self.address = getattr(settings, "workers", None), getattr(settings, "address", None)
        self.owns_connection = connect(self.address, local_cpus(workers))
        try:
            resources = ray.cluster_resources()
            self.plan = resource_plan(resources.get("CPU", 0), resources.get("GPU", 0), workers,
                                      getattr(settings, "gpus_per_worker", None),
                                      getattr(settings, "worker_threads", None))
            self.shipped = worker_context(context, self.plan.threads, self.plan.device)
            self.data_ref = ray.put(context.data) if needs_data else None  # loaded once, here
            # a supernet's weights, likewise: read once by the driver, shipped once to every worker
            self.supernet_ref = ray.put(context.supernet) if context.supernet_file else None
            self.actor_cls = ray.remote(max_restarts=0)(CandidateWorker).options(**self.plan.actor_options)
            self.workers = [self._spawn() for _ in range(self.plan.workers)]
            self.nodes = self._started()
        except BaseException:
            self.close()
            raise
        self.pending: dict[Any, tuple[int, int]] = {}  # object ref -> (key, worker index)

    def _spawn(self):
        return self.actor_cls.remote(self.shipped, self.data_ref, self.supernet_ref)

    def _started(self) -> list[str]:
        """Each worker's node, once all have started; a :class:`SearchError` naming the first
        failure, or the resources missing when the cluster cannot place them all in time."""
        ray = self.ray
        pings = [w.ping.remote() for w in self.workers]
        ready, _ = ray.wait(pings, num_returns=len(pings), timeout=self.START_TIMEOUT_S)
        try:
            nodes = ray.get(ready)
        except ray.exceptions.RayError as e:
            raise SearchError(f"a Ray worker could not start: {error_line(e)} (each node needs this package "
                              "installed: see the README's Scaling out)") from None
        if len(nodes) < len(pings):
            raise SearchError(f"only {len(nodes)} of {len(pings)} Ray workers started within "
                              f"{self.START_TIMEOUT_S:g} s: the cluster has no free {self.plan.actor_options} for the "
                              "rest (see `ray status`); ask for fewer --workers")
        return nodes

    def describe(self) -> str:
        """Where the workers run, in a line: e.g. for the command line to print."""
        p = self.plan
        cluster = f"the Ray cluster at {self.address}" if self.address else "a private local Ray cluster"
        return (f"{p.workers} worker(s) on {len(set(self.nodes))} node(s) of {cluster}, {p.threads} thread(s) "
                f"each, device {p.device}")

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
        except ray.exceptions.OutOfMemoryError:
            # Ray's memory monitor killed the worker while the machine ran short of memory; every later
            # call to that actor would fail the same way at once, so a fresh worker takes its place
            self.workers[index] = self._spawn()
            self.owner.pop(key, None)
            return key, None, "worker killed by Ray's memory monitor: the machine ran short of memory"
        except ray.exceptions.RayActorError as e:
            self.workers[index] = self._spawn()  # the process died; its state is gone
            self.owner.pop(key, None)
            return key, None, f"worker died ({error_line(e)}); out of memory?"
        except Exception as e:  # the worker's exception (a RayTaskError): its text becomes the trial's reason
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
        if self.owns_connection:
            self.owns_connection = False
            self.ray.shutdown()  # a private cluster ends here; a joined one only loses this driver


def make_pool(settings: Any, context: EvalContext, needs_data: bool = True) -> WorkerPool:
    return LocalPool(settings, context) if settings.workers == 0 else RayPool(settings, context, needs_data)
