"""Scaling out: the resource plan (0, 1 and 4 GPUs, without a GPU), a private local cluster beside a
running one, data through Ray's object store, remote errors as reasons, a real 2-node Ray cluster
on 127.0.0.1, and two drivers on one PostgreSQL study."""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest

import nas
from evaluators.base import EvalContext
from evaluators.data import load_dataset
from studies.cluster import HIDE_GPUS, check_reachable, resource_plan
from studies.storage import InputError

SEARCH = [sys.executable, "-m", "nas_cli", "search", "--space", "coatnet_ctt", "--budget", "1gflop",
          "--proxy", "synflow"]


# ---------------------------------------------------------------- the resource plan
def test_plan_without_gpus_is_one_worker_per_cpu():
    plan = resource_plan(cluster_cpus=8, cluster_gpus=0)
    assert (plan.workers, plan.threads, plan.device) == (8, 1, "cpu")
    assert plan.actor_options == {"num_cpus": 1, "scheduling_strategy": "SPREAD"}  # no GPU, no runtime_env
    assert resource_plan(8, 0, workers=2).threads == 4  # the cluster's CPUs shared out
    assert resource_plan(8, 0, workers=2, worker_threads=1).threads == 1


def test_plan_with_one_gpu():
    plan = resource_plan(cluster_cpus=8, cluster_gpus=1)
    assert (plan.workers, plan.device, plan.actor_options["num_gpus"], plan.threads) == (1, "cuda", 1.0, 8)
    assert "runtime_env" not in plan.actor_options


def test_plan_with_four_gpus_whole_and_shared():
    assert resource_plan(64, 4).workers == 4
    half = resource_plan(64, 4, gpus_per_worker=0.5)
    assert (half.workers, half.actor_options["num_gpus"], half.threads) == (8, 0.5, 8)
    assert resource_plan(64, 4, workers=2).workers == 2


def test_cpu_workers_on_a_gpu_machine_see_no_gpu():
    plan = resource_plan(16, 4, gpus_per_worker=0)
    assert (plan.workers, plan.device) == (16, "cpu")
    assert "num_gpus" not in plan.actor_options and plan.actor_options["runtime_env"] == HIDE_GPUS
    assert HIDE_GPUS == {"env_vars": {"CUDA_VISIBLE_DEVICES": ""}}


@pytest.mark.parametrize("kwargs, needle", [
    (dict(cluster_cpus=8, cluster_gpus=0, gpus_per_worker=1),
     "--gpus-per-worker 1 needs GPUs, but the Ray cluster has none"),
    (dict(cluster_cpus=8, cluster_gpus=4, gpus_per_worker=2), "--gpus-per-worker must be in [0, 1]"),
    (dict(cluster_cpus=64, cluster_gpus=4, workers=5),
     "--workers 5 with 1 GPU each needs 5 GPUs; the Ray cluster has 4"),
    (dict(cluster_cpus=2, cluster_gpus=0, workers=3),
     "--workers 3 needs 3 CPUs (one per worker); the Ray cluster has 2"),
])
def test_plan_refuses_what_the_cluster_lacks(kwargs, needle):
    with pytest.raises(InputError) as e:
        resource_plan(**kwargs)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_in_process_worker_leaves_measurements_as_they_are():
    """Only a Ray actor adds ``node`` and ``device`` (in-process, the trial's driver says where);
    asking for the node outside Ray must not start Ray."""
    import ray

    from studies.search import Task
    from studies.worker import CandidateWorker

    arch = nas.get_arch("coatnet_0")
    measured = CandidateWorker(EvalContext()).run(0, Task("params", arch.to_json()))
    assert measured.value == nas.analytic_cost(arch).params and "node" not in measured.details
    assert not ray.is_initialized()


# ---------------------------------------------------------------- connecting
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_address_is_one_line_within_seconds():
    address = f"127.0.0.1:{_free_port()}"  # nothing listens there
    start = time.monotonic()
    with pytest.raises(InputError, match=f"cannot reach the Ray cluster at --address {address}"):
        check_reachable(address)
    assert time.monotonic() - start < 6
    with pytest.raises(InputError, match="--address must be HOST:PORT"):
        check_reachable("headnode")


