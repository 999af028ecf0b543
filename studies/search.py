"""The search driver: one process does every Optuna ask/tell; workers (Ray actors, or this process)
evaluate candidates.

Order of work for each candidate, cheapest first:
1. sample a shape from the space (define-by-run; valid by construction) and fit its widths to the
   MAC / params budgets with the analytic counter (``Space.fit``): the trial records the
   architecture actually evaluated;
2. count params and MACs analytically; still over budget -> recorded as infeasible (Optuna
   constraints, so the sampler learns) without building anything;
3. an architecture evaluated (or being evaluated) anywhere in the study, by any driver, is not
   evaluated again: each is claimed in the database first (``studies.storage.claim``);
4. latency, when there is a latency budget, measured by a worker; over budget -> infeasible;
5. the proxy (an evaluator from ``evaluators.base``): instant ones in the driver, the rest on a
   worker; a stepwise one (training) advances one step per call, and between steps only the best
   1/eta of the candidates at the same step by Pareto rank over (partial score, MACs) go on
   (``studies.stopping``).

Every tell is committed to the storage at once, so a killed search loses no completed trial;
trials of a dead driver (a stale heartbeat, or a vanished process on this machine) are failed and
enqueued again.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import math
import os
import secrets
import socket
import time
import warnings
from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any, Callable, Optional

from evaluators.base import SCORE, EvalContext, Measurement, get_evaluator, list_evaluators
from evaluators.train import TrainConfig
from nas.builder import analytic_cost
from nas.config import ConfigError
from studies.record import (LATENCY_METRIC, Objective, Provenance, RecordWriter, TrialRecord, objective_values,
                            study_objectives)
from studies.stopping import ParetoHalving
from studies.storage import (DEFAULT_STORAGE, SearchError, claim, open_storage, release, set_trial_attr,
                             study_names)

SAMPLERS = ("tpe", "nsga2", "random")


def proxy_names() -> list[str]:
    """The ``--proxy`` choices: every registered score evaluator."""
    return [e.name for e in list_evaluators(SCORE)]


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
    workers: Optional[int] = None  # Ray workers; None: one per GPU of the cluster, else one per CPU; 0: this process
    worker_threads: Optional[int] = None  # torch threads per worker; default: the cores shared out
    gpus_per_worker: Optional[float] = None  # GPU share of each worker (default 1 on a cluster with GPUs)
    address: Optional[str] = None
    storage: str = DEFAULT_STORAGE
    study_name: Optional[str] = None
    seed: int = 0
    presets: Optional[int] = None  # published architectures seeded into a new study; None: a quarter of ``trials``
    train: TrainConfig = TrainConfig(epochs=2, resolution=32, train_size=5000, val_size=1000, batch_size=128)
    early_stop: bool = True  # successive halving by Pareto rank between epochs (studies.stopping)
    eta: int = 3  # ... keeping the best 1/eta of each rung
    candidate_timeout_s: Optional[float] = None  # a candidate still unfinished after this long fails
    max_failures: int = 20  # failed candidates in a row that end the search
    max_invalid: int = 2000  # invalid samples in a row that end the search (a safety net)
    max_repeats: int = 500  # samples in a row of architectures already evaluated or running
    supernet: Optional[str] = None  # a `nas supernet train` file, for --proxy supernet
    verify: int = 0  # --proxy supernet: re-evaluate the best this many of the front by stand-alone proxy training

    @property
    def objectives(self) -> tuple[Objective, ...]:
        return study_objectives(self.proxy, bool(self.latency_budget_ms))

    @property
    def metric_names(self) -> list[str]:
        return [o.name for o in self.objectives]

    @property
    def threads_per_worker(self) -> int:
        return self.worker_threads or max(1, (os.cpu_count() or 1) // max(1, self.workers or os.cpu_count() or 1))

    def identity(self) -> dict:
        """What must not change when a study is resumed."""
        reads_data = not get_evaluator(self.proxy).instant  # its score depends on the data settings
        train = asdict(self.train) if reads_data else None
        if train is not None and train["precision"] == "auto":
            del train["precision"]  # the default, as in studies written before the field existed
        return {"space": self.space, "proxy": self.proxy, "dataset": self.dataset, "macs_budget": self.macs_budget,
                "latency_budget_ms": self.latency_budget_ms, "params_budget": self.params_budget, "train": train}

    def default_study_name(self) -> str:
        parts = [self.space, self.proxy]
        if self.macs_budget:
            parts.append(f"{self.macs_budget / 1e6:g}M")
        if self.latency_budget_ms:
            parts.append(f"{self.latency_budget_ms:g}ms")
        if self.params_budget:
            parts.append(f"{self.params_budget / 1e6:g}Mp")
        return "-".join(parts)


def space_dimensions(space) -> dict[str, str]:
    """The space's dimensions as label -> domain (with its condition): what a study's sampler saw."""
    return {label: dom + (f" [if {when}]" if when else "") for label, dom, when in space.dimensions()}


def space_fingerprint(dimensions: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(dimensions, sort_keys=True).encode()).hexdigest()[:16]


def space_changes(before: dict[str, str], now: dict[str, str], limit: int = 3) -> str:
    """What changed between two listings of a space's dimensions, in a few words."""
    changed = [f"{k}: {before[k]} -> {now[k]}" for k in sorted(before.keys() & now.keys()) if before[k] != now[k]]
    added = [f"new {k}" for k in sorted(now.keys() - before.keys())]
    removed = [f"no more {k}" for k in sorted(before.keys() - now.keys())]
    items = changed + added + removed
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return "; ".join(items[:limit]) + more


