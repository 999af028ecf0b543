"""`nas dashboard`: the data functions (fronts, hypervolume, EDFs, importances, references), then a
dashboard of a real small study opened in headless Chromium."""
from __future__ import annotations

import base64
import itertools
import json
import math
import os
import random
import re
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest

import nas
from studies import dashboard as dash
from studies.search import Search, SearchSettings


# ---------------------------------------------------------------------------- synthetic frames
def frame_of(rows: list[dict]) -> pd.DataFrame:
    """A dashboard frame: defaults for the columns the functions read."""
    base = {"state": "COMPLETE", "feasible": True, "status": "feasible", "on_front": False, "layout": "C-T",
            "widths": [32, 64], "depths": [1, 1], "params": 1_000_000, "latency_ms": math.nan, "preset": None,
            "reason": None, "partial": math.nan}
    out = []
    for i, r in enumerate(rows):
        row = {**base, "trial": i, "arch_id": f"a{i}", **r}
        out.append(row)
    return pd.DataFrame(out)


def brute_force_front(points: list[tuple[float, float]]) -> set[tuple[float, float]]:
    return {p for p in points if not any(q[0] <= p[0] and q[1] >= p[1] and q != p for q in points)}


def brute_force_hypervolume(points, reference, grid=400) -> float:
    """Monte-Carlo-free check: count grid cells dominated by some point."""
    ref_x, ref_y = reference
    xs = np.linspace(0, ref_x, grid + 1)[:-1] + ref_x / grid / 2
    ys = np.linspace(ref_y, 1, grid + 1)[:-1] + (1 - ref_y) / grid / 2
    X, Y = np.meshgrid(xs, ys)
    hit = np.zeros_like(X, dtype=bool)
    for x, y in points:
        hit |= (X >= x) & (Y <= y)
    return hit.mean() * ref_x * (1 - ref_y)


# ---------------------------------------------------------------------------- fronts
def test_front_2d_is_the_non_dominated_set_sorted_by_cost():
    rng = random.Random(0)
    for _ in range(20):
        pts = [(rng.choice(range(1, 20)) * 1e8, round(rng.random(), 2)) for _ in range(rng.randint(1, 25))]
        frame = frame_of([{"macs": m, "value": v} for m, v in pts])
        front = dash.pareto_front_2d(frame, "macs")
        got = list(zip(front["macs"], front["value"]))
        assert set(got) == brute_force_front(pts)
        assert got == sorted(got) and list(front["value"]) == sorted(front["value"])  # a staircase
        assert len(got) == len(set(got))  # duplicates of one point kept once


def test_front_ignores_trials_without_a_score():
    frame = frame_of([{"macs": 1e8, "value": 0.5}, {"macs": 5e7, "value": math.nan, "status": "over budget"}])
    assert list(dash.pareto_front_2d(frame, "macs")["trial"]) == [0]


def test_evaluated_keeps_feasible_trials_once_per_architecture():
    frame = frame_of([{"macs": 1e8, "value": 0.5}, {"macs": 1e8, "value": 0.5, "arch_id": "a0"},
                      {"macs": 2e8, "value": math.nan, "status": "over budget"},
                      {"macs": 2e8, "value": math.nan, "status": "stopped", "partial": 0.3}])
    assert list(dash.evaluated(frame)["trial"]) == [0]


# ---------------------------------------------------------------------------- hypervolume
def test_hypervolume_2d_by_hand():
    ref = (10.0, 0.0)
    assert dash.hypervolume_2d([], ref) == 0.0
    assert dash.hypervolume_2d([(4.0, 0.5)], ref) == pytest.approx(6 * 0.5)
    # two steps: (2, 0.3) and (6, 0.8): 8*0.3 + 4*0.5
    assert dash.hypervolume_2d([(6.0, 0.8), (2.0, 0.3)], ref) == pytest.approx(8 * 0.3 + 4 * 0.5)
    # a dominated point and points outside the box add nothing
    assert dash.hypervolume_2d([(6.0, 0.8), (2.0, 0.3), (7.0, 0.2), (12.0, 0.99), (1.0, -0.1)], ref) == \
        pytest.approx(8 * 0.3 + 4 * 0.5)


def test_hypervolume_matches_a_grid_count():
    rng = random.Random(1)
    pts = [(rng.uniform(0, 10), rng.uniform(0, 1)) for _ in range(12)]
    assert dash.hypervolume_2d(pts, (10.0, 0.0)) == pytest.approx(brute_force_hypervolume(pts, (10.0, 0.0)), rel=0.02)


