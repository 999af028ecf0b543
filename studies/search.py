"""The search driver: one process does every Optuna ask/tell; workers (Ray actors, or this process)
evaluate candidates.

Order of work for each candidate, cheapest first:
1. sample from the space (define-by-run); an invalid combination fails at once with its reason;
2. count params and MACs analytically; over budget -> recorded as infeasible (Optuna
   constraints, so the sampler learns) without building anything;
3. a candidate already evaluated in this study (same arch id) reuses its result;
4. latency, when there is a latency budget, measured by a worker; over budget -> infeasible;
5. the proxy: instant ones (params, macs) in the driver, the rest on a worker, training one
   epoch per call so candidates below the median of their peers at the same epoch stop early.

Every tell is committed to the storage at once, so a killed search loses no completed trial;
on restart, trials left RUNNING by a dead driver are marked failed and enqueued again.
"""
from __future__ import annotations

import json
import math
import os
import socket
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from evaluators.train import TrainConfig
from nas.builder import analytic_cost
from nas.config import ConfigError

DEFAULT_STORAGE = "sqlite:///studies/nas.db"
SAMPLERS = ("tpe", "nsga2", "random")
PROXIES = ("train", "synflow", "naswot", "grad_norm", "snip", "params", "macs")
INSTANT_PROXIES = ("params", "macs")


class SearchError(Exception):
    """A search cannot start or go on; the message says why (exit code 2 on the command line)."""


@dataclass(frozen=True)
class SearchSettings:
    space: str
    macs_budget: Optional[int] = None
    latency_budget_ms: Optional[float] = None
    params_budget: Optional[int] = None
    trials: int = 20
    timeout_s: Optional[float] = None
    proxy: str = "train"
    dataset: str = "fashion-mnist"
    sampler: str = "tpe"
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    worker_threads: Optional[int] = None  # torch threads per worker; default: the cores shared out
    address: Optional[str] = None
    storage: str = DEFAULT_STORAGE
    study_name: Optional[str] = None
    seed: int = 0
    train: TrainConfig = TrainConfig(epochs=2, resolution=32, train_size=5000, val_size=1000, batch_size=128)
    early_stop: bool = True
    max_invalid: int = 2000

    @property
    def metric_names(self) -> list[str]:
        first = "accuracy" if self.proxy == "train" else f"proxy_{self.proxy}"
        return [first, "macs"] + (["latency_ms"] if self.latency_budget_ms else [])

    def identity(self) -> dict:
        """What must not change when a study is resumed."""
        return {"space": self.space, "proxy": self.proxy, "dataset": self.dataset, "macs_budget": self.macs_budget,
                "latency_budget_ms": self.latency_budget_ms, "params_budget": self.params_budget,
                "train": asdict(self.train) if self.proxy == "train" else None}

    def default_study_name(self) -> str:
        parts = [self.space, self.proxy]
        if self.macs_budget:
            parts.append(f"{self.macs_budget / 1e6:g}M")
        if self.latency_budget_ms:
            parts.append(f"{self.latency_budget_ms:g}ms")
        if self.params_budget:
            parts.append(f"{self.params_budget / 1e6:g}Mp")
        return "-".join(parts)


@dataclass
class Progress:
    complete: int = 0
    feasible: int = 0
    infeasible: int = 0
    failed: int = 0
    stopped: int = 0
    invalid: int = 0
    front: int = 0