@dataclass
class Progress:
    complete: int = 0  # distinct architectures evaluated within budget, to the end or stopped early: what --trials counts
    feasible: int = 0
    infeasible: int = 0
    failed: int = 0
    stopped: int = 0
    invalid: int = 0
    repeated: int = 0  # samples of an architecture evaluated (or being evaluated) before: not evaluated again
    front: int = 0


class SearchFailed(SearchError):
    """Candidates keep failing: the search stops and says why."""


HEARTBEAT_S = 10  # a driver's running trials beat this often; after three silent intervals they are reaped


def make_sampler(name: str, seed: int, trials: int, concurrent: bool = True):
    """Samplers read the constraints each trial records (``Trial.set_constraint``). ``concurrent``:
    several candidates may be under evaluation at once."""
    import optuna

    with warnings.catch_warnings():  # multivariate/group TPE are flagged experimental
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
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


class Stage(Enum):
    LATENCY = "latency"  # measuring latency (under a latency budget), before the proxy
    SCORE = "score"      # the proxy


@dataclass(frozen=True)
class Task:
    """One call to a worker: run evaluator ``evaluator`` on ``arch_json``; a stepwise task advances
    the candidate's evaluation by one step (its state stays on the worker between calls)."""

    evaluator: str
    arch_json: str
    stepwise: bool = False


@dataclass
class Candidate:
    """A candidate under evaluation: its trial, its record and the stage it is in."""

    trial: Any
    record: TrialRecord
    stage: Stage


class Heartbeat:
    """Records a heartbeat for each running trial of this driver every ``HEARTBEAT_S`` seconds, from
    a thread of its own, so any driver on any machine can tell a dead driver's trials by their
    stale heartbeats (``optuna.storages.fail_stale_trials``)."""

    def __init__(self, storage, study_name: str):
        import threading

        self.storage, self.study_id = storage, storage.get_study_id_from_name(study_name)
        self.trial_ids: dict[int, int] = {}  # trial number -> storage id
        self.lock, self.stopped = threading.Lock(), threading.Event()
        self.thread = threading.Thread(target=self._beat, name="nas-heartbeat", daemon=True)
        self.thread.start()

    def add(self, number: int) -> None:
        trial_id = self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number)
        self.storage.record_heartbeat(trial_id)
        with self.lock:
            self.trial_ids[number] = trial_id

    def remove(self, number: int) -> None:
        with self.lock:
            self.trial_ids.pop(number, None)

    def _beat(self) -> None:
        while not self.stopped.wait(HEARTBEAT_S):
            with self.lock:
                ids = list(self.trial_ids.values())
            for trial_id in ids:
                try:
                    self.storage.record_heartbeat(trial_id)
                except Exception:  # a finished trial, or the database is briefly away: try again next beat
                    pass

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join()