def test_hypervolume_history_is_monotone_in_trials():
    rng = random.Random(2)
    rows = []
    for i in range(40):
        status = rng.choice(["feasible", "feasible", "feasible", "over budget", "stopped", "failed"])
        rows.append({"macs": rng.uniform(1e8, 1e9), "status": status,
                     "value": rng.random() if status == "feasible" else math.nan})
    frame = frame_of(rows)
    ref = dash.reference_point([frame], "accuracy", 1e9)
    assert ref == (1e9, 0.0)
    hist = dash.hypervolume_history(frame, ref)
    assert list(hist["evaluated"]) == list(range(1, len(dash.evaluated(frame)) + 1))
    assert hist["hypervolume"].is_monotonic_increasing and hist["hypervolume"].iloc[-1] > 0
    front = dash.pareto_front_2d(dash.evaluated(frame), "macs")
    assert hist["hypervolume"].iloc[-1] == pytest.approx(
        dash.hypervolume_2d(list(zip(front["macs"], front["value"])), ref))


def test_reference_point_without_budget_and_for_proxies():
    a = frame_of([{"macs": 1e8, "value": 5.0}, {"macs": 3e8, "value": 2.0}])
    b = frame_of([{"macs": 4e8, "value": 1.0}])
    assert dash.reference_point([a, b], "proxy_synflow", None) == (pytest.approx(4.4e8), 1.0)
    assert dash.reference_point([a], "accuracy", 5e8) == (5e8, 0.0)


# ---------------------------------------------------------------------------- EDFs
def test_edf():
    curve = dash.edf([0.3, 0.1, math.nan, 0.2, 0.2])
    assert list(curve["value"]) == [0.1, 0.2, 0.2, 0.3]
    assert list(curve["fraction"]) == [0.25, 0.5, 0.75, 1.0]
    assert dash.edf([]).empty


def test_group_values_few_values_many_numbers_many_labels():
    few = pd.Series([2, 4, 2, None, 4])
    grouped = dash.group_values(few)
    assert list(grouped.fillna("-")) == ["2", "4", "2", "-", "4"]
    many = pd.Series(list(range(1, 13)))
    groups = dash.group_values(many, max_groups=3)
    assert list(groups.unique()) == ["1-4", "5-8", "9-12"]  # contiguous bins of equal counts
    floats = pd.Series([1.0, 2.0, 3.0, 4.0, 6.0])
    assert dash.group_values(floats, max_groups=4).nunique() <= 4
    labels = pd.Series(list("aaabbbccdde"))
    grouped = dash.group_values(labels, max_groups=3)
    assert set(grouped) == {"a", "b", "other"}


def test_edf_by_layout_and_dimension():
    rows = [{"layout": "C-T", "value": v, "macs": 1e8, "dim:depth": d} for v, d in ((0.5, 1), (0.7, 2), (0.6, 3))]
    rows += [{"layout": "C-C", "value": v, "macs": 1e8, "dim:depth": d} for v, d in ((0.2, 1), (0.3, 2))]
    rows += [{"layout": "T-T", "value": math.nan, "status": "over budget", "macs": 1e9, "dim:depth": 9}]
    frame = frame_of(rows)
    curves = dash.edf_by(frame, "layout")
    assert set(curves["group"]) == {"C-T", "C-C"}  # the over-budget layout has no scores
    ct = curves[curves["group"] == "C-T"]
    assert list(ct["value"]) == [0.5, 0.6, 0.7] and list(ct["fraction"]) == pytest.approx([1 / 3, 2 / 3, 1])
    assert set(ct["n"]) == {3}
    depth = dash.edf_by(frame, "dim:depth")
    assert list(depth["group"].unique()) == ["1", "2", "3"]  # numbers ascending
    assert dash.searched_dimensions(frame) == ["dim:depth"]


# ---------------------------------------------------------------------------- importances
def _toy_study(n: int, seed: int = 0):
    """x decides the score, y is noise; every trial feasible, each its own architecture."""
    study = optuna.create_study(directions=["maximize", "minimize"])
    rng = random.Random(seed)
    dist = {"x": optuna.distributions.IntDistribution(0, 10), "y": optuna.distributions.IntDistribution(0, 10)}
    for i in range(n):
        x, y = rng.randint(0, 10), rng.randint(0, 10)
        study.add_trial(optuna.trial.create_trial(
            params={"x": x, "y": y}, distributions=dist, values=[x / 10 + rng.random() * 0.01, 1e8],
            user_attrs={"feasible": True, "arch_id": f"a{i}"}))
    return study


def test_importances_find_the_deciding_dimension():
    series, note = dash.param_importances(_toy_study(60))
    assert list(series.index)[0] == "x" and series["x"] > series["y"]
    assert "60" in note


def test_importances_fall_back_with_too_few_trials():
    series, note = dash.param_importances(_toy_study(3))
    assert series.empty and "at least" in note and "3" in note
    series, note = dash.param_importances(optuna.create_study(directions=["maximize", "minimize"]))
    assert series.empty


