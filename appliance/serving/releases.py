"""Releases: canary, shadow and A/B beside blue/green, with promotion and rollback by
hand or by an automatic policy.

A release loads a candidate version into the deployment's idle slot and routes to it:

- canary: ``percent`` of the traffic goes to the candidate, sticky by a request key
  (the ``X-Falaj-Key`` header, else the entity id): a key takes the candidate when a
  stable hash of it, mod 10000, is under ``percent * 100``, so a key always gets the
  same variant and raising the share only moves keys from the baseline to the
  candidate. A request with no key is routed by a random draw.
- shadow: the live slot answers every request; a copy goes to the candidate through a
  bounded queue (a full queue drops the copy and counts it, never slowing the live
  path), and the candidate's answers are logged with ``served=False``, never returned.
- A/B: as canary, a fixed split, with a report per variant.

Commit point of a start, promote or rollback: its audit event, in the same control.db
transaction as the release row and the deployment row; this process's slots switch
after it, others on their next request (``ModelServer.refresh``). Promote makes the
candidate's slot live (the old version stays in the other slot for ``falaj rollback``);
rollback stops the candidate's traffic and puts back what the idle slot held before.

Each process counts, per release and variant, requests, failed predictions (a model
that raises, an unavailable slot), a latency histogram and the outputs' sum; the
counts are added to the release's stored stats at each ``evaluate`` (and when it ends),
so a restart loses at most what was counted since.
"""

from __future__ import annotations

import bisect
import hashlib
import logging
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from appliance.auth import Actor, require
from appliance.durations import format_duration, parse_duration
from appliance.errors import BadInput, CheckFailed, FalajError, NotFound, Unavailable
from appliance.serving.routing import Route
from appliance.serving.slots import Deployment, Release, Slot, other
from appliance.stores.releases import merge_stats
from appliance.training.gates import failed_gates

log = logging.getLogger("falaj.releases")