class Search:
    """Run (or resume) one study. ``on_progress(progress)`` is called after every tell.

    Several drivers (processes, machines) may run one study at once: each claims an architecture in
    the database before evaluating it (``studies.storage.claim``), so none is evaluated twice; each
    draws its own seed stream, but the first driver of a new study uses ``seed`` itself."""

    def __init__(self, settings: SearchSettings, on_progress: Optional[Callable[[Progress], None]] = None,
                 on_pool: Optional[Callable[[str], None]] = None):
        import search_spaces

        self.s = settings
        if settings.proxy not in proxy_names():
            raise SearchError(f"unknown proxy {settings.proxy!r}; choose from {', '.join(proxy_names())}")
        if settings.trials < 1:
            raise SearchError(f"--trials must be at least 1, got {settings.trials}")
        if settings.presets is not None and settings.presets < 0:
            raise SearchError(f"--presets must be 0 or more, got {settings.presets}")
        try:
            self.space = search_spaces.get_space(settings.space)
            if settings.proxy == "supernet":  # candidates come from the points the supernet holds
                self.space = self.space.supernet_space()
        except ConfigError as e:
            raise SearchError(str(e)) from None
        self.evaluator = get_evaluator(settings.proxy)
        self.objectives = settings.objectives
        self._check_budgets()
        self.supernet = self._check_supernet()
        self.name = settings.study_name or settings.default_study_name()
        self.on_progress = on_progress or (lambda p: None)
        self.on_pool = on_pool or (lambda description: None)  # told where the workers run, once they are up
        self.progress = Progress()
        self.resumed, self.reaped, self.seeded = False, 0, []
        self.cache: dict[str, TrialRecord] = {}  # arch_id -> record of an evaluated candidate
        self.halving = ParetoHalving(settings.eta)
        self.writer = RecordWriter()
        self.driver = _driver_id()
        self.study = self.heartbeat = None
        self._asks = 0
        self._recovered = -math.inf  # when recover() last ran
        # an instant proxy and no latency to measure: candidates are scored in the driver, one at a time
        self.instant = self.evaluator.instant and not settings.latency_budget_ms

    def _check_budgets(self) -> None:
        """A budget below the cheapest architecture of the space cannot be met: say so at once."""
        from studies.budgets import unreachable

        reason = unreachable(self.space, self.s.macs_budget, self.s.params_budget)
        if reason:
            raise SearchError(reason)

    def _check_supernet(self) -> Optional[tuple]:
        """The supernet (and its training record) of a ``--proxy supernet`` search, checked against
        the search's space and budget; None for other proxies."""
        if self.s.proxy != "supernet":
            if self.s.supernet is not None or self.s.verify:
                raise SearchError("--supernet and --verify are for --proxy supernet")
            return None
        from evaluators.supernet import load_supernet
        from studies.budgets import format_macs

        if self.s.supernet is None:
            raise SearchError("--proxy supernet needs --supernet FILE (written by `nas supernet train`)")
        supernet, record = load_supernet(self.s.supernet)
        if supernet.space != self.s.space:
            raise SearchError(f"the supernet in {self.s.supernet} was trained over space {supernet.space!r}, "
                              f"not {self.s.space!r}")
        if supernet.macs_budget is not None and (self.s.macs_budget is None or self.s.macs_budget > supernet.macs_budget):
            raise SearchError(f"the supernet in {self.s.supernet} holds points within {format_macs(supernet.macs_budget)}; "
                              f"search with --budget {format_macs(supernet.macs_budget)} or less")
        trained = record["settings"]
        if trained["dataset"] != self.s.dataset:
            raise SearchError(f"the supernet was trained on {trained['dataset']}, not {self.s.dataset}")
        return supernet, record

    # ------------------------------------------------------------------ study
    def open(self):
        """Open (or create) the study and check it may be resumed; ``run`` calls it if needed."""
        if self.study is None:
            self.study = self.open_study()
        return self.study

    def open_study(self):
        import optuna

        self.storage = storage = open_storage(self.s.storage, HEARTBEAT_S, self._retry_stale)
        exists = self.resumed = self.name in study_names(storage)
        study = optuna.create_study(study_name=self.name, storage=storage, load_if_exists=True,
                                    directions=[o.direction for o in self.objectives])
        identity = self.s.identity()
        if self.supernet is not None:  # the scores depend on the supernet's training
            record = self.supernet[1]
            identity = {**identity, "train": None, "supernet": {"settings": record["settings"],
                                                                "epochs_done": record["epochs_done"]}}
        identity = json.loads(json.dumps(identity))
        dims = space_dimensions(self.space)
        if exists:
            stored = study.user_attrs.get("settings")
            if stored is not None and stored != identity:
                diff = sorted(k for k in identity if identity[k] != stored.get(k))
                raise SearchError(f"study {self.name!r} exists with other settings ({', '.join(diff)}); "
                                  "resume it with the same settings or choose another --study name")
            before = study.user_attrs.get("space_dimensions")
            if before is not None and before != dims:
                raise SearchError(f"the space {self.s.space!r} has changed since study {self.name!r} began "
                                  f"({space_changes(before, dims)}); its sampler cannot go on in a changed space: "
                                  "start a new study (--study NAME)")
        else:
            with warnings.catch_warnings():  # flagged experimental since Optuna 3.2, and relied on here
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                study.set_metric_names([o.name for o in self.objectives])
            study.set_user_attr("settings", identity)
            study.set_user_attr("space", self.s.space)
            study.set_user_attr("space_dimensions", dims)
            study.set_user_attr("space_fingerprint", space_fingerprint(dims))
        # The first driver of a study draws from --seed; a second driver, or a resumed one, from a
        # stream of its own, so that it does not propose the same candidates again.
        first = claim(storage, self.name, "seed-stream", self.driver) == self.driver and not exists
        seed = self.s.seed if first else secrets.randbits(31)
        concurrent = not self.instant and self.s.workers not in (0, 1)
        study.sampler = make_sampler(self.s.sampler, seed, self.s.trials, concurrent)
        return study

    def recover(self, study) -> int:
        """Fail the trials dead drivers left RUNNING and enqueue them again; returns how many.
        A driver is dead when its heartbeat went stale (any machine), or, on this machine, when
        its process is gone."""
        from optuna.storages import fail_stale_trials
        from optuna.trial import TrialState

        before = self.reaped
        self._recovered = time.monotonic()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "heartbeat is supposed to be used with Study.optimize"
            fail_stale_trials(study)
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            driver = t.user_attrs.get("driver", "")
            # a trial naming no driver is one asked a moment ago (its driver names itself next), or one whose
            # driver died in that moment: only the second is old
            unnamed_and_old = not driver and t.datetime_start is not None and (
                datetime.datetime.now() - t.datetime_start).total_seconds() > 3 * HEARTBEAT_S
            if (driver and not _alive(driver)) or unnamed_and_old:
                set_trial_attr(self.storage, self.name, t.number, "reason", "interrupted: its search was killed")
                study.tell(t.number, state=TrialState.FAIL)
                self._retry_stale(study, t)
        return self.reaped - before

    def _settle(self, study, deadline: float) -> None:
        """Before ending, wait for the trials that name no driver to be named or reaped: a driver
        killed between asking a trial and naming itself left it, and nothing else would fail it
        (its heartbeat, if any, is this young too). Another driver's trial being asked right now is
        named within moments; a dead one's is reaped once old enough (at most ``3 * HEARTBEAT_S``),
        unless ``--timeout`` comes first (the next driver reaps it then)."""
        from optuna.trial import TrialState

        end = min(deadline, time.monotonic() + 3 * HEARTBEAT_S + 2)
        while time.monotonic() < end and any(not t.user_attrs.get("driver") for t in study.get_trials(
                deepcopy=False, states=(TrialState.RUNNING,))):
            time.sleep(1)
            self.recover(study)

    def _retry_stale(self, study, trial) -> None:
        """A dead driver's trial, now failed: free its architecture and run it again (the retry
        records ``retry_of``; a trial failed by Optuna for its stale heartbeat takes no more attributes)."""
        arch_id = trial.user_attrs.get("arch_id")
        if arch_id:
            release(self.storage, self.name, arch_id, str(trial.number))
        if trial.params:
            study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
        self.reaped += 1

    def enqueue_presets(self, study) -> list[str]:
        """Seed a new study with the space's published architectures that fit the budgets: at most
        ``presets`` of them (default a quarter of the trials, so a search mostly explores), spread
        evenly over their MACs from the largest down."""
        import nas

        if study.get_trials(deepcopy=False):
            return []
        limit = self.s.trials // 4 if self.s.presets is None else self.s.presets
        fitting = []
        for name in self.space.presets:
            arch = nas.get_arch(name)
            cost = analytic_cost(arch)
            if not self._violations(cost.macs, cost.params, None)[1]:
                fitting.append((cost.macs, name, arch))
        fitting.sort(key=lambda f: -f[0])
        if len(fitting) > limit:
            fitting = [fitting[round(i * (len(fitting) - 1) / max(1, limit - 1))] for i in range(limit)]
        for _, name, arch in fitting:
            study.enqueue_trial(self.space.encode(arch), user_attrs={"preset": name})
        return [name for _, name, _ in fitting]

    def _load_cache(self, study) -> None:
        """What earlier runs learnt: evaluated architectures, and every partial result (of stopped
        trials too) for the stopping rule."""
        from optuna.trial import TrialState

        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
            record = TrialRecord.from_trial(t)
            if record.provenance.duplicate:
                continue
            for step, accuracy in enumerate(record.history, 1):
                self.halving.add(step, accuracy, record.macs)
            if record.feasible:
                if self.objectives[0].name not in record.measurements:  # written before measurements
                    record.measurements[self.objectives[0].name] = Measurement(t.values[0], self.objectives[0].unit)
                self.cache.setdefault(record.arch_id, record)
        self._count(study)

    def _count(self, study) -> None:
        from optuna.trial import TrialState

        from studies.results import pareto_trials

        p = Progress()
        for t in study.get_trials(deepcopy=False):
            a = t.user_attrs
            if a.get("duplicate"):
                p.repeated += 1
            elif t.state == TrialState.COMPLETE:
                if a.get("feasible"):
                    p.feasible += 1
                else:
                    p.infeasible += 1
            elif t.state == TrialState.FAIL:
                if a.get("invalid"):
                    p.invalid += 1
                else:
                    p.failed += 1
            elif t.state == TrialState.PRUNED:
                p.stopped += 1
        p.complete = p.feasible + p.stopped
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

    def _record_violations(self, record: TrialRecord) -> tuple[dict[str, float], str]:
        lat = record.latency
        return self._violations(record.macs, record.params, None if lat is None else lat.value)

    # ------------------------------------------------------------------ running
    def run(self) -> Any:
        deadline = self._deadline()
        study = self.open()
        self.heartbeat = Heartbeat(self.storage, self.name)
        try:
            self.recover(study)
            self.seeded = self.enqueue_presets(study)
            self._load_cache(study)
            self.on_progress(self.progress)
            if self.progress.complete < self.s.trials:
                if self.instant:
                    self._run_instant(study)
                else:
                    self._run_pool(study)
            self._settle(study, deadline)
        finally:
            self.heartbeat.stop()
        self._count(study)
        self.on_progress(self.progress)
        return study

    def context(self) -> EvalContext:
        if self.supernet is not None:
            from studies.supernet import scoring_context

            return scoring_context(self.s.supernet, self.s.threads_per_worker, self.supernet)
        return EvalContext(self.s.dataset, self.s.train, self.s.threads_per_worker)

    def verify(self, study, on_each: Optional[Callable[[int, float], None]] = None) -> list[int]:
        """Train the best ``verify`` members of the supernet front stand-alone (the default proxy,
        in this process) and record their accuracy beside the inherited one (study attribute
        ``verified:N`` for trial N: a finished trial takes no more attributes); members verified
        before are not trained again. Returns the trial numbers verified."""
        from nas.config import ArchConfig
        from studies.results import pareto_trials

        front = sorted(pareto_trials(study), key=lambda t: -t.values[0])[:self.s.verify]
        train = get_evaluator("train")
        context = EvalContext(self.s.dataset, self.s.train, os.cpu_count() or 1)
        done = []
        for t in front:
            key = f"verified:{t.number}"
            if key not in study.user_attrs:
                m = train.evaluate(ArchConfig.from_json(t.user_attrs["arch"]), context)
                study.set_user_attr(key, m.to_dict())
                if on_each is not None:
                    on_each(t.number, m.value)
            done.append(t.number)
        return done

    def _deadline(self) -> float:
        return time.monotonic() + self.s.timeout_s if self.s.timeout_s else math.inf

    def _ask(self, study, deadline: float = math.inf) -> Optional[Candidate]:
        """Ask until a candidate needs evaluating; handles invalid, infeasible and repeated samples
        here. Returns None when enough trials are complete or the time is up."""
        from optuna.trial import TrialState

        from search_spaces import InvalidArchitecture

        invalid_run = repeat_run = 0
        first = True
        while time.monotonic() < deadline:
            self._asks += 1
            # other drivers may be adding to the study: look before each new candidate of the pool, and
            # every 20 asks (the instant path, and long runs of over-budget or repeated samples)
            if (first and not self.instant) or self._asks % 20 == 0:
                self._count(study)
                if time.monotonic() - self._recovered > HEARTBEAT_S:  # drivers may die while this one runs
                    self.recover(study)
            first = False
            if self._enough():
                break
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "heartbeat is supposed to be used with Study.optimize"
                trial = study.ask()
            provenance = Provenance(self.driver, trial.user_attrs.get("preset"), trial.user_attrs.get("retry_of"))
            trial.set_user_attr("driver", provenance.driver)  # first: until then a kill leaves a trial nobody owns
            self.heartbeat.add(trial.number)
            try:
                arch = self.space.sample(trial)
            except InvalidArchitecture as e:
                self._tell(study, trial, TrialRecord(invalid=True, reason=f"invalid: {e}", provenance=provenance),
                           TrialState.FAIL)
                self.progress.invalid += 1
                invalid_run += 1
                if invalid_run >= self.s.max_invalid:
                    raise SearchError(f"{invalid_run} invalid samples in a row from space {self.s.space!r}; "
                                      f"last reason: {e}")
                continue
            except ValueError as e:
                if "dynamic value space" not in str(e):
                    raise
                # Optuna refuses a dimension whose domain changed, in a study older than space fingerprints
                study.tell(trial, state=TrialState.FAIL)
                raise SearchError(f"study {self.name!r} was made with another version of space {self.s.space!r} "
                                  f"({e}); start a new study (--study NAME)") from None
            if provenance.preset is None:  # the sampled shape, its widths fitted to the budgets
                arch = self.space.fit(arch, self.s.macs_budget, self.s.params_budget)
            cost = analytic_cost(arch)
            record = TrialRecord.for_arch(arch, cost.params, cost.macs, provenance)
            constraints, reason = self._violations(cost.macs, cost.params, None)
            if reason:
                self._tell_infeasible(study, trial, record, constraints, reason)
                continue
            if self._repeat(study, trial, record):
                repeat_run += 1
                if repeat_run >= self.s.max_repeats:
                    raise SearchError(f"the sampler proposed {repeat_run} architectures in a row that were already "
                                      f"evaluated: space {self.s.space!r} looks exhausted under these budgets "
                                      f"({self.progress.complete} distinct candidates)")
                continue
            self.writer.write(trial, record)
            return Candidate(trial, record, Stage.LATENCY if self.s.latency_budget_ms else Stage.SCORE)
        return None

    def _repeat(self, study, trial, record: TrialRecord) -> bool:
        """Whether ``record``'s architecture was evaluated, or is being evaluated, by another trial of
        the study (this driver's or another's); if so the trial is told and True returned. Else the
        trial now owns the architecture."""
        from optuna.trial import TrialState

        known = self.cache.get(record.arch_id)
        owner = None
        if known is None:
            owner = int(claim(self.storage, self.name, record.arch_id, str(trial.number)))
            if owner == trial.number:
                return False
            other = self.storage.get_trial(self.storage.get_trial_id_from_study_id_trial_number(
                self.storage.get_study_id_from_name(self.name), owner))
            if other.state == TrialState.COMPLETE and other.user_attrs.get("feasible"):
                known = TrialRecord.from_trial(other)
                if self.objectives[0].name not in known.measurements:
                    known.measurements[self.objectives[0].name] = Measurement(other.values[0],
                                                                              self.objectives[0].unit)
                self.cache[record.arch_id] = known
            elif other.state == TrialState.FAIL:  # a failed owner that kept its claim: take the architecture over
                release(self.storage, self.name, record.arch_id, str(owner))
                return self._repeat(study, trial, record)
        record.provenance.duplicate = True
        self.progress.repeated += 1
        if known is not None:  # the sampler learns the known result; it does not count as a new candidate
            record.measurements, record.history = dict(known.measurements), list(known.history)
            for name, value in self._record_violations(record)[0].items():
                trial.set_constraint(name, value)
            record.feasible = True
            self._tell(study, trial, record, values=objective_values(self.objectives, record))
        else:
            record.reason = f"the same architecture as trial {owner}, which is being or was evaluated"
            self._tell(study, trial, record, TrialState.FAIL)
        return True

    def _tell(self, study, trial, record: TrialRecord, state=None, values=None) -> None:
        self.writer.write(trial, record)
        study.tell(trial, values, state=state)
        self.writer.forget(trial)
        self.heartbeat.remove(trial.number)

    def _tell_infeasible(self, study, trial, record: TrialRecord, constraints: dict[str, float], reason: str) -> None:
        for name, value in constraints.items():
            trial.set_constraint(name, value)
        record.feasible, record.reason = False, reason
        self._tell(study, trial, record, values=objective_values(self.objectives, record))
        self.progress.infeasible += 1
        self.on_progress(self.progress)

    def _tell_complete(self, study, trial, record: TrialRecord) -> None:
        from studies.results import pareto_trials

        for name, value in self._record_violations(record)[0].items():
            trial.set_constraint(name, value)
        record.feasible = True
        self._tell(study, trial, record, values=objective_values(self.objectives, record))
        self.cache[record.arch_id] = record
        self.progress.feasible += 1
        self.progress.complete += 1
        self.progress.front = len(pareto_trials(study))
        self.on_progress(self.progress)

    def _enough(self) -> bool:
        return self.progress.complete >= self.s.trials

    def _run_instant(self, study) -> None:
        from optuna.trial import TrialState

        deadline = self._deadline()
        context = self.context()
        failures = 0
        while (candidate := self._ask(study, deadline)) is not None:
            record = candidate.record
            try:
                record.measurements[self.objectives[0].name] = self.evaluator.evaluate(record.arch, context)
            except Exception as e:  # a failing candidate is a result, not a crash
                from studies.pool import error_line

                record.reason, failures = error_line(e), failures + 1
                self.progress.failed += 1
                release(self.storage, self.name, record.arch_id, str(candidate.trial.number))
                self._tell(study, candidate.trial, record, TrialState.FAIL)
                if failures >= self.s.max_failures:
                    raise SearchFailed(f"{failures} candidates failed in a row; the last: {record.reason}") from None
                continue
            failures = 0
            self._tell_complete(study, candidate.trial, record)

    # ------------------------------------------------------------------ worker pool
    def _run_pool(self, study) -> None:
        from studies.pool import make_pool

        with make_pool(self.s, self.context(), needs_data=not self.evaluator.instant) as pool:
            self.on_pool(pool.describe())
            self._drive(study, pool)

    def _submit(self, pool, candidate: Candidate) -> None:
        arch_json = candidate.record.arch_json
        if candidate.stage is Stage.LATENCY:
            task = Task("latency", arch_json)
        else:
            task = Task(self.evaluator.name, arch_json, stepwise=self.evaluator.stepwise)
        pool.submit(candidate.trial.number, task)

    def _drive(self, study, pool) -> None:
        from optuna.trial import TrialState

        deadline = self._deadline()
        running: dict[int, Candidate] = {}
        started: dict[int, float] = {}
        failures = 0

        def end(key: int, state, reason: str, stopped_at: Optional[int] = None) -> None:
            """End a running trial that will not complete (failed, or stopped early)."""
            c = running.pop(key)
            c.record.reason, c.record.stopped_at_epoch = reason, stopped_at
            if state == TrialState.FAIL:  # it may be tried again
                release(self.storage, self.name, c.record.arch_id, str(key))
            self._tell(study, c.trial, c.record, state)
            pool.drop(key)
            self.on_progress(self.progress)

        try:
            while True:
                while pool.idle() and self.progress.complete + len(running) < self.s.trials:
                    candidate = self._ask(study, deadline)
                    if candidate is None:
                        break
                    running[candidate.trial.number] = candidate
                    started[candidate.trial.number] = time.monotonic()
                    self._submit(pool, candidate)
                if not running:
                    return
                key, measurement, error = pool.next_result()
                c = running[key]
                late = (self.s.candidate_timeout_s is not None
                        and time.monotonic() - started[key] > self.s.candidate_timeout_s)
                if error is None and late and not measurement.final:
                    error = f"over the per-candidate time limit of {self.s.candidate_timeout_s:g} s"
                if error is not None:
                    self.progress.failed += 1
                    failures += 1
                    end(key, TrialState.FAIL, error)
                    if failures >= self.s.max_failures:
                        raise SearchFailed(f"{failures} candidates failed in a row; the last: {error}")
                    continue
                failures = 0
                if c.stage is Stage.LATENCY:
                    c.record.measurements[LATENCY_METRIC] = measurement
                    constraints, reason = self._record_violations(c.record)
                    if reason:
                        running.pop(key)
                        self._tell_infeasible(study, c.trial, c.record, constraints, reason)
                        continue
                    c.stage = Stage.SCORE
                    self.writer.write(c.trial, c.record)
                    self._submit(pool, c)
                    continue
                if self.evaluator.stepwise:
                    c.record.history.append(measurement.value)
                    self.writer.write(c.trial, c.record)
                keeps = True
                if measurement.step is not None:
                    keeps = self.halving.keeps(measurement.step, measurement.value, c.record.macs)
                    self.halving.add(measurement.step, measurement.value, c.record.macs)
                if not measurement.final:
                    if time.monotonic() >= deadline:
                        self.progress.stopped += 1
                        self.progress.complete += 1
                        end(key, TrialState.PRUNED, "the time limit came", measurement.step)
                    elif self.s.early_stop and not keeps:
                        self.progress.stopped += 1
                        self.progress.complete += 1
                        end(key, TrialState.PRUNED, f"not in the best 1/{self.s.eta} of its rung by Pareto rank "
                                                    "(partial accuracy, MACs)", measurement.step)
                    else:
                        self._submit(pool, c)
                    continue
                c.record.measurements[self.objectives[0].name] = measurement
                running.pop(key)
                self._tell_complete(study, c.trial, c.record)
        finally:
            for key in list(running):  # the search stops (failures, an error, Ctrl-C): nothing stays RUNNING
                end(key, TrialState.FAIL, "the search stopped before it finished")