def test_importances_ignore_infeasible_and_duplicate_trials():
    study = _toy_study(3)
    for t in list(study.trials):  # copies of one architecture, and over-budget placeholders, do not count
        study.add_trial(optuna.trial.create_trial(params=t.params, distributions=t.distributions,
                                                  values=t.values, user_attrs=t.user_attrs))
        study.add_trial(optuna.trial.create_trial(params=t.params, distributions=t.distributions, values=[0.0, 9e9],
                                                  user_attrs={"feasible": False, "arch_id": "big"}))
    series, note = dash.param_importances(study)
    assert series.empty and "has 3" in note


# ---------------------------------------------------------------------------- published architectures
def test_reference_archs_placed_by_what_is_known():
    frame = frame_of([{"macs": 1.0, "value": 0.42, "preset": "poolformer_s12",
                       "arch_id": nas.get_arch("poolformer_s12").arch_id}])
    refs = dash.reference_archs("metaformer", frame)
    assert list(refs["name"]) == [n for n in nas.list_archs() if n.startswith("poolformer_")]
    s12 = refs.set_index("name").loc["poolformer_s12"]
    cost = nas.analytic_cost(nas.get_arch("poolformer_s12"))
    assert (s12["macs"], s12["params"]) == (cost.macs, cost.params)
    assert s12["value"] == 0.42 and s12["trial"] == 0 and s12["published_top1"] == 77.2
    assert refs.set_index("name").loc["poolformer_s24"]["value"] != refs.set_index("name").loc["poolformer_s24"]["value"]
    assert dash.reference_archs("no-such-space", frame).empty


# ---------------------------------------------------------------------------- a real study
BUDGET = 250_000_000


def small_study(storage: str, name: str, sampler: str = "tpe", trials: int = 7):
    """An instant-proxy search (params) of the Mobile-Former space under 250M MACs: seeded with the
    five published variants that fit, then sampled; real trials in seconds."""
    settings = SearchSettings(space="mobileformer", macs_budget=BUDGET, trials=trials, proxy="params",
                              workers=0, storage=storage, study_name=name, sampler=sampler, seed=3, presets=5)
    return Search(settings).run()


@pytest.fixture(scope="module")
def real_studies(tmp_path_factory):
    """(storage URL, the study "tpe", its random-sampling twin "random")."""
    storage = f"sqlite:///{tmp_path_factory.mktemp('studies')}/d.db"
    return storage, small_study(storage, "tpe"), small_study(storage, "random", sampler="random", trials=6)


def test_study_frame_of_a_real_search(real_studies):
    storage, study, _ = real_studies
    frame = dash.study_frame(study)
    assert set(frame["status"]) <= set(dash.STATUSES)
    done = dash.evaluated(frame)
    assert len(done) >= 5  # a duplicate may reuse a result
    over = frame[frame["status"] == "over budget"]
    assert over["value"].isna().all() and (over["macs"] > BUDGET).all()  # placeholders are not scores
    assert frame.filter(like="dim:stages.0.depth").shape[1] == 1
    refs = dash.reference_archs("mobileformer", frame).set_index("name")
    seeded = [n for n in refs.index if refs.loc[n, "macs"] <= BUDGET]
    assert len(seeded) == 5 and refs.loc[seeded, "value"].notna().all()  # evaluated: placed at their score
    assert refs.loc["mobileformer_508m", "value"] != refs.loc["mobileformer_508m", "value"]  # over budget: unknown
    page = dash.build_dashboard(study)
    assert "<script src" not in page and "<link" not in page  # nothing fetched from the network
    assert page.count('class="plotly-graph-div"') >= 4


# ---------------------------------------------------------------------------- in a browser
def chromium_binary() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


