"""The ``Appliance``: one object owning the stores, the model slots and the service
functions that the CLI, the web UI and the scheduler all call.

Every service function takes the acting principal (``actor``) and records its change
in the audit chain in the same transaction as the change itself.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from appliance import audit, bundles, ingest, keys, settings, training
from appliance.audit import Actor
from appliance.control_store import FILENAME as CONTROL_FILE
from appliance.control_store import ControlStore
from appliance.errors import BundleTampered, CheckFailed, NotDeployed, StoreError, UnknownModel
from appliance.feature_store import FILENAME as FEATURES_FILE
from appliance.feature_store import FeatureStore
from appliance.model import Model
from appliance.prediction_log import Entry as PredictionEntry
from appliance.prediction_log import PredictionLog
from appliance.serving import Deployment, ModelServer, other


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Appliance:
    def __init__(self, config: dict[str, Any]) -> None:
        self.settings = config
        self.home = Path(config["home"])
        self.server = ModelServer(self)

    # -- opening ---------------------------------------------------------------

    @classmethod
    def open(
        cls, overrides: dict[str, Any] | None = None, config_file: str | None = None
    ) -> Appliance:
        return cls(settings.load(overrides, config_file))

    @property
    def key_path(self) -> Path:
        return keys.key_source(self.home, self.settings["master_key_file"])

    @cached_property
    def master_key(self) -> bytes:
        return keys.read_key(self.key_path)

    def store_key(self, filename: str) -> bytes:
        """The key of one store; a missing master key is reported against that store."""
        try:
            return keys.derive(self.master_key, filename)
        except keys.KeyMissing as exc:
            raise keys.KeyMissing(f"{filename}: cannot open: {exc.message}") from None

    @cached_property
    def prediction_log(self) -> PredictionLog:
        return PredictionLog(self)

    @cached_property
    def control(self) -> ControlStore:
        return ControlStore(self.home / CONTROL_FILE, self.store_key(CONTROL_FILE))

    @cached_property
    def features(self) -> FeatureStore:
        return FeatureStore(self.home / FEATURES_FILE, self.store_key(FEATURES_FILE))

    def init(self, actor: Actor) -> dict[str, Any]:
        """Create the home, key and stores; a second run changes nothing."""
        control_path, features_path = self.home / CONTROL_FILE, self.home / FEATURES_FILE
        existing = [p.name for p in (control_path, features_path) if p.exists()]
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
        (self.home / "artifacts").mkdir(exist_ok=True)
        self.control = ControlStore(control_path, self.store_key(CONTROL_FILE), create=True)
        self.features = FeatureStore(features_path, self.store_key(FEATURES_FILE), create=True)
        applied = {"control.db": self.control.migrate(), "features.duckdb": self.features.migrate()}
        changed = created_key or any(applied.values())
        if changed:
            with self.control.transaction() as conn:
                audit.append(
                    conn,
                    actor,
                    "home.init",
                    str(self.home),
                    {"created_key": created_key, "migrations": applied},
                )
        return {
            "home": str(self.home),
            "created_key": created_key,
            "migrations": applied,
            "changed": changed,
        }

    def close(self) -> None:
        log = self.__dict__.pop("prediction_log", None)
        if log is not None:
            log.close()  # writes what is pending while the stores are still open
        for name in ("features", "control"):
            store = self.__dict__.pop(name, None)
            if store is not None:
                store.close()

    # -- ingest ----------------------------------------------------------------

    def ingest(
        self, path: str | Path, table: str, entity: str, timestamp: str, actor: Actor
    ) -> dict[str, Any]:
        """Append a CSV or Parquet file to a table, all rows or none."""
        ingest.check_name("table", table)
        path = Path(path)
        existing = self.features.column_types(table)
        known_keys = self.features.table_keys(table)
        if known_keys is not None and known_keys != (entity, timestamp):
            raise ingest.BadInput(
                f"table {table!r} has entity {known_keys[0]!r} and timestamp {known_keys[1]!r}, "
                f"not {entity!r} and {timestamp!r}"
            )
        prepared = ingest.prepare(path, entity, timestamp, existing)
        batch_id = uuid.uuid4().hex
        now = datetime.now(UTC).replace(tzinfo=None)
        batch = prepared.table.append_column(
            "_batch_id", pa.array([batch_id] * prepared.rows, pa.string())
        )
        batch = batch.append_column(
            "_ingested_at", pa.array([now] * prepared.rows, pa.timestamp("us"))
        )
        with self.features.transaction() as con:
            if existing is None:
                cols = ", ".join(f'"{c}" {t}' for c, t in prepared.types.items())
                con.execute(
                    f'CREATE TABLE "{table}" ({cols}, _batch_id VARCHAR, _ingested_at TIMESTAMP)'
                )
                con.execute(
                    "INSERT INTO _tables VALUES (?, ?, ?, ?)", [table, entity, timestamp, now]
                )
            con.register("_batch", batch)
            con.execute(f'INSERT INTO "{table}" BY NAME SELECT * FROM _batch')
            con.unregister("_batch")
            con.execute(
                "INSERT INTO _ingests VALUES (?, ?, ?, ?, ?, ?)",
                [batch_id, table, str(path.resolve()), prepared.rows, now, str(actor)],
            )
            total = con.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
            details = {
                "file": str(path.resolve()),
                "rows": prepared.rows,
                "batch": batch_id,
                "created": existing is None,
            }
            with self.control.transaction() as conn:
                audit.append(conn, actor, "data.ingest", table, details)
        return {
            "table": table,
            "rows": prepared.rows,
            "total_rows": total,
            "batch": batch_id,
            "columns": prepared.types,
        }

    def tables(self) -> list[dict[str, Any]]:
        out = []
        for t in self.features.query("SELECT * FROM _tables ORDER BY table_name"):
            name = t["table_name"]
            last = self.features.query(
                "SELECT max(ingested_at) AS last, count(*) AS batches FROM _ingests WHERE table_name = ?",
                [name],
            )[0]
            out.append(
                {
                    "table": name,
                    "rows": self.features.row_count(name),
                    "columns": self.features.column_types(name),
                    "entity": t["entity_col"],
                    "timestamp": t["timestamp_col"],
                    "last_ingest": last["last"].isoformat(timespec="seconds") + "Z"
                    if last["last"]
                    else None,
                    "batches": last["batches"],
                }
            )
        return out

    # -- training and registry -------------------------------------------------

    def train(self, table: str, label: str, name: str, actor: Actor) -> dict[str, Any]:
        ingest.check_name("model", name)
        run = training.train(
            self.features, table, label, name,
            holdout_fraction=self.settings["holdout_fraction"], C=self.settings["l2_c"],
        )  # fmt: skip
        version = self._register(run, actor)
        return {
            "name": name,
            "version": version,
            "metrics": run.metrics,
            "gates_passed": run.gates_passed,
        }

    def _register(self, run: training.TrainingRun, actor: Actor) -> int:
        """Publish the bundle and record version N in one control.db transaction."""
        name = run.model.name
        signer = keys.signing_key(self.master_key)
        with self.control.transaction() as conn:
            if not conn.execute("SELECT 1 FROM models WHERE name = ?", (name,)).fetchone():
                conn.execute("INSERT INTO models VALUES (?, ?, ?)", (name, _now(), str(actor)))
            version = conn.execute(
                "SELECT coalesce(max(version), 0) + 1 FROM model_versions WHERE name = ?", (name,)
            ).fetchone()[0]
            run.model.version = version
            path = self.home / "artifacts" / name / f"v{version}"
            docs = run.model.documents() | {
                "metrics.json": run.metrics,
                "lineage.json": run.lineage,
            }
            manifest_sha = bundles.write(path, docs, signer)
            try:
                conn.execute(
                    "INSERT INTO model_versions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        name, version, _now(), str(actor), str(path.relative_to(self.home)), manifest_sha,
                        run.lineage["table"], run.lineage["label"], json.dumps(run.model.features),
                        json.dumps(run.metrics), run.lineage["data_fingerprint"],
                    ),
                )  # fmt: skip
                audit.append(
                    conn, actor, "model.register", f"{name}@{version}",
                    {"manifest_sha256": manifest_sha, "data_fingerprint": run.lineage["data_fingerprint"],
                     "holdout": run.metrics["holdout"], "gates_passed": run.gates_passed},
                )  # fmt: skip
            except BaseException:
                bundles.remove(path)
                raise
        return version

    def model_version(self, name: str, version: int) -> dict[str, Any]:
        rows = self.control.query(
            "SELECT * FROM model_versions WHERE name = ? AND version = ?", (name, version)
        )
        if not rows:
            known = self.control.query(
                "SELECT version FROM model_versions WHERE name = ? ORDER BY version", (name,)
            )
            if not known:
                raise UnknownModel(f"model {name!r} is not registered")
            raise UnknownModel(
                f"model {name!r} has no version {version} (versions: {', '.join(str(r['version']) for r in known)})"
            )
        row = rows[0]
        row["metrics"] = json.loads(row["metrics"])
        row["features"] = json.loads(row["features"])
        return row

    def models(self) -> list[dict[str, Any]]:
        rows = self.control.query("SELECT * FROM model_versions ORDER BY name, version")
        live = {d["name"]: d for d in self.control.query("SELECT * FROM deployments")}
        for r in rows:
            r["metrics"] = json.loads(r["metrics"])
            r["features"] = json.loads(r["features"])
            d = live.get(r["name"])
            r["live"] = bool(d and d[f"{d['live_slot']}_version"] == r["version"])
        return rows

    def verify_model(self, name: str, version: int) -> dict[str, bytes]:
        row = self.model_version(name, version)
        public = keys.signing_key(self.master_key).public_key()
        return bundles.verify(self.home / row["path"], public, row["manifest_sha256"])

    def load_model(self, name: str, version: int) -> Model:
        files = self.verify_model(name, version)
        return Model.from_files(name, version, files)

    # -- deployment and serving ------------------------------------------------

    def deploy(self, name: str, version: int, actor: Actor, force: bool = False) -> dict[str, Any]:
        """Load the version into the idle slot, warm it, then switch traffic to it."""
        row = self.model_version(name, version)
        if not row["metrics"]["gates"]["passed"] and not force:
            raise CheckFailed(
                f"model {name}@{version} failed its gates {row['metrics']['gates']}; use --force to deploy anyway"
            )
        model = self.load_model(name, version)
        model.predict_matrix(model.scaler.mean_.reshape(1, -1))  # warm-up and smoke check
        with self.control.transaction() as conn:
            current = conn.execute("SELECT * FROM deployments WHERE name = ?", (name,)).fetchone()
            if current is None:
                slot, previous = "blue", None
                conn.execute(
                    "INSERT INTO deployments VALUES (?, 'blue', ?, NULL, ?, ?)",
                    (name, version, _now(), str(actor)),
                )
            else:
                slot = other(current["live_slot"])
                previous = current[f"{current['live_slot']}_version"]
                conn.execute(
                    f"UPDATE deployments SET {slot}_version = ?, live_slot = ?, updated_at = ?, updated_by = ? "
                    "WHERE name = ?",
                    (version, slot, _now(), str(actor), name),
                )
            audit.append(
                conn,
                actor,
                "model.deploy",
                f"{name}@{version}",
                {"slot": slot, "previous_version": previous},
            )
        old = self.server.deployments().get(name)
        models = dict(old.models) if old else {"blue": None, "green": None}
        models[slot] = model
        self.server.install(Deployment(name, slot, models))
        return {"name": name, "version": version, "slot": slot, "previous_version": previous}

    def rollback(self, name: str, actor: Actor) -> dict[str, Any]:
        """Send traffic back to the other slot, which holds the previously live version."""
        with self.control.transaction() as conn:
            row = conn.execute("SELECT * FROM deployments WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise NotDeployed(f"model {name!r} is not deployed")
            slot = other(row["live_slot"])
            version, current = row[f"{slot}_version"], row[f"{row['live_slot']}_version"]
            if version is None:
                raise CheckFailed(
                    f"model {name!r}: the {slot} slot is empty, there is nothing to roll back to"
                )
            model = self.load_model(name, version)  # verified again before it takes traffic
            conn.execute(
                "UPDATE deployments SET live_slot = ?, updated_at = ?, updated_by = ? WHERE name = ?",
                (slot, _now(), str(actor), name),
            )
            audit.append(
                conn,
                actor,
                "model.rollback",
                f"{name}@{version}",
                {"slot": slot, "from_version": current},
            )
        models = dict(self.server.deployments()[name].models) | {slot: model}
        self.server.install(Deployment(name, slot, models))
        return {"name": name, "version": version, "slot": slot, "previous_version": current}

    def predict(
        self, name: str, records: Any, actor: Actor, where: str = "records"
    ) -> dict[str, Any]:
        """Score records with the live version; ``where`` names the input in errors."""
        deployment = self.server.get(name)
        model = deployment.live  # this request finishes on this model, whatever swaps meanwhile
        t0 = time.perf_counter()
        X = model.matrix(records, where)
        proba = model.predict_matrix(X)
        latency_ms = (time.perf_counter() - t0) * 1e3
        request_id = uuid.uuid4().hex
        n = len(X)
        # The fingerprint of an input is that of the exact feature vector the model saw.
        prints = [hashlib.sha256(row.tobytes()).hexdigest() for row in X.astype("<f8")]
        now_us = time.time_ns() // 1000
        # Built from NumPy arrays: Python datetimes would cost a (failing) pandas import per call.
        rows = pa.table(
            {
                "ts": pa.array(np.full(n, now_us, dtype=np.int64), pa.timestamp("us")),
                "request_id": pa.array([request_id] * n, pa.string()),
                "model": pa.array([name] * n, pa.string()),
                "version": pa.array(np.full(n, model.version, dtype=np.int32)),
                "slot": pa.array([deployment.live_slot] * n, pa.string()),
                "input_fingerprint": pa.array(prints, pa.string()),
                "output": pa.array(proba),
                "latency_ms": pa.array(np.full(n, latency_ms)),
            }
        )
        details = {
            "request_id": request_id,
            "rows": n,
            "slot": deployment.live_slot,
            "requested_at_us": now_us,
            "inputs_sha256": hashlib.sha256("".join(prints).encode()).hexdigest(),
        }
        self.prediction_log.submit(PredictionEntry(rows, actor, f"{name}@{model.version}", details))
        return {
            "model": name,
            "version": model.version,
            "predictions": proba.tolist(),
            "request_id": request_id,
        }

    def prediction_count(self, name: str | None = None) -> int:
        self.prediction_log.flush()
        if name is None:
            return self.features.query("SELECT count(*) AS n FROM _predictions")[0]["n"]
        return self.features.query(
            "SELECT count(*) AS n FROM _predictions WHERE model = ?", [name]
        )[0]["n"]

    # -- audit -----------------------------------------------------------------

    def audit_verify(self) -> audit.Verification:
        self.prediction_log.flush()  # so the chain read includes this process's pending events
        return audit.verify(self.control.query("SELECT * FROM audit_events ORDER BY seq"))

    def audit_tail(self, n: int) -> list[dict[str, Any]]:
        self.prediction_log.flush()
        rows = self.control.query("SELECT * FROM audit_events ORDER BY seq DESC LIMIT ?", (n,))
        for r in rows:
            r["details"] = json.loads(r["details"])
        return rows


__all__ = ["Actor", "Appliance", "BundleTampered", "StoreError"]