STRATEGIES = ("canary", "shadow", "ab")
DEFAULT_PERCENT = {"canary": 10.0, "ab": 50.0, "shadow": 100.0}
BUCKETS = 10_000  # sticky routing: hash mod 10000 < percent * 100
SHADOW_QUEUE = 1000  # copies waiting for the candidate; past that they are dropped
JUDGE_MIN_REQUESTS = 20  # an automatic rollback needs this many candidate requests at least
# Monitoring evidence reads every decision of the release: about 1.3 s of CPU at 1M of
# them. A status (the page, the API, the CLI) shows the last evidence while it is younger
# than EVIDENCE_REUSE times what it cost, and EVIDENCE_MAX_AGE_S at most, so asking
# often spends at most ~5% of a core on it; an evaluation, which decides on it, always
# computes it afresh.
EVIDENCE_REUSE = 20.0
EVIDENCE_MAX_AGE_S = 30.0
# latency histogram: bucket i holds latencies up to LAT_LO * LAT_STEP**i ms (~4% wide)
LAT_LO, LAT_STEP, LAT_N = 0.01, 1.04, 400
LAT_BOUNDS = LAT_LO * LAT_STEP ** np.arange(LAT_N)
_LAT_BOUNDS = LAT_BOUNDS.tolist()  # bisect on a list: no NumPy call per request


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def sticky_bucket(model: str, key: str) -> int:
    """A stable bucket in [0, 10000) for a request key (the same in every process)."""
    digest = hashlib.blake2b(f"{model}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def takes_candidate(model: str, percent: float, key: str | None) -> bool:
    if key is None:
        return random.random() * 100 < percent  # noqa: S311 -- routing, not secrets
    return sticky_bucket(model, key) < percent * 100


def record_key(records: Any, column: str | None) -> str | None:
    """The sticky key of a records request: the first record's entity column."""
    if column is None or not isinstance(records, list) or not records:
        return None
    first = records[0]
    if not isinstance(first, dict) or first.get(column) is None:
        return None
    return str(first[column])


def entity_key(entities: Any) -> str | None:
    """The sticky key of an entities request: the first entity's key values."""
    if not isinstance(entities, list) or not entities or not isinstance(entities[0], dict):
        return None
    values = [str(v) for v in entities[0].values() if v is not None]
    return "|".join(values) or None


# -- counters --------------------------------------------------------------------


def _empty() -> dict[str, Any]:
    return {"requests": 0, "errors": 0, "dropped": 0, "output_sum": 0.0, "output_n": 0,
            "latency": [0] * LAT_N}  # fmt: skip


class Counters:
    """This process's counts per release and variant since they were last stored."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._delta: dict[int, dict[str, dict[str, Any]]] = {}

    def _slot(self, release_id: int, variant: str) -> dict[str, Any]:
        variants = self._delta.setdefault(release_id, {})
        c = variants.get(variant)  # not setdefault(variant, _empty()): a 400-list a request
        if c is None:
            c = variants[variant] = _empty()
        return c

    def answered(self, release_id: int, variant: str, latency_ms: float, outputs: list) -> None:
        i = min(bisect.bisect_left(_LAT_BOUNDS, latency_ms), LAT_N - 1)  # as np.searchsorted
        total = float(sum(outputs)) if outputs else 0.0
        with self._lock:
            c = self._slot(release_id, variant)
            c["requests"] += 1
            c["latency"][i] += 1
            c["output_sum"] += total
            c["output_n"] += len(outputs)

    def failed(self, release_id: int, variant: str) -> None:
        with self._lock:
            c = self._slot(release_id, variant)
            c["requests"] += 1
            c["errors"] += 1

    def dropped(self, release_id: int, variant: str = "candidate") -> None:
        with self._lock:
            self._slot(release_id, variant)["dropped"] += 1

    def peek(self, release_id: int) -> dict[str, Any]:
        with self._lock:
            return merge_stats({}, self._delta.get(release_id, {}))

    def take(self, release_id: int) -> dict[str, Any]:
        with self._lock:
            return self._delta.pop(release_id, {})

    def held(self) -> list[int]:
        """The releases with counts not stored yet."""
        with self._lock:
            return list(self._delta)

    def give_back(self, release_id: int, delta: dict[str, Any]) -> None:
        """Counts taken for a write that failed go back, to be stored next time."""
        with self._lock:
            merge_stats(self._delta.setdefault(release_id, {}), delta)


def summary(c: dict[str, Any] | None) -> dict[str, Any]:
    """One variant's report from its counters."""
    c = c or _empty()
    requests, errors = int(c.get("requests", 0)), int(c.get("errors", 0))
    hist = np.asarray(c.get("latency") or [0] * LAT_N, dtype=np.int64)
    answered = int(hist.sum())

    def quantile(q: float) -> float | None:
        if answered == 0:
            return None
        i = int(np.searchsorted(np.cumsum(hist), q * answered))
        return round(float(LAT_BOUNDS[min(i, LAT_N - 1)]), 3)

    n = int(c.get("output_n", 0))
    return {
        "requests": requests,
        "errors": errors,
        "error_rate": errors / requests if requests else None,
        "p50_ms": quantile(0.5),
        "p99_ms": quantile(0.99),
        "mean_output": c.get("output_sum", 0.0) / n if n else None,
        "dropped": int(c.get("dropped", 0)),
    }


# -- the automatic policy --------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    """When an automatic release promotes itself, and when it rolls itself back."""

    min_requests: int | None = None
    after_s: float | None = None
    max_error_rate: float | None = None
    max_p99_ms: float | None = None
    max_psi: float | None = None
    min_metric_delta: float | None = None

    @classmethod
    def parse(cls, raw: dict[str, Any], where: str = "policy") -> Policy:
        """A policy from user input: numbers checked, names in errors."""
        if not isinstance(raw, dict):
            raise BadInput(f'{where}: expected an object like {{"min_requests": 500}}')
        known = {f for f in cls.__dataclass_fields__} | {"after"}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise BadInput(
                f"{where}: unknown field {unknown[0]!r} (known: {', '.join(sorted(known))})"
            )
        values: dict[str, Any] = {}
        for f in ("min_requests", "max_error_rate", "max_p99_ms", "max_psi", "min_metric_delta"):
            v = raw.get(f)
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, int | float) or not np.isfinite(v):
                raise BadInput(f"{where}.{f}: expected a number, got {v!r}")
            if f == "min_requests" and (v < 1 or v != int(v)):
                raise BadInput(f"{where}.{f}: expected a whole number of requests >= 1, got {v!r}")
            if f == "max_error_rate" and not 0 <= v <= 1:
                raise BadInput(f"{where}.{f}: expected a rate between 0 and 1, got {v!r}")
            if f in ("max_p99_ms", "max_psi") and v <= 0:
                raise BadInput(f"{where}.{f}: expected a number above 0, got {v!r}")
            values[f] = int(v) if f == "min_requests" else float(v)
        after = raw.get("after", raw.get("after_s"))
        if after is not None:
            values["after_s"] = parse_duration(after, f"{where}.after").total_seconds()
        policy = cls(**values)
        if policy.min_requests is None and policy.after_s is None:
            raise BadInput(f"{where}: an automatic release needs min_requests and/or after "
                           "(the evidence to wait for before it promotes)")  # fmt: skip
        return policy

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if v is not None}
        if self.after_s is not None:
            from datetime import timedelta

            d["after"] = format_duration(timedelta(seconds=self.after_s))
        return d


