"""The ``Appliance``: the one entry point. It reads the settings and the master key,
opens the stores when first needed (reconciling any change a crash left half done),
and hands each layer's service its dependencies. The CLI, the web UI and the scheduler
call those services; every one of them takes the acting principal (``actor``).

    app = Appliance.open({"home": "./var"})
    app.ingestion.ingest("loans.csv", "loans", "customer_id", "event_time", actor)
    app.training.train("loans", "default", "credit", actor)
    app.serving.deploy("credit", 1, actor)
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import pyarrow as pa

import kernels
from appliance import demo, keys, rekey, settings
from appliance.audit import AuditService
from appliance.auth import SYSTEM, Actor, require
from appliance.auth.service import AuthService
from appliance.compliance import residency
from appliance.compliance.consent import ConsentRegistry
from appliance.compliance.review import ReviewQueue
from appliance.compliance.shredding import Shredder
from appliance.compliance.subjects import SubjectRights
from appliance.errors import StoreDamaged, StoreError
from appliance.features import FeatureCatalog
from appliance.features.online import OnlineStore
from appliance.features.training_sets import TrainingSets
from appliance.features.views import WORKSPACE_FILE, FeatureViews
from appliance.ingest import IngestService
from appliance.ingest.quarantine import Quarantine
from appliance.monitoring import MonitoringService
from appliance.monitoring.metrics import Metrics
from appliance.ops import upgrade
from appliance.registry import Registry
from appliance.scheduler import SCHEDULER, Scheduler
from appliance.serving import Serving
from appliance.serving.decision_log import DecisionLog
from appliance.serving.releases import Releases
from appliance.stores import ControlStore, FeatureStore
from appliance.stores.control import FILENAME as CONTROL_FILE
from appliance.stores.features import FILENAME as FEATURES_FILE
from appliance.training import Runs, TrainingService

log = logging.getLogger("falaj")

DEMO_TABLE = "credit_applications"
DEMO_MODEL = "credit_risk"
DEMO_VIEW = "applicant"
DEMO_OUTCOMES = "credit_outcomes"


class Appliance:
    def __init__(self, config: dict[str, Any]) -> None:
        self.settings = config
        self.home = Path(config["home"])
        # Nothing the appliance writes is for other users: stores, bundles, keys, spills.
        os.umask(0o077)
        kernels.set_device(config["device"])
        # no outbound connection beyond loopback and the allowed LAN networks (residency)
        residency.install(config.get("allowed_networks") or residency.DEFAULT_NETWORKS)

    @classmethod
    def open(
        cls, overrides: dict[str, Any] | None = None, config_file: str | None = None
    ) -> Appliance:
        return cls(settings.load(overrides, config_file))

    # -- keys and stores -------------------------------------------------------

    @property
    def key_path(self) -> Path:
        return keys.key_source(self.home, self.settings["master_key_file"])

    @cached_property
    def master_key(self) -> bytes:
        rekey.recover(self.home, self.key_path)  # a key rotation a crash interrupted
        return keys.read_key(self.key_path)

    def store_key(self, filename: str) -> bytes:
        """The key of one store; a missing master key is reported against that store."""
        try:
            return keys.derive(self.master_key, filename)
        except keys.KeyMissing as exc:
            raise keys.KeyMissing(f"{filename}: cannot open: {exc.message}") from None

    @cached_property
    def control(self) -> ControlStore:
        store = ControlStore(self.home / CONTROL_FILE, self.store_key(CONTROL_FILE))
        self.__dict__["control"] = store
        upgrade.migrate(self, store, CONTROL_FILE)  # an upgrade backs the home up first
        self._audit_migrations(CONTROL_FILE, "home.migrate")
        self.registry  # noqa: B018 -- reconciles bundles whose registration never committed
        rekey.finish(self)  # a key rotation left with its checkpoint key to rotate
        return store

    @cached_property
    def features(self) -> FeatureStore:
        store = FeatureStore(self.home / FEATURES_FILE, self.store_key(FEATURES_FILE))
        self.__dict__["features"] = store
        upgrade.migrate(self, store, FEATURES_FILE)
        self._audit_migrations(FEATURES_FILE, "home.migrate")
        self._reconcile_features()
        return store

    def _unaudited_migrations(self, filename: str) -> list[str]:
        """Migrations a store recorded that no audit event names yet (a migration's
        commit point is its event; a crash between the two is completed, not undone)."""
        store = self.control if filename == CONTROL_FILE else self.features
        audited = {m for d in self.control.audit_details("home.init")
                   for m in d.get("migrations", {}).get(filename, [])}  # fmt: skip
        audited |= {m for e in self.control.audit_find("home.migrate", filename)
                    for m in e["details"]["migrations"]}  # fmt: skip
        return [m for m in store.migrations() if m not in audited]

    def _audit_migrations(self, filename: str, action: str) -> None:
        missing = self._unaudited_migrations(filename)
        if missing:
            with self.control.transaction() as tx:
                tx.append_audit(SYSTEM, action, filename, {"migrations": missing})

    def _reconcile_features(self) -> None:
        """Finish or undo what a crash left between the two stores' commits."""
        undone = self.ingestion.reconcile()
        settled = self.decision_log.reconcile()
        if undone or settled:
            log.warning("reconciled: %d ingest batches rolled back, %d decision batches "
                        "settled", len(undone), len(settled))  # fmt: skip

    # -- services, one per layer -------------------------------------------------

    @cached_property
    def ingestion(self) -> IngestService:
        service = IngestService(self.features, self.control)
        service.protect = self.shredder.protect  # personal columns sealed, consent honoured
        return service

    @cached_property
    def quarantine(self) -> Quarantine:
        return Quarantine(self.features, self.control)

    @cached_property
    def catalog(self) -> FeatureCatalog:
        return FeatureCatalog(self.features, self.control)

    @cached_property
    def views(self) -> FeatureViews:
        return FeatureViews(self.control, self.features)

    @cached_property
    def training_sets(self) -> TrainingSets:
        sets = TrainingSets(self.views, self.features, self.control)
        sets.withdrawn = self.consent.withdrawn  # spine rows without consent are left out
        return sets

    @cached_property
    def online(self) -> OnlineStore:
        return OnlineStore(self.views, self.features, self.control)

    @cached_property
    def registry(self) -> Registry:
        registry = Registry(self.control, self.home, keys.signing_key(self.master_key),
                            keys.derive(self.master_key, "bundle-encryption"))  # fmt: skip
        if registry.reconcile():
            log.warning("reconciled: removed bundles whose registration never committed")
        return registry

    @cached_property
    def training(self) -> TrainingService:
        return TrainingService(self.features, self.control, self.registry, self.settings,
                               self.training_sets)  # fmt: skip

    @cached_property
    def runs(self) -> Runs:
        return Runs(self.control)

    @cached_property
    def metrics(self) -> Metrics:
        return Metrics()

    @cached_property
    def decision_log(self) -> DecisionLog:
        return DecisionLog(self.features, self.control, mode=self.settings["decision_log"],
                           retention_days=self.settings["decision_retention_days"],
                           metrics=self.metrics)  # fmt: skip

    @cached_property
    def serving(self) -> Serving:
        # Deploys need only control.db: the feature store (and its decision log) opens
        # on the first prediction, so `falaj deploy` works beside a running `falaj run`.
        serving = Serving(self.control, lambda: self.features, self.registry,
                          lambda: self.decision_log, lambda: self.online)  # fmt: skip
        serving.consent = self.consent.guard  # no decisions about subjects who withdrew
        return serving

    @cached_property
    def releases(self) -> Releases:
        # monitoring's per-variant evidence, when that service exists
        evidence = lambda: getattr(getattr(self, "monitoring", None), "release_evidence", None)  # noqa: E731
        return Releases(self.control, self.registry, self.serving, evidence)

    @cached_property
    def monitoring(self) -> MonitoringService:
        return MonitoringService(self.control, lambda: self.features, self.registry,
                                 self.settings, lambda: getattr(self, "metrics", None))  # fmt: skip

    @cached_property
    def auth(self) -> AuthService:
        return AuthService(self.control, self.settings)

    @cached_property
    def audit(self) -> AuditService:
        return AuditService(self.control, self.home, lambda: self.master_key,
                            lambda: self.features, lambda: self.decision_log)  # fmt: skip

    # -- compliance ----------------------------------------------------------------

    @cached_property
    def consent(self) -> ConsentRegistry:
        return ConsentRegistry(self.control)

    @cached_property
    def shredder(self) -> Shredder:
        return Shredder(self.control, self.consent.withdrawn)

    @cached_property
    def subjects(self) -> SubjectRights:
        return SubjectRights(self)

    @cached_property
    def reviews(self) -> ReviewQueue:
        return ReviewQueue(self.control)

    def processing_record(self, actor: Actor) -> dict[str, Any]:
        from appliance.compliance.record import processing_record

        return processing_record(self, actor)

    @cached_property
    def scheduler(self) -> Scheduler:
        return Scheduler(self)  # its pipelines: app.scheduler.pipelines

    # -- the home ----------------------------------------------------------------

    def init(self, actor: Actor) -> dict[str, Any]:
        """Create the home, key and stores; a second run changes nothing."""
        require(actor, "home.init")
        control_path, features_path = self.home / CONTROL_FILE, self.home / FEATURES_FILE
        sizes = {p: p.stat().st_size for p in (control_path, features_path) if p.exists()}
        existing = [p.name for p, size in sizes.items() if size > 0]
        for p, size in sizes.items():
            if size == 0 and existing:  # a truncated store beside a real one: never re-create
                raise StoreDamaged(
                    f"{p.name}: damaged: {p} is empty (0 bytes); restore it from a backup"
                )
        if existing == [CONTROL_FILE] and self._unfinished_init(control_path):
            existing = []  # a first init killed before features.duckdb existed: finish it
        if len(existing) == 1:
            # Never create an empty store beside a populated one: that hides a lost file.
            missing = FEATURES_FILE if existing[0] == CONTROL_FILE else CONTROL_FILE
            raise StoreError(
                f"{missing}: missing from {self.home} although {existing[0]} exists; "
                "restore it from a backup (init only creates a complete new home)"
            )
        created_key = False
        if not self.key_path.exists():
            if existing:
                # Never make a new key for stores encrypted with the old one.
                raise keys.KeyMissing(
                    f"{existing[0]}: exists but its master key {self.key_path} is missing; "
                    "give the key with FALAJ_MASTER_KEY_FILE"
                )
            if self.key_path != keys.default_key_path(self.home):
                keys.read_key(self.key_path)  # names the missing external key file
            keys.create_key(self.key_path)
            created_key = True
        self.home.mkdir(parents=True, exist_ok=True)
        self.home.chmod(0o700)
        (self.home / "artifacts").mkdir(exist_ok=True)
        if "control" not in self.__dict__:
            self.__dict__["control"] = ControlStore(
                control_path, self.store_key(CONTROL_FILE), create=True
            )
        upgrade.migrate(self, self.control, CONTROL_FILE)
        self.registry  # noqa: B018 -- reconciles the artifacts
        if "features" not in self.__dict__:
            self.__dict__["features"] = FeatureStore(
                features_path, self.store_key(FEATURES_FILE), create=True
            )
        upgrade.migrate(self, self.features, FEATURES_FILE)
        applied = {f: self._unaudited_migrations(f) for f in (CONTROL_FILE, FEATURES_FILE)}
        self._reconcile_features()
        changed = created_key or any(applied.values())
        if changed:
            with self.control.transaction() as tx:
                tx.append_audit(actor, "home.init", str(self.home),
                                {"created_key": created_key, "migrations": applied})  # fmt: skip
        return {
            "home": str(self.home),
            "created_key": created_key,
            "migrations": applied,
            "changed": changed,
        }

    def _unfinished_init(self, control_path: Path) -> bool:
        if not self.key_path.exists():
            return False
        store = ControlStore(control_path, self.store_key(CONTROL_FILE))
        try:
            return store.unused()
        finally:
            store.close()

    def check(self, actor: Actor) -> dict[str, list[str]]:
        """Read every page of control.db and every block of features.duckdb, each
        against its HMAC, authentication tag or checksum; raise ``StoreDamaged`` naming
        the damaged store and where. control.db goes first: opening features.duckdb
        reconciles it against control.db, which must be sound to read."""
        require(actor, "home.check")
        problems: dict[str, list[str]] = {}
        for name in (CONTROL_FILE, FEATURES_FILE):
            store = self.control if name == CONTROL_FILE else self.features
            found = problems[name] = store.integrity_problems()
            if found:
                raise StoreDamaged.naming(name, found)
        return problems

    def load_demo(self, actor: Actor, say=lambda msg: None) -> dict[str, Any]:
        """Declare the demo workspace, ingest the synthetic credit-risk data (from memory:
        no plaintext copy is left on disk), materialize its view, build a point-in-time
        training set from the applications' labels, train on it and deploy the model."""
        workspace = self.home / WORKSPACE_FILE
        if not workspace.exists():
            workspace.write_text(demo.WORKSPACE)
        self.views.apply(workspace, actor)
        data = demo.credit_risk(self.settings["demo_rows"])
        r = self.ingestion.ingest(data, DEMO_TABLE, "customer_id", "event_time", actor,
                                  label="demo credit-risk data")  # fmt: skip
        say(f"ingested {r['rows']} rows into {DEMO_TABLE}")
        c = self.ingestion.ingest(
            demo.contacts(data), demo.CONTACTS, actor=actor, label="demo contacts"
        )
        say(
            f"ingested {c['rows']} contacts into {demo.CONTACTS} (personal: encrypted per customer)"
        )
        m = self.online.materialize(DEMO_VIEW, actor)
        say(f"materialized {m['view']} for {m['entities']} customers")
        # the label, and the sensitive attribute for the fairness gates, ride on the spine
        spine = data.select(["customer_id", "event_time", "default", "gender"]).rename_columns(
            ["customer_id", "event_timestamp", "default", "gender"]
        )
        # The set's file is plaintext: it lives only while training reads it. Its record
        # (fingerprint, views, as-of time) stays, and rebuilds it exactly.
        scratch = self.home / "tmp" / f"demo-set-{os.getpid()}.parquet"
        scratch.parent.mkdir(exist_ok=True)
        try:
            s = self.training_sets.build(spine, [f"{DEMO_VIEW}:*"], actor, out=scratch)
            say(f"built training set {s['id']} ({s['rows']} rows, point in time)")
            t = self.training.train_on_set(
                s["id"], "default", DEMO_MODEL, actor, sensitive="gender",
                intended_use="Ranks loan applications by their risk of default, for review "
                "by a credit officer. Not for automated refusals.",
            )  # fmt: skip
        finally:
            scratch.unlink(missing_ok=True)
        fair = t["metrics"]["fairness"]
        say(f"trained {DEMO_MODEL}@{t['version']} "
            f"(hold-out ROC AUC {t['metrics']['holdout']['roc_auc']:.3f}; demographic parity "
            f"difference across gender {fair['demographic_parity_difference']:.3f})")  # fmt: skip
        self.registry.set_alias(DEMO_MODEL, "champion", t["version"], actor)
        d = self.serving.deploy(DEMO_MODEL, t["version"], actor)
        say(f"deployed {DEMO_MODEL}@{d['version']} in the {d['slot']} slot")
        live = self._demo_live(data, actor, say)
        return {"ingest": r, "materialize": m, "training_set": s, "train": t, "deploy": d} | live

    def _demo_live(self, data, actor: Actor, say) -> dict[str, Any]:
        """The demo's later months: applications from after the shock are scored as
        clients would send them, their outcomes arrive, a monitoring pass raises drift
        alerts, and the workspace's drift-triggered pipeline retrains the model and
        releases the new version as a canary (its decide step then waits for evidence)."""
        late = demo.live_traffic(data, max(400, min(1000, self.settings["demo_rows"] // 60)))
        records = late.drop_columns(["event_time", "gender", "default"]).to_pylist()

        def score(record: dict) -> dict:
            return self.serving.predict(DEMO_MODEL, [record], actor, key=str(record["customer_id"]))

        with ThreadPoolExecutor(8) as pool:  # concurrent clients: their decisions share commits
            list(pool.map(score, records))
        observed = pa.table({"customer_id": late["customer_id"], "default": late["default"],
                             "observed_at": pa.array([datetime.now(UTC).replace(tzinfo=None)]
                                                     * late.num_rows, pa.timestamp("us"))})  # fmt: skip
        self.ingestion.ingest(observed, DEMO_OUTCOMES, "customer_id", "observed_at", actor,
                              label="demo outcomes of the scored applications")  # fmt: skip
        self.monitoring.set_outcomes(DEMO_MODEL, actor, table=DEMO_OUTCOMES, label="default",
                                     entity="customer_id", timestamp="observed_at")  # fmt: skip
        say(f"scored {len(records)} applications from the shock months; their outcomes arrived")
        self.monitoring.configure(DEMO_MODEL, actor, min_rows=200)  # judge the demo's few
        passed = self.monitoring.run_pass(actor, DEMO_MODEL)
        alerts = [a for a in passed["alerts"] if a.get("status", "open") == "open"]
        what = sorted({str(a.get("feature") or a["kind"]) for a in alerts})
        say(f"monitoring: {len(alerts)} alerts ({', '.join(what) or 'none'})")
        runs = []
        for run in self.scheduler.pipelines.check_triggers(SCHEDULER):  # the drift trigger
            run = self.scheduler.pipelines.advance(run["id"], SCHEDULER, wait=True)
            steps = ", ".join(f"{s['name']} {s['status']}" for s in run["steps"])
            say(f"pipeline {run['pipeline']} run {run['id']}: {run['status']} ({steps})")
            runs.append(run)
        return {"scored": len(records), "alerts": alerts, "pipeline_runs": runs}

    def close(self) -> None:
        serving = self.__dict__.get("serving")
        if serving is not None and serving.router.counters.held():
            try:  # release counts since the last evaluation, while control.db is open
                self.releases.flush_all()
            except Exception as exc:  # a full disk, say: close the stores all the same
                log.error("storing release counts on close failed: %s", exc)
        log_ = self.__dict__.pop("decision_log", None)
        if log_ is not None:
            log_.close()  # writes what is pending while the stores are still open
        for name in ("features", "control"):
            store = self.__dict__.pop(name, None)
            if store is not None:
                store.close()