def test_search_with_unreachable_address_exits_2(tmp_path):
    address = f"127.0.0.1:{_free_port()}"
    start = time.monotonic()
    r = subprocess.run([*SEARCH, "--trials", "2", "--address", address, "--storage", f"sqlite:///{tmp_path}/x.db"],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("nas: error")]
    assert len(errors) == 1 and f"cannot reach the Ray cluster at --address {address}" in errors[0], r.stderr
    assert "Traceback" not in r.stderr and time.monotonic() - start < 60


# ---------------------------------------------------------------- a real 2-node cluster on 127.0.0.1
class TwoNodeCluster:
    """A head and a worker node started with `ray start --block`, one CPU each, token authentication
    (Ray 2.60 admits a second node on 127.0.0.1 only with it), a temp dir and ports of their own.
    Teardown kills only their own process groups."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="nasray"))  # short: Ray's socket paths must stay < 108 chars
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16),
                    "RAY_USAGE_STATS_ENABLED": "0"}
        self.env.pop("RAY_ADDRESS", None)
        self.procs: list[subprocess.Popen] = []
        try:
            self._start("head", "--head", f"--port={self.port}", "--include-dashboard=false",
                        f"--dashboard-port={_free_port()}")
            self._wait_for_port()
            self._start("worker", f"--address={self.address}")
            self.nodes = self._wait_for_nodes(2)
        except BaseException:
            self.close()
            raise

    def _start(self, name: str, *args: str) -> None:
        command = [sys.executable, "-m", "ray.scripts.scripts", "start", "--block", f"--temp-dir={self.dir / name}",
                   "--node-ip-address=127.0.0.1", "--num-cpus=1", "--num-gpus=0", "--disable-usage-stats",
                   f"--dashboard-agent-listen-port={_free_port()}", *args]
        with open(self.dir / f"{name}.log", "w") as log:
            self.procs.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                               start_new_session=True))  # a process group of its own, to end it

    def _wait_for_port(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                check_reachable(self.address, timeout_s=1)
                return
            except InputError:
                time.sleep(0.5)
        raise RuntimeError(f"the head did not open {self.address}: {(self.dir / 'head.log').read_text()[-2000:]}")

    def _wait_for_nodes(self, count: int) -> list[str]:
        """The alive nodes' ids, once there are ``count`` (asked from a process of its own, so this
        one's Ray stays uninitialised)."""
        code = ("import json, sys, time, ray\n"
                "ray.init(address=sys.argv[1], logging_level='ERROR', log_to_driver=False)\n"
                "for _ in range(240):\n"
                "    alive = [n['NodeID'] for n in ray.nodes() if n['Alive']]\n"
                f"    if len(alive) >= {count}: break\n"
                "    time.sleep(0.5)\n"
                "print(json.dumps(alive))\n")
        r = subprocess.run([sys.executable, "-c", code, self.address], capture_output=True, text=True, env=self.env,
                           timeout=180)
        nodes = json.loads(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 and r.stdout.strip() else []
        if len(nodes) < count:
            raise RuntimeError(f"{len(nodes)} of {count} Ray nodes up: {r.stderr[-2000:]}"
                               f"{(self.dir / 'worker.log').read_text()[-2000:]}")
        return nodes

    def close(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for p in self.procs:
                try:
                    os.killpg(p.pid, sig)
                except ProcessLookupError:
                    pass
            if sig == signal.SIGTERM:
                time.sleep(3)
        for p in self.procs:
            p.wait(timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster():
    c = TwoNodeCluster()
    try:
        yield c
    finally:
        c.close()


def _details(study, key: str) -> list[str]:
    """``details[key]`` of every measurement of every trial of ``study`` (``node``, ``device``)."""
    return [m["details"][key] for t in study.trials for m in (t.user_attrs.get("measurements") or {}).values()]


@pytest.mark.xdist_group("two_node_cluster")  # one cluster per test process: keep them in one
def test_search_runs_on_both_nodes(cluster, tmp_path):
    r = subprocess.run([*SEARCH, "--trials", "4", "--address", cluster.address, "--workers", "2",
                        "--storage", f"sqlite:///{tmp_path}/x.db"], capture_output=True, text=True, env=cluster.env,
                       timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    study = optuna.load_study(study_name=None, storage=f"sqlite:///{tmp_path}/x.db")
    assert sum(bool(t.user_attrs.get("feasible")) for t in study.trials) == 4
    assert set(_details(study, "node")) == set(cluster.nodes)  # trials ran on both nodes, and only there
    assert set(_details(study, "device")) == {"cpu"}


@pytest.mark.xdist_group("two_node_cluster")  # one cluster per test process: keep them in one
def test_pool_beside_a_running_cluster(cluster, monkeypatch):
    """Without an address a pool starts a private cluster, even where Ray would find another
    (RAY_ADDRESS, or `ray start --head` here); its workers get the data set from the object store,
    and a worker's exception comes back as the trial's reason."""
    import ray

    from studies.pool import RayPool
    from studies.search import SearchSettings, Task

    monkeypatch.setenv("RAY_ADDRESS", cluster.address)
    context = EvalContext("cifar10:/nowhere")  # no worker could load this: the data must come from the driver
    context._data = load_dataset("fashion-mnist")
    arch_json = nas.get_arch("coatnet_0").to_json()
    settings = SearchSettings(space="coatnet_ctt", workers=2, worker_threads=1)
    with RayPool(settings, context, needs_data=True) as pool:
        assert pool.plan.workers == 2 and not set(pool.nodes) & set(cluster.nodes)
        pool.submit(0, Task("synflow", arch_json))
        pool.submit(1, Task("no_such_evaluator", arch_json))
        results = dict((key, (m, error)) for key, m, error in (pool.next_result(), pool.next_result()))
    measurement, error = results[0]
    assert error is None and measurement.value > 0, error
    assert measurement.details["node"] in pool.nodes and measurement.details["device"] == "cpu"
    assert results[1][0] is None and "unknown evaluator 'no_such_evaluator'" in results[1][1]
    assert not ray.is_initialized()  # the private cluster ended with the pool


# ---------------------------------------------------------------- several drivers
@pytest.mark.skipif(not os.environ.get("NAS_TEST_POSTGRES_URL"), reason="set NAS_TEST_POSTGRES_URL (.ci/run does)")
@pytest.mark.xdist_group("two_node_cluster")  # one cluster per test process: keep them in one
def test_two_drivers_on_one_postgresql_study(cluster, tmp_path):
    url = os.environ["NAS_TEST_POSTGRES_URL"]
    name = f"drivers-{os.getpid()}-{int(time.time())}"
    drivers = [subprocess.Popen([*SEARCH, "--trials", "2", "--address", cluster.address, "--workers", "1",
                                 "--storage", url, "--study", name, "--seed", str(seed)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cluster.env,
                                cwd=tmp_path)
               for seed in (0, 1)]
    outputs = [d.communicate(timeout=300) for d in drivers]
    for d, (_, err) in zip(drivers, outputs):
        assert d.returncode == 0, err[-3000:]
    study = optuna.load_study(study_name=name, storage=url)
    assert sum(bool(t.user_attrs.get("feasible")) for t in study.trials) >= 2
    assert not [t for t in study.trials if t.state.name == "RUNNING"]
    assert set(_details(study, "node")) <= set(cluster.nodes)


@pytest.mark.xdist_group("two_node_cluster")  # one cluster per test process: keep them in one
def test_supernet_search_ships_the_weights_to_both_nodes(cluster, tmp_path):
    """The driver reads the supernet file once; workers on both nodes get its weights through Ray's
    object store and score with them."""
    supernet = tmp_path / "sn.pt"
    r = subprocess.run([sys.executable, "-m", "nas_cli", "supernet", "train", "--space", "coatnet_ctt", "--budget",
                        "60mflop", "--epochs", "1", "--batch-size", "64", "--train-size", "256", "--val-size", "128",
                        "-o", str(supernet)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    r = subprocess.run([sys.executable, "-m", "nas_cli", "search", "--space", "coatnet_ctt", "--budget", "60mflop",
                        "--proxy", "supernet", "--supernet", str(supernet), "--trials", "6", "--address",
                        cluster.address, "--workers", "2", "--storage", f"sqlite:///{tmp_path}/x.db"],
                       capture_output=True, text=True, env=cluster.env, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    study = optuna.load_study(study_name=None, storage=f"sqlite:///{tmp_path}/x.db")
    scored = [t for t in study.trials if t.user_attrs.get("feasible")]
    assert len(scored) == 6 and all(0 <= t.values[0] <= 1 for t in scored)
    assert set(_details(study, "node")) == set(cluster.nodes)