def _variant_evidence(evidence: dict[str, Any] | None, variant: str) -> dict[str, Any]:
    """The monitoring evidence of one variant, however it is nested."""
    if not isinstance(evidence, dict):
        return {}
    inner = evidence.get("variants", evidence)
    got = inner.get(variant) if isinstance(inner, dict) else None
    return got if isinstance(got, dict) else {}


def _psi(v: dict[str, Any]) -> float | None:
    for holder in (v, v.get("drift") if isinstance(v.get("drift"), dict) else {}):
        for k in ("max_psi", "psi"):
            if isinstance(holder.get(k), int | float) and not isinstance(holder.get(k), bool):
                return float(holder[k])
    return None


def _metric(v: dict[str, Any]) -> float | None:
    for k in ("metric", "live_metric"):
        m = v.get(k)
        if isinstance(m, dict):  # monitoring's {"auc": ..., "labelled": n}
            m = m.get("value", m.get("auc"))
        if isinstance(m, int | float) and not isinstance(m, bool):
            return float(m)
    return None


def judge(policy: Policy, report: dict[str, Any], elapsed_s: float,
          evidence: dict[str, Any] | None) -> tuple[str, list[str]]:  # fmt: skip
    """``promote``, ``rollback`` or ``wait``, with the reasons."""
    cand, base = report["candidate"], report["baseline"]
    broken, notes = [], []
    rate, p99 = cand["error_rate"], cand["p99_ms"]
    if policy.max_error_rate is not None and rate is not None and rate > policy.max_error_rate:
        broken.append(f"error rate {cand['error_rate']:.4f} > {policy.max_error_rate}")
    if policy.max_p99_ms is not None and p99 is not None and p99 > policy.max_p99_ms:
        broken.append(f"p99 {cand['p99_ms']} ms > {policy.max_p99_ms} ms")
    if policy.max_psi is not None:
        psi = _psi(_variant_evidence(evidence, "candidate"))
        if psi is None:
            notes.append("max_psi not judged: no drift evidence")
        elif psi > policy.max_psi:
            broken.append(f"PSI {psi:.4f} > {policy.max_psi}")
    if policy.min_metric_delta is not None:
        c = _metric(_variant_evidence(evidence, "candidate"))
        b = _metric(_variant_evidence(evidence, "baseline"))
        if c is None or b is None:
            notes.append("min_metric_delta not judged: no live metric (no labels yet)")
        elif c - b < policy.min_metric_delta:
            broken.append(f"live metric delta {c - b:+.4f} < {policy.min_metric_delta:+}")
    judged = cand["requests"] >= min(policy.min_requests or JUDGE_MIN_REQUESTS, JUDGE_MIN_REQUESTS)
    if broken and judged:
        return "rollback", broken + notes
    waiting = []
    if policy.min_requests is not None and cand["requests"] < policy.min_requests:
        waiting.append(f"{cand['requests']} of {policy.min_requests} candidate requests")
    if policy.after_s is not None and elapsed_s < policy.after_s:
        waiting.append(f"{elapsed_s:.0f} s of {policy.after_s:.0f} s")
    if broken:  # broken, but too few requests to judge yet
        waiting.append(f"{cand['requests']} of {JUDGE_MIN_REQUESTS} requests to judge: "
                       + "; ".join(broken))  # fmt: skip
    if waiting:
        return "wait", waiting + notes
    return "promote", [f"candidate within thresholds over {cand['requests']} requests "
                       f"(baseline {base['requests']})"] + notes  # fmt: skip


# -- routing (called by Serving.predict) ------------------------------------------


