"""Live metrics in the Prometheus text format (``GET /metrics``), one registry per
Appliance (never the process-global one: tests open many appliances in one process).

What it counts:

- ``falaj_requests_total{model,version,variant,status}`` and the latency histogram
  ``falaj_request_seconds{model,version,variant,status}`` of every scoring request
  (status ``ok``, ``client_error`` (4xx) or ``server_error`` (5xx); a request refused
  before a model version answered has version and variant ``""``);
- ``falaj_rows_scored_total{model,version,variant}``;
- ``falaj_decision_batches_total``, ``falaj_decision_rows_total`` and
  ``falaj_decision_batch_seconds`` (the decision log's commits and how long each took);
- ``falaj_drift{model,feature,measure}``, set by monitoring (``set_drift``);
- ``falaj_alerts_open{model}``, set by monitoring (``set_alerts_open``);
- ``falaj_job_state{job,state}``: 1 for a job's current state, 0 for the states it
  left, set by the scheduler (``set_job_state``).

Recording a request costs a dict lookup and two increments: the label children are
cached, since ``labels()`` validates and locks on every call.
"""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE", "STATUSES", "Metrics"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
STATUSES = ("ok", "client_error", "server_error")
# Request latency buckets, seconds: a one-row prediction takes about a millisecond.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 10.0)  # fmt: skip
BATCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def status_of(http_status: int) -> str:
    """The ``status`` label of an HTTP status code."""
    if http_status < 400:
        return "ok"
    return "client_error" if http_status < 500 else "server_error"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        self.requests = Counter("falaj_requests", "Scoring requests answered, by outcome.",
                                ("model", "version", "variant", "status"), registry=r)  # fmt: skip
        self.latency = Histogram("falaj_request_seconds",
                                 "Time to answer a scoring request, in the server.",
                                 ("model", "version", "variant", "status"),
                                 buckets=LATENCY_BUCKETS, registry=r)  # fmt: skip
        self.rows = Counter("falaj_rows_scored", "Records scored.",
                            ("model", "version", "variant"), registry=r)  # fmt: skip
        self.batches = Counter("falaj_decision_batches",
                               "Decision log batches committed (records and audit event).",
                               registry=r)  # fmt: skip
        self.batch_rows = Counter("falaj_decision_rows", "Decisions committed to the log.",
                                  registry=r)  # fmt: skip
        self.batch_seconds = Histogram("falaj_decision_batch_seconds",
                                       "Time to commit one decision log batch.",
                                       buckets=BATCH_BUCKETS, registry=r)  # fmt: skip
        self.drift = Gauge("falaj_drift", "Drift of live inputs against the training reference.",
                           ("model", "feature", "measure"), registry=r)  # fmt: skip
        self.alerts = Gauge("falaj_alerts_open", "Monitoring alerts open.", ("model",),
                            registry=r)  # fmt: skip
        self.jobs = Gauge("falaj_job_state", "1 for a scheduled job's current state, else 0.",
                          ("job", "state"), registry=r)  # fmt: skip
        self._children: dict[tuple, tuple] = {}
        self._lock = threading.Lock()
        self._job_states: dict[str, set[str]] = {}

    # -- the hot path ----------------------------------------------------------------

    def request(self, model: str, version: object, variant: str, status: str, seconds: float,
                rows: int = 0) -> None:  # fmt: skip
        """Count one scoring request, its latency and the rows it scored."""
        key = (model, version, variant, status)
        got = self._children.get(key)
        if got is None:
            labels = (model, "" if version is None else str(version), variant, status)
            got = (self.requests.labels(*labels), self.latency.labels(*labels),
                   self.rows.labels(*labels[:3]))  # fmt: skip
            self._children[key] = got
        got[0].inc()
        got[1].observe(seconds)
        if rows:
            got[2].inc(rows)

    def batch(self, rows: int, seconds: float) -> None:
        """Count one committed decision log batch."""
        self.batches.inc()
        self.batch_rows.inc(rows)
        self.batch_seconds.observe(seconds)

    # -- set by monitoring and the scheduler -------------------------------------------

    def set_drift(self, model: str, feature: str, measure: str, value: float) -> None:
        self.drift.labels(model, feature, measure).set(value)

    def set_alerts_open(self, model: str, count: int) -> None:
        self.alerts.labels(model).set(count)

    def set_job_state(self, job: str, state: str) -> None:
        """The job is now in ``state``: its gauge is 1 there and 0 in the states it left."""
        with self._lock:
            seen = self._job_states.setdefault(job, set())
            seen.add(state)
            for s in seen:
                self.jobs.labels(job, s).set(1.0 if s == state else 0.0)

    # -- exposition --------------------------------------------------------------------

    def text(self) -> bytes:
        """Everything, in the Prometheus text format."""
        return generate_latest(self.registry)