class Chromium:
    """Headless Chromium driven by the DevTools protocol over ``--remote-debugging-pipe``: JSON
    messages ended by a NUL byte, written to the browser's fd 3 and read from its fd 4."""

    def __init__(self, binary: str, profile: Path):
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def wire_fds() -> None:  # in the child: the pipe ends at the fds Chromium expects
            os.dup2(to_browser_r, 3)
            os.dup2(from_browser_w, 4)

        self.proc = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
             f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"],
            pass_fds=(3, 4, to_browser_r, from_browser_w), preexec_fn=wire_fds,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._ids = itertools.count(1)
        self.events: list[dict] = []

    def call(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 60) -> dict:
        msg_id = next(self._ids)
        msg = {"id": msg_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_browser, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._next(deadline)
            if reply.get("id") == msg_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def wait_event(self, method: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        for e in self.events:
            if e.get("method") == method:
                return e
        while True:
            e = self._next(deadline)
            self.events.append(e)
            if e.get("method") == method:
                return e

    def _next(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_browser], [], [], left)[0]:
                raise TimeoutError("no answer from Chromium")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise EOFError("Chromium closed the pipe")
            self._buffer += chunk
        msg, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(msg)

    def open(self, url: str, width: int = 1400, height: int = 1000) -> str:
        """Navigate a fresh page to ``url`` with console, log and network events on; returns the session."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Network", "Page"):
            self.call(f"{domain}.enable", session=session)
        self.call("Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1,
                                                         "mobile": False}, session=session)
        self.call("Page.navigate", {"url": url}, session=session)
        self.wait_event("Page.loadEventFired", timeout=120)
        return session

    def evaluate(self, session: str, expression: str):
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True}, session=session)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def screenshot(self, session: str, path: Path, width: int = 1400, height: int | None = None) -> None:
        self.call("Emulation.setScrollbarsHidden", {"hidden": True}, session=session)
        full = self.evaluate(session, "document.documentElement.scrollHeight")
        height = min(height or full, full)
        self.call("Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1,
                                                         "mobile": False}, session=session)
        time.sleep(1.0)  # let plotly's responsive relayout settle
        data = self.call("Page.captureScreenshot", {"format": "png", "clip": {
            "x": 0, "y": 0, "width": width, "height": height, "scale": 1}}, session=session)["data"]
        path.write_bytes(base64.b64decode(data))

    def problems(self) -> list[str]:
        """Console errors, uncaught exceptions, error log entries and requests leaving the machine."""
        found = []
        for e in self.events:
            method, p = e.get("method"), e.get("params", {})
            if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                found.append("console: " + " ".join(str(a.get("value", a.get("description"))) for a in p["args"]))
            elif method == "Runtime.exceptionThrown":
                d = p["exceptionDetails"]
                found.append(f"exception: {d.get('exception', {}).get('description') or d.get('text')}")
            elif method == "Log.entryAdded" and p["entry"]["level"] == "error":
                found.append(f"log: {p['entry']['text']}")
            elif method == "Network.requestWillBeSent" and not re.match(r"(file|data|about|blob):",
                                                                        p["request"]["url"]):
                found.append(f"network: {p['request']['url']}")
        return found

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=10)
        except (OSError, EOFError, TimeoutError, RuntimeError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)


RENDERED = """(async () => {
  const deadline = Date.now() + 60000;
  const plots = () => Array.from(document.querySelectorAll("div.plotly-graph-div"));
  while (Date.now() < deadline) {
    if (plots().length && plots().every(p => p.querySelector("svg.main-svg"))) break;
    await new Promise(r => setTimeout(r, 200));
  }
  return {plots: plots().length,
          drawn: plots().filter(p => p.querySelector("svg.main-svg")).length,
          points: document.querySelectorAll("div.plotly-graph-div .scatterlayer path.point").length,
          lines: document.querySelectorAll("div.plotly-graph-div .scatterlayer path.js-line").length,
          rows: document.querySelectorAll("table.sortable tbody tr").length};
})()"""

SORT_BY_TRIAL_DESC = """(() => {
  const th = document.querySelector("table.sortable th");
  th.click(); th.click();
  return Array.from(document.querySelectorAll("table.sortable tbody tr")).map(r => Number(r.cells[0].getAttribute("data-v")));
})()"""


def test_dashboard_renders_in_headless_chromium(tmp_path, real_studies):
    binary = chromium_binary()
    if binary is None:
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run does)")
    storage, study, _ = real_studies
    out = tmp_path / "page" / "dash.html"
    r = subprocess.run([sys.executable, "-m", "nas_cli", "dashboard", "tpe", "--storage", storage,
                        "--compare", "random", "-o", str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert out.exists() and "self-contained" in r.stdout
    page = out.read_text()
    assert "<script src" not in page and "<link" not in page and "plotly.js v" in page
    browser = Chromium(binary, tmp_path / "profile")
    try:
        session = browser.open(out.resolve().as_uri())
        seen = browser.evaluate(session, RENDERED)
        expected = page.count('class="plotly-graph-div"')
        assert seen["plots"] == expected >= 6  # 2 fronts, hypervolume, >= 2 EDFs, importances
        assert seen["drawn"] == seen["plots"], seen  # plotly created its SVG in every figure
        assert seen["points"] >= 8 and seen["lines"] >= 3, seen
        trials = {t.number for t in study.trials}
        assert seen["rows"] == len(trials)
        numbers = browser.evaluate(session, SORT_BY_TRIAL_DESC)
        assert numbers == sorted(trials, reverse=True)  # the table sorts on click
        if os.environ.get("NAS_DASHBOARD_SCREENSHOT"):
            browser.screenshot(session, Path(os.environ["NAS_DASHBOARD_SCREENSHOT"]))
        assert browser.problems() == []
    finally:
        browser.close()