class Router:
    """Sends a request to the baseline or the candidate of an active release, counts
    each variant, and mirrors shadow copies through a bounded queue."""

    def __init__(self, answer: Callable[..., dict[str, Any]]) -> None:
        self._answer = answer  # Serving._answer(name, route, model, X, t0, actor, where)
        self.counters = Counters()
        self._queue: queue.Queue = queue.Queue(maxsize=SHADOW_QUEUE)
        self._worker: threading.Thread | None = None
        self._worker_lock = threading.Lock()

    def _model(self, d: Deployment, slot: str):
        s = d.slots.get(slot, Slot())
        if s.model is None:
            raise Unavailable(f"model {d.name!r}: the {slot} slot is out of service: "
                              f"{s.error or 'its bundle is not loaded'}")  # fmt: skip
        return s.model

    def _run(self, d: Deployment, r: Release, variant: str, key: str | None,
             build: Callable[[Any], tuple], actor: Actor, where: str,
             served: bool = True) -> dict[str, Any]:  # fmt: skip
        slot = r.candidate_slot if variant == "candidate" else r.baseline_slot
        model = self._model(d, slot)
        t0 = time.perf_counter()
        X, inputs = build(model)  # the model's matrix and the records' monitor vectors
        out = self._answer(d.name, Route(slot, variant, r.id, served, key), model, X, t0,
                           actor, where, inputs=inputs)  # fmt: skip
        self.counters.answered(r.id, variant, (time.perf_counter() - t0) * 1e3,
                               out["predictions"])  # fmt: skip
        return out

    def answer(self, d: Deployment, key: str | None, build: Callable[[Any], tuple],
               actor: Actor, where: str) -> dict[str, Any]:  # fmt: skip
        r = d.release
        assert r is not None
        if r.strategy == "shadow":
            out = self._baseline(d, r, key, build, actor, where)
            if takes_candidate(d.name, r.percent, key):
                self._mirror((d, r, key, build, actor, where))
            return out
        if not takes_candidate(d.name, r.percent, key):
            return self._baseline(d, r, key, build, actor, where)
        try:
            return self._run(d, r, "candidate", key, build, actor, where)
        except Exception as exc:  # the candidate failed: the baseline answers instead
            failure = exc
        try:
            out = self._run(d, r, "baseline", key, build, actor, where)
        except BadInput:
            raise  # the input was bad for both: the caller's mistake, not the candidate's
        except Exception:
            self.counters.failed(r.id, "baseline")
            self.counters.failed(r.id, "candidate")
            raise
        self.counters.failed(r.id, "candidate")
        log.warning("release %d of %s: candidate v%d failed (%s); the baseline answered",
                    r.id, d.name, r.candidate_version, failure)  # fmt: skip
        return out

    def _baseline(self, d, r, key, build, actor, where) -> dict[str, Any]:
        try:
            return self._run(d, r, "baseline", key, build, actor, where)
        except BadInput:
            raise
        except Exception:
            self.counters.failed(r.id, "baseline")
            raise

    # -- shadow copies

    def _mirror(self, item: tuple) -> None:
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.counters.dropped(item[1].id)
            return
        if self._worker is None:
            with self._worker_lock:
                if self._worker is None:
                    self._worker = threading.Thread(target=self._drain, name="falaj-shadow",
                                                    daemon=True)  # fmt: skip
                    self._worker.start()

    def _drain(self) -> None:
        while True:
            d, r, key, build, actor, where = self._queue.get()
            try:
                self._run(d, r, "candidate", key, build, actor, where, served=False)
            except Exception as exc:  # the live answer went out: count the copy's failure
                self.counters.failed(r.id, "candidate")
                log.debug("shadow copy for %s failed: %s", d.name, exc)
            finally:
                self._queue.task_done()

    def wait_shadow(self, timeout: float = 10.0) -> None:
        """Wait until the queued shadow copies are answered (tests, benchmarks)."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)


# -- the service -------------------------------------------------------------------


class Releases:
    """Start, promote, roll back and report releases; evaluate automatic ones."""

    def __init__(self, control, registry, serving,
                 evidence: Callable[[], Callable[..., dict] | None] | None = None) -> None:  # fmt: skip
        self.control = control
        self.registry = registry
        self.serving = serving
        self._evidence = evidence or (lambda: None)
        # release id -> (when, what it cost, evidence): the last evidence computed
        self._computed: dict[int, tuple[float, float, dict[str, Any]]] = {}

    @property
    def router(self) -> Router:
        return self.serving.router

    # -- start

    def start(self, name: str, version: int, strategy: str, actor: Actor,
              percent: float | None = None, policy: dict[str, Any] | None = None,
              force: bool = False) -> dict[str, Any]:  # fmt: skip
        """Load ``version`` into the idle slot and route a share of traffic to it."""
        require(actor, "release.manage", model=name)
        if strategy not in STRATEGIES:
            raise BadInput(f"strategy: {strategy!r} is not one of {', '.join(STRATEGIES)}")
        if percent is None:
            percent = DEFAULT_PERCENT[strategy]
        if isinstance(percent, bool) or not isinstance(percent, int | float):
            raise BadInput(f"percent: expected a number from 0 to 100, got {percent!r}")
        if not 0 <= percent <= 100:
            raise BadInput(f"percent: {percent:g} is outside 0-100")
        parsed = Policy.parse(policy) if policy is not None else None
        row = self.registry.version(name, version, actor)  # UnknownModel: 404
        failed = failed_gates(row["metrics"]["gates"])
        if failed and not force:
            raise CheckFailed(f"model {name}@{version} was rejected by its gates "
                              f"({', '.join(failed)}); use --force to release it anyway")  # fmt: skip
        current = self.control.deployment(name)
        if current is None:
            raise NotFound(f"model {name!r} is not deployed; a release needs a live version: "
                           f"`falaj deploy {name} --version N` first")  # fmt: skip
        self._no_active(name)
        live = current["live_slot"]
        if current[f"{live}_version"] == version:
            raise BadInput(f"version: {name}@{version} is the live version already; "
                           "release another version")  # fmt: skip
        model = self.serving._load_verified(name, version, actor)
        model.warm_up()
        entity = self.serving.key_column(name, model)
        slot = other(live)
        with self.control.transaction() as tx:
            if tx.deployment(name) != current:
                raise CheckFailed(f"model {name!r}: its deployment changed meanwhile; try again")
            if tx.active_release(name) is not None:
                raise CheckFailed(f"model {name!r} has an active release already")
            versions = {s: current[f"{s}_version"] for s in ("blue", "green")} | {slot: version}
            tx.put_deployment(name, live, versions["blue"], versions["green"], actor)
            rid = tx.insert_release({
                "model": name, "strategy": strategy, "percent": float(percent),
                "baseline_slot": live, "baseline_version": current[f"{live}_version"],
                "candidate_slot": slot, "candidate_version": version,
                "replaced_version": current[f"{slot}_version"], "entity_column": entity,
                "policy": parsed.to_dict() if parsed else None, "status": "active",
                "started_at": now(), "started_by": str(actor),
            })  # fmt: skip
            details = {"release_id": rid, "strategy": strategy, "percent": float(percent),
                       "baseline_version": current[f"{live}_version"], "candidate_slot": slot,
                       "policy": parsed.to_dict() if parsed else None}  # fmt: skip
            if failed:
                details |= {"forced": True, "failed_gates": failed}
            tx.append_audit(actor, "release.start", f"{name}@{version}", details)
        release = Release(rid, strategy, float(percent), live, slot, current[f"{live}_version"],
                          version, entity)  # fmt: skip
        old = self.serving.server.loaded(name)
        slots = dict(old.slots) if old else {}
        slots[slot] = Slot(version, model)
        self.serving.server.install(Deployment(name, live, slots, release))
        return self.status(name, actor)

    def _no_active(self, name: str) -> None:
        for r in self.control.active_releases():
            if r["model"] == name:
                raise CheckFailed(
                    f"model {name!r} has an active {r['strategy']} release of version "
                    f"{r['candidate_version']} (release {r['id']}); promote or roll it back first"
                )

    # -- promote and rollback

    def _active(self, name: str, actor: Actor) -> dict[str, Any]:
        for r in self.control.active_releases():
            if r["model"] == name:
                return r
        if not self.control.model_versions(name):
            raise NotFound(f"model {name!r} is not registered")
        raise CheckFailed(f"model {name!r} has no active release; start one with "
                          f"`falaj release start {name} --version N --strategy canary`")  # fmt: skip

    def promote(self, name: str, actor: Actor) -> dict[str, Any]:
        """Make the candidate's slot live; the old live version stays in the other slot."""
        require(actor, "release.manage", model=name)
        return self._end(name, actor, "promoted", "release.promote", {})

    def rollback(self, name: str, actor: Actor) -> dict[str, Any]:
        """Stop the candidate's traffic; the idle slot gets back what it held before."""
        require(actor, "release.manage", model=name)
        return self._end(name, actor, "rolled_back", "release.rollback", {})

    def _end(self, name: str, actor: Actor, status: str, action: str,
             evidence: dict[str, Any], reason: str = "by hand") -> dict[str, Any]:  # fmt: skip
        r = self._active(name, actor)
        delta = self.router.counters.take(r["id"])
        try:
            with self.control.transaction() as tx:
                now_r, dep = tx.active_release(name), tx.deployment(name)
                if now_r is None or now_r["id"] != r["id"]:
                    raise CheckFailed(f"model {name!r}: its release changed meanwhile; try again")
                stats = tx.add_release_stats(r["id"], delta)
                versions = {s: dep[f"{s}_version"] for s in ("blue", "green")}
                if status == "promoted":
                    live = r["candidate_slot"]
                else:
                    live = r["baseline_slot"]
                    versions[r["candidate_slot"]] = r["replaced_version"]
                tx.put_deployment(name, live, versions["blue"], versions["green"], actor)
                tx.end_release(r["id"], status, now(), str(actor), reason)
                report = {v: summary(stats.get(v)) for v in ("baseline", "candidate")}
                tx.append_audit(actor, action, f"{name}@{r['candidate_version']}",
                                {"release_id": r["id"], "strategy": r["strategy"],
                                 "live_slot": live, "baseline_version": r["baseline_version"],
                                 "reason": reason, "report": report} | evidence)  # fmt: skip
        except BaseException:
            self.router.counters.give_back(r["id"], delta)
            raise
        self._computed.pop(r["id"], None)
        old = self.serving.server.loaded(name)
        slots = dict(old.slots) if old else {}
        if status == "rolled_back":
            kept = slots.get(r["candidate_slot"])
            if r["replaced_version"] is None:
                slots[r["candidate_slot"]] = Slot()
            elif kept is None or kept.version != r["replaced_version"]:
                slots[r["candidate_slot"]] = Slot(r["replaced_version"])  # loaded when needed
        self.serving.server.install(Deployment(name, live, slots, None))
        version = r["candidate_version"] if status == "promoted" else r["baseline_version"]
        return {"name": name, "release_id": r["id"], "status": status, "live_slot": live,
                "live_version": version, "report": report}  # fmt: skip

    # -- reports

    def _report(self, r: dict[str, Any]) -> dict[str, Any]:
        stats = merge_stats(merge_stats({}, r["stats"]), self.router.counters.peek(r["id"]))
        return {v: summary(stats.get(v)) for v in ("baseline", "candidate")}

    def _monitoring(self, r: dict[str, Any], actor: Actor,
                    reuse: bool = False) -> dict[str, Any] | None:  # fmt: skip
        """Monitoring's evidence per variant, with when it was computed (``as_of``); with
        ``reuse``, the last one while it is recent enough (EVIDENCE_REUSE)."""
        try:
            fn = self._evidence()  # opening monitoring may open features.duckdb
            if fn is None:
                return None
            last = self._computed.get(r["id"])
            if reuse and last is not None:
                when, cost, evidence = last
                if time.monotonic() - when <= min(EVIDENCE_REUSE * cost, EVIDENCE_MAX_AGE_S):
                    require(actor, "monitor.read")  # what computing it requires
                    return evidence
            when, at = time.monotonic(), datetime.now(UTC)
            evidence = fn(r["model"], r["id"], actor) | {
                "as_of": at.isoformat(timespec="seconds").replace("+00:00", "Z")
            }
            self._computed[r["id"]] = (when, time.monotonic() - when, evidence)
            return evidence
        except FalajError as exc:
            return {"error": exc.message}
        except Exception as exc:  # monitoring's trouble must not stop a release decision
            log.warning("release evidence for %s failed: %s", r["model"], exc)
            return {"error": str(exc)}

    def _describe(self, r: dict[str, Any], actor: Actor, evidence: bool = True) -> dict[str, Any]:
        out = {k: r[k] for k in ("id", "model", "strategy", "percent", "status",
                                 "baseline_slot", "baseline_version", "candidate_slot",
                                 "candidate_version", "entity_column", "policy", "started_at",
                                 "started_by", "ended_at", "ended_by", "reason")}  # fmt: skip
        out["report"] = self._report(r)
        if evidence and r["status"] == "active":
            out["evidence"] = self._monitoring(r, actor, reuse=True)
        return out

    def status(self, name: str, actor: Actor) -> dict[str, Any]:
        """The deployment, its active release with a per-variant report, and past releases."""
        require(actor, "release.read", model=name)
        dep = self.control.deployment(name)
        if dep is None:
            if not self.control.model_versions(name):
                raise NotFound(f"model {name!r} is not registered")
            raise NotFound(f"model {name!r} is not deployed")
        rows = self.control.releases(name, limit=20)
        active = next((r for r in rows if r["status"] == "active"), None)
        for r in rows:  # ended, here or by another process: its evidence is of no more use
            if r["status"] != "active":
                self._computed.pop(r["id"], None)
        return {
            "name": name,
            "live_slot": dep["live_slot"],
            "live_version": dep[f"{dep['live_slot']}_version"],
            "slots": {s: dep[f"{s}_version"] for s in ("blue", "green")},
            "release": self._describe(active, actor) if active else None,
            "history": [self._describe(r, actor, evidence=False) for r in rows
                        if r["status"] != "active"],
        }  # fmt: skip

    def list(self, actor: Actor) -> list[dict[str, Any]]:
        """Every deployment with its live version and active release, if any."""
        require(actor, "release.read")
        active = {r["model"]: r for r in self.control.active_releases()}
        for ended in self._computed.keys() - {r["id"] for r in active.values()}:
            self._computed.pop(ended, None)
        out = []
        for d in self.control.deployments():
            r = active.get(d["name"])
            out.append({"name": d["name"], "live_slot": d["live_slot"],
                        "live_version": d[f"{d['live_slot']}_version"],
                        "release": self._describe(r, actor, evidence=False) if r else None})  # fmt: skip
        return out

    # -- automatic policy

    def flush(self, release_id: int) -> dict[str, Any]:
        """Add this process's counts to the release's stored stats; the totals."""
        delta = self.router.counters.take(release_id)
        try:
            with self.control.transaction() as tx:
                return tx.add_release_stats(release_id, delta)
        except BaseException:
            self.router.counters.give_back(release_id, delta)
            raise

    def flush_all(self) -> None:
        """Store every release's counts not stored yet: on close, so that a stop between
        two evaluations (``release_check_every``) loses none of them."""
        for release_id in self.router.counters.held():
            self.flush(release_id)

    def evaluate(self, actor: Actor, name: str | None = None) -> list[dict[str, Any]]:
        """Store every active release's counts; promote an automatic one whose evidence is
        in and within its thresholds, roll one back that broke a threshold, else wait."""
        require(actor, "release.manage")
        out = []
        active = [r for r in self.control.active_releases() if name in (None, r["model"])]
        if name is not None and not active:
            self._active(name, actor)  # the error: not registered, or no active release
        for r in active:
            r["stats"] = self.flush(r["id"])
            if not r["policy"]:
                out.append({"name": r["model"], "release_id": r["id"], "decision": "manual",
                            "reasons": ["no automatic policy"]})  # fmt: skip
                continue
            policy = Policy.parse(r["policy"])
            report = {v: summary(r["stats"].get(v)) for v in ("baseline", "candidate")}
            started = datetime.fromisoformat(r["started_at"])
            elapsed = (datetime.now(UTC) - started).total_seconds()
            monitoring = self._monitoring(r, actor)
            decision, reasons = judge(policy, report, elapsed, monitoring)
            evidence = {"policy": policy.to_dict(), "elapsed_s": round(elapsed, 1),
                        "reasons": reasons, "monitoring": monitoring}  # fmt: skip
            if decision == "promote":
                self._end(r["model"], actor, "promoted", "release.auto_promote", evidence,
                          reason="; ".join(reasons))  # fmt: skip
            elif decision == "rollback":
                self._end(r["model"], actor, "rolled_back", "release.auto_rollback", evidence,
                          reason="; ".join(reasons))  # fmt: skip
            out.append({"name": r["model"], "release_id": r["id"], "decision": decision,
                        "reasons": reasons, "report": report})  # fmt: skip
        return out
