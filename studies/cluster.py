"""Where a search's workers run: the resource plan each worker asks Ray for, and the cluster.

Without ``--address`` a search starts a private local Ray cluster, even when another one runs on
the machine (``ray start --head``): its resources are then exactly what the search asked for, and
it ends with the search. ``--address HOST:PORT`` joins a running cluster (``auto``: the one Ray
finds on this machine); worker and thread counts then come from that cluster's resources, not
from this machine's cores.

>>> resource_plan(cluster_cpus=64, cluster_gpus=4).workers        # one worker per GPU
4
>>> resource_plan(64, 4, gpus_per_worker=0.5).actor_options["num_gpus"]
0.5
"""
from __future__ import annotations

import math
import os
import socket
from dataclasses import dataclass
from typing import Any, Optional

from studies.storage import InputError

CONNECT_TIMEOUT_S = 5.0
# A CPU worker on a machine with GPUs must not see them: Ray 2.x leaves an actor that asks for no
# GPU the CUDA_VISIBLE_DEVICES it inherited, so it would train on cuda:0 beside the GPU workers.
HIDE_GPUS = {"env_vars": {"CUDA_VISIBLE_DEVICES": ""}}


@dataclass(frozen=True)
class Plan:
    """How many workers, what each asks Ray for (``actor_options`` for ``ActorClass.options``),
    its torch threads and the device it evaluates on."""

    workers: int
    actor_options: dict[str, Any]
    threads: int
    device: str


def resource_plan(cluster_cpus: float, cluster_gpus: float = 0, workers: Optional[int] = None,
                  gpus_per_worker: Optional[float] = None, worker_threads: Optional[int] = None) -> Plan:
    """The workers for a cluster with these resources (``ray.cluster_resources()``).

    With GPUs in the cluster each worker takes ``gpus_per_worker`` of one (default 1; 0.5 puts
    two workers on a GPU; 0 runs CPU workers that see no GPU) and there is one worker per share;
    without GPUs, one worker per CPU. Every worker also takes one CPU. Threads: the cluster's CPUs
    shared out among the workers, unless ``worker_threads`` says. Asking for more than the cluster
    has is an :class:`InputError` (Ray would wait for the resources for ever).
    """
    if gpus_per_worker is not None and not 0 <= gpus_per_worker <= 1:
        raise InputError(f"--gpus-per-worker must be in [0, 1] (a candidate trains on one GPU; 0.5 shares a GPU "
                         f"between two workers), got {gpus_per_worker:g}")
    if gpus_per_worker and not cluster_gpus:
        raise InputError(f"--gpus-per-worker {gpus_per_worker:g} needs GPUs, but the Ray cluster has none "
                         f"({cluster_cpus:g} CPUs); leave it out to run CPU workers")
    share = 1.0 if gpus_per_worker is None else gpus_per_worker
    on_gpu = bool(cluster_gpus) and share > 0
    if on_gpu:
        room = math.floor(cluster_gpus / share + 1e-9)
        workers = room if workers is None else workers
        if workers > room:
            raise InputError(f"--workers {workers} with {share:g} GPU each needs {workers * share:g} GPUs; "
                             f"the Ray cluster has {cluster_gpus:g}")
        options: dict[str, Any] = {"num_cpus": 1, "num_gpus": share}
    else:
        workers = int(cluster_cpus) if workers is None else workers
        options = {"num_cpus": 1, **({"runtime_env": HIDE_GPUS} if cluster_gpus else {})}
    if workers < 1:
        raise InputError(f"a pool of Ray workers needs at least one worker, got {workers}")
    if workers > cluster_cpus:
        raise InputError(f"--workers {workers} needs {workers} CPUs (one per worker); the Ray cluster has "
                         f"{cluster_cpus:g}")
    threads = worker_threads or max(1, int(cluster_cpus) // workers)
    # SPREAD: workers go to as many nodes as possible, so the cores each counts on are its own
    return Plan(workers, {**options, "scheduling_strategy": "SPREAD"}, threads, "cuda" if on_gpu else "cpu")


def check_reachable(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """An :class:`InputError` unless ``address`` (``HOST:PORT``, or ``ray://HOST:PORT``) accepts a
    TCP connection within ``timeout_s``: Ray itself retries for minutes before giving up."""
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    if not host or not port.isdigit():
        raise InputError(f"--address must be HOST:PORT (the head node's `ray start --head --port`), got {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as e:
        why = f"no answer within {timeout_s:g} s" if isinstance(e, socket.timeout) else (e.strerror or str(e))
        raise InputError(f"cannot reach the Ray cluster at --address {address}: {why} (is `ray start --head` "
                         "running there, and the port open?)") from None


def connect(address: Optional[str], local_cpus: int) -> bool:
    """Start a private local Ray cluster with ``local_cpus`` CPUs (``address`` None), or join the
    cluster at ``address``. Returns True when this call connected (the caller then disconnects
    with ``ray.shutdown()``); False when Ray was already initialised in this process."""
    import ray

    if ray.is_initialized():
        return False
    quiet = dict(include_dashboard=False, logging_level="ERROR", log_to_driver=False, configure_logging=True)
    if not address:
        # "local": a new cluster even when one is running here (plain ray.init() would join it, and
        # then refuses num_cpus)
        ray.init(address="local", num_cpus=local_cpus, **quiet)
        return True
    if address != "auto":
        check_reachable(address)
    try:
        ray.init(address=address, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as e:
        lines = str(e).strip().splitlines()
        # Ray reports a missing or wrong token only in its own log lines, not in the exception
        hint = ("" if os.environ.get("RAY_AUTH_MODE") == "token" else
                " (if that cluster uses token authentication, set RAY_AUTH_MODE=token and its token here too: "
                "RAY_AUTH_TOKEN or ~/.ray/auth_token)")
        raise InputError(f"cannot join the Ray cluster at --address {address}: "
                         f"{lines[0] if lines else type(e).__name__}{hint}") from None
    return True


def local_cpus(workers: Optional[int]) -> int:
    """CPUs of a private local cluster: this machine's, or more when ``--workers`` asks for more."""
    return max(os.cpu_count() or 1, workers or 0)