def open_storage(url: str):
    """An Optuna RDB storage for ``url``; a readable SearchError when the URL or server is bad."""
    import optuna
    import sqlalchemy
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except sqlalchemy.exc.ArgumentError:
        raise SearchError(f"not a database URL: {url!r} (e.g. sqlite:///studies/nas.db or "
                          "postgresql://user:pass@host/db)") from None
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    sqlite = parsed.get_backend_name() == "sqlite"
    engine_kwargs = {} if sqlite else {"pool_pre_ping": True}
    try:
        storage = optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
    except (sqlalchemy.exc.SQLAlchemyError, ImportError, ModuleNotFoundError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SearchError(f"cannot open storage {url!r}: {first}") from None
    if sqlite:
        # Every suggest and tell is its own commit. In WAL mode with synchronous=NORMAL a commit
        # needs no fsync, yet a killed process loses nothing that was committed.
        sqlalchemy.event.listen(storage.engine, "connect", _sqlite_pragmas)
        storage.engine.dispose()
    return storage


def _sqlite_pragmas(connection, _record) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_sampler(name: str, seed: int, trials: int, concurrent: bool = True):
    """Samplers read the constraints each trial records (``Trial.set_constraint``). ``concurrent``:
    several candidates may be under evaluation at once."""
    import optuna

    if name == "tpe":
        # group: conditional dimensions (per-block parameters) are modelled jointly, not one by one;
        # constant_liar: trials still running on other workers are not proposed again. It costs a
        # storage read per suggested value (Optuna's per-ask trial cache is off with it), so only
        # searches that run candidates concurrently use it.
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, constant_liar=concurrent,
                                          n_startup_trials=max(4, min(10, trials // 3)))
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(50, trials // 3)))
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise SearchError(f"unknown sampler {name!r}; choose from {', '.join(SAMPLERS)}")


def _driver_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _alive(driver: str) -> bool:
    if not driver:
        return False  # a driver killed between asking for a trial and naming itself in it
    host, _, pid = driver.rpartition(":")
    if host != socket.gethostname():
        return True  # another machine's driver: not ours to reap
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:
        return True
    return True


class Search:
    """Run (or resume) one study. ``on_progress(progress)`` is called after every tell."""

    def __init__(self, settings: SearchSettings, on_progress: Optional[Callable[[Progress], None]] = None):
        import search_spaces

        self.s = settings
        if settings.proxy not in PROXIES:
            raise SearchError(f"unknown proxy {settings.proxy!r}; choose from {', '.join(PROXIES)}")
        if settings.trials < 1:
            raise SearchError(f"--trials must be at least 1, got {settings.trials}")
        try:
            self.space = search_spaces.get_space(settings.space)
        except ConfigError as e:
            raise SearchError(str(e)) from None
        self.name = settings.study_name or settings.default_study_name()
        self.on_progress = on_progress or (lambda p: None)
        self.progress = Progress()
        self.resumed, self.reaped, self.seeded = False, 0, []
        self.cache: dict[str, tuple] = {}  # arch_id -> (values, attrs) of evaluated candidates
        self.epoch_scores: dict[int, list[float]] = {}
        # instant proxy and no latency to measure: candidates are scored in the driver, one at a time
        self.instant = settings.proxy in INSTANT_PROXIES and not settings.latency_budget_ms

    # ------------------------------------------------------------------ study
    def open_study(self):
        import warnings

        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        storage = open_storage(self.s.storage)
        directions = ["maximize", "minimize"] + (["minimize"] if self.s.latency_budget_ms else [])
        concurrent = not self.instant and self.s.workers > 1
        sampler = make_sampler(self.s.sampler, self.s.seed, self.s.trials, concurrent)
        exists = self.resumed = self.name in [s.study_name for s in optuna.get_all_study_summaries(storage)]
        study = optuna.create_study(study_name=self.name, storage=storage, directions=directions, sampler=sampler,
                                    load_if_exists=True)
        identity = json.loads(json.dumps(self.s.identity()))
        if exists:
            stored = study.user_attrs.get("settings")
            if stored is not None and stored != identity:
                diff = sorted(k for k in identity if identity[k] != stored.get(k))
                raise SearchError(f"study {self.name!r} exists with other settings ({', '.join(diff)}); "
                                  "resume it with the same settings or choose another --study name")
        else:
            study.set_metric_names(self.s.metric_names)
            study.set_user_attr("settings", identity)
            study.set_user_attr("space", self.s.space)
        return study

    def recover(self, study) -> int:
        """Fail the trials a dead driver left RUNNING and enqueue them again; returns how many."""
        from optuna.trial import TrialState

        reaped = 0
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if _alive(t.user_attrs.get("driver", "")):
                continue
            study._storage.set_trial_user_attr(t._trial_id, "fail_reason", "interrupted: its search was killed")
            study.tell(t.number, state=TrialState.FAIL)
            if t.params:
                study.enqueue_trial(t.params, user_attrs={"retry_of": t.number})
            reaped += 1
        return reaped

    def enqueue_presets(self, study) -> list[str]:
        """Seed a new study with the space's published architectures that fit the budgets."""
        import nas

        if study.get_trials(deepcopy=False):
            return []
        seeded = []
        for name in self.space.presets:
            arch = nas.get_arch(name)
            cost = analytic_cost(arch)
            if self._violations(cost.macs, cost.params, None)[1]:
                continue
            study.enqueue_trial(self.space.encode(arch), user_attrs={"preset": name})
            seeded.append(name)
        return seeded

    def _load_cache(self, study) -> None:
        from optuna.trial import TrialState

        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if t.user_attrs.get("feasible"):
                self.cache.setdefault(t.user_attrs["arch_id"], (t.values, {k: t.user_attrs[k] for k in (
                    "history", "latency_ms") if k in t.user_attrs}))
                for e, acc in enumerate(t.user_attrs.get("history", []), 1):
                    self.epoch_scores.setdefault(e, []).append(acc)
        self._count(study)

    def _count(self, study) -> None:
        from optuna.trial import TrialState

        p = Progress()
        for t in study.get_trials(deepcopy=False):
            if t.state == TrialState.COMPLETE:
                if t.user_attrs.get("feasible"):
                    p.feasible += 1
                else:
                    p.infeasible += 1
            elif t.state == TrialState.FAIL:
                if t.user_attrs.get("invalid"):
                    p.invalid += 1
                else:
                    p.failed += 1
            elif t.state == TrialState.PRUNED:
                p.stopped += 1
        p.complete = p.feasible
        from studies.results import pareto_trials
        p.front = len(pareto_trials(study))
        self.progress = p

    # ------------------------------------------------------------------ constraints
    def _violations(self, macs: int, params: int, latency_ms: Optional[float]) -> tuple[dict[str, float], str]:
        """Normalised constraint values by name (<= 0 is feasible) and the reason when violated."""
        values, reasons = {}, []
        for value, budget, what in ((macs, self.s.macs_budget, "MACs"), (params, self.s.params_budget, "params"),
                                    (latency_ms, self.s.latency_budget_ms, "latency ms")):
            if budget is None:
                continue
            v = 0.0 if value is None else value / budget - 1.0
            values[what.split()[0]] = v
            if v > 0:
                reasons.append(f"{what} {value:.4g} over budget {budget:.4g}")
        return values, "; ".join(reasons)

    # ------------------------------------------------------------------ running
    def run(self) -> Any:
        study = self.open_study()
        self.reaped = self.recover(study)
        self.seeded = self.enqueue_presets(study)
        self._load_cache(study)
        self.on_progress(self.progress)
        if self.progress.complete >= self.s.trials:
            return study
        if self.instant:
            self._run_instant(study)
        else:
            self._run_pool(study)
        self._count(study)
        self.on_progress(self.progress)
        return study

    def _deadline(self) -> float:
        return time.monotonic() + self.s.timeout_s if self.s.timeout_s else math.inf

    def _ask(self, study):
        """Ask until a candidate needs evaluating; handles invalid, infeasible and duplicates here.
        Returns (trial, arch, cost) or None when the invalid-sample limit is reached."""
        from optuna.trial import TrialState

        from search_spaces import InvalidArchitecture

        invalid_run = 0
        while True:
            trial = study.ask()
            trial.set_user_attr("driver", _driver_id())
            try:
                arch = self.space.sample(trial)
            except InvalidArchitecture as e:
                trial.set_user_attr("invalid", True)
                trial.set_user_attr("fail_reason", f"invalid: {e}")
                study.tell(trial, state=TrialState.FAIL)
                self.progress.invalid += 1
                invalid_run += 1
                if invalid_run >= self.s.max_invalid:
                    raise SearchError(f"{invalid_run} invalid samples in a row from space {self.s.space!r}; "
                                      f"last reason: {e}")
                continue
            cost = analytic_cost(arch)
            for key, value in (("arch", arch.to_json()), ("arch_id", arch.arch_id), ("layout", arch.layout),
                               ("widths", [st.width for st in arch.stages]), ("depths", [st.depth for st in arch.stages]),
                               ("params", cost.params), ("macs", cost.macs)):
                trial.set_user_attr(key, value)
            constraints, reason = self._violations(cost.macs, cost.params, None)
            if reason:
                self._tell_infeasible(study, trial, cost, constraints, reason)
                continue
            if arch.arch_id in self.cache:
                values, attrs = self.cache[arch.arch_id]
                for k, v in attrs.items():
                    trial.set_user_attr(k, v)
                trial.set_user_attr("duplicate", True)
                self._tell_complete(study, trial, list(values), constraints)
                if self._enough():
                    return None
                continue
            return trial, arch, cost

    def _tell_infeasible(self, study, trial, cost, constraints: dict[str, float], reason: str) -> None:
        for name, value in constraints.items():
            trial.set_constraint(name, value)
        trial.set_user_attr("feasible", False)
        trial.set_user_attr("infeasible_reason", reason)
        worst = 0.0 if self.s.proxy == "train" else -1e300  # maximised objective: the worst possible
        values = [worst, float(cost.macs)] + ([math.inf] if self.s.latency_budget_ms else [])
        study.tell(trial, values)
        self.progress.infeasible += 1
        self.on_progress(self.progress)

    def _tell_complete(self, study, trial, values: list[float], constraints: dict[str, float]) -> None:
        from studies.results import pareto_trials

        for name, value in constraints.items():
            trial.set_constraint(name, value)
        trial.set_user_attr("feasible", True)
        study.tell(trial, values)
        self.progress.feasible += 1
        self.progress.complete += 1
        self.progress.front = len(pareto_trials(study))
        self.on_progress(self.progress)

    def _enough(self) -> bool:
        return self.progress.complete >= self.s.trials

    def _run_instant(self, study) -> None:
        deadline = self._deadline()
        while not self._enough() and time.monotonic() < deadline:
            asked = self._ask(study)
            if asked is None:
                return
            trial, arch, cost = asked
            score = float(cost.params if self.s.proxy == "params" else cost.macs)
            values = [score, float(cost.macs)]
            self.cache[arch.arch_id] = (values, {})
            self._tell_complete(study, trial, values, self._violations(cost.macs, cost.params, None)[0])

    # ------------------------------------------------------------------ worker pool
    def _run_pool(self, study) -> None:
        from studies.pool import make_pool

        with make_pool(self.s) as pool:
            self._drive(study, pool)

    def _drive(self, study, pool) -> None:
        from optuna.trial import TrialState

        deadline = self._deadline()
        running: dict[int, dict] = {}  # trial number -> state

        def submit(state: dict) -> None:
            trial = state["trial"]
            if state["stage"] == "latency":
                pool.submit(trial.number, "latency", state["json"])
            elif self.s.proxy == "train":
                pool.submit(trial.number, "epoch", trial.number, state["json"])
            else:
                pool.submit(trial.number, "score", state["json"])

        def drop(key: int, state, **attrs: Any) -> None:
            """End a running trial that will not complete (failed, or stopped early)."""
            trial = running.pop(key)["trial"]
            for k, v in attrs.items():
                trial.set_user_attr(k, v)
            study.tell(trial, state=state)
            pool.drop(key)
            self.on_progress(self.progress)

        while True:
            out_of_time = time.monotonic() >= deadline
            while (not out_of_time and pool.idle() and not self._enough()
                   and self.progress.complete + len(running) < self.s.trials):
                asked = self._ask(study)
                if asked is None:
                    break
                trial, arch, cost = asked
                state = {"trial": trial, "arch": arch, "cost": cost, "json": arch.to_json(), "history": [],
                         "latency": None, "stage": "latency" if self.s.latency_budget_ms else "proxy"}
                running[trial.number] = state
                submit(state)
            if not running:
                return
            key, result, error = pool.next_result()
            state = running[key]
            trial = state["trial"]
            if error is not None:
                self.progress.failed += 1
                drop(key, TrialState.FAIL, fail_reason=error)
                continue
            cost = state["cost"]
            if state["stage"] == "latency":
                state["latency"] = result["latency_ms"]
                for k, v in result.items():
                    trial.set_user_attr(k, v)
                constraints, reason = self._violations(cost.macs, cost.params, result["latency_ms"])
                if reason:
                    running.pop(key)
                    self._tell_infeasible(study, trial, cost, constraints, reason)
                    continue
                state["stage"] = "proxy"
                submit(state)
                continue
            state["history"].append(result["accuracy"])
            if self.s.proxy == "train":
                trial.set_user_attr("history", state["history"])
                trial.set_user_attr("images_per_second", result.get("images_per_second"))
            epoch = result["epoch"]
            if not result["done"]:
                peers = self.epoch_scores.get(epoch, [])
                self.epoch_scores.setdefault(epoch, []).append(result["accuracy"])
                if (self.s.early_stop and len(peers) >= 4 and result["accuracy"] < statistics.median(peers)) \
                        or time.monotonic() >= deadline:
                    why = "below the median of its peers" if time.monotonic() < deadline else "the time limit came"
                    self.progress.stopped += 1
                    drop(key, TrialState.PRUNED, stopped_at_epoch=epoch, stop_reason=why)
                    continue
                submit(state)
                continue
            if epoch:
                self.epoch_scores.setdefault(epoch, []).append(result["accuracy"])
            values = [result["accuracy"], float(cost.macs)] + ([state["latency"]] if self.s.latency_budget_ms else [])
            attrs = {"history": state["history"]} if self.s.proxy == "train" else {}
            if state["latency"] is not None:
                attrs["latency_ms"] = state["latency"]
            self.cache[state["arch"].arch_id] = (values, attrs)
            running.pop(key)
            self._tell_complete(study, trial, values, self._violations(cost.macs, cost.params, state["latency"])[0])
