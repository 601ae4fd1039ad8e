"""Serving: blue/green slots, deploy and rollback, prediction and its decision log.

Commit point of a deploy or rollback: its audit event, in the same control.db
transaction as the deployment row. The new version is loaded and verified before that
transaction, so a bad bundle changes nothing; this process's slots switch after it.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from appliance import faults, ids
from appliance.auth import SYSTEM, Actor, require
from appliance.errors import BadInput, BundleTampered, CheckFailed, NotDeployed, NotFound
from appliance.features.online import OnlineStore
from appliance.registry import Registry
from appliance.serving.decision_log import DecisionLog, Decisions, records_sha256
from appliance.serving.releases import Router, entity_key, record_key
from appliance.serving.routing import Route
from appliance.serving.slots import SLOTS, Deployment, ModelServer, Slot, other
from appliance.stores import ControlStore, FeatureStore
from appliance.training.gates import failed_gates

__all__ = ["Deployment", "ModelServer", "Serving"]


def slot_versions(row: dict[str, Any]) -> dict[str, int | None]:
    """The version each slot holds, from a deployments row."""
    return {s: row[f"{s}_version"] for s in SLOTS}


class Serving:
    def __init__(
        self,
        control: ControlStore,
        features: Callable[[], FeatureStore],
        registry: Registry,
        decision_log: Callable[[], DecisionLog],
        online: Callable[[], OnlineStore] | None = None,
    ) -> None:
        self.control = control
        self._features = features  # opened on first use: deploys need only control.db
        self._log = decision_log
        self._online = online
        self.registry = registry
        self.server = ModelServer(control, registry.load)
        self.router = Router(self._answer)  # during a release: baseline, candidate, shadow
        # (key, records or entities) -> None, or raises ConsentWithdrawn: no new decisions
        # about subjects who withdrew consent for them (compliance.consent; set by Appliance)
        self.consent: Callable[[str | None, Any], None] | None = None
        self._key_columns: dict[tuple[str, int], str | None] = {}  # key_column's, per version

    def key_column(self, name: str, model) -> str | None:
        """Where a records request's key is when it sends no ``X-Falaj-Key``: the entity
        column of the model's training rows (its feature views' entity, else its table's).
        Releases route by it; outcomes join decisions by it and time. Bundles from before
        ``entities`` in schema.json: their table's workspace spec, looked up once."""
        entities = (model.online or {}).get("entities") or model.entities
        if entities:
            return entities[0]
        found = self._key_columns.get((name, model.version), ())
        if found == ():
            row = self.control.model_version(name, model.version) or {}
            spec = self.control.table_spec(row.get("source_table") or "")
            self._key_columns[(name, model.version)] = found = spec.get("entity") if spec else None
        return found

    # -- releases --------------------------------------------------------------

    def _load_verified(self, name: str, version: int, actor: Actor):
        try:
            return self.registry.load(name, version, actor)
        except BundleTampered as exc:
            self.server.report_integrity_failure(name, version, exc.message)
            raise

    def deploy(self, name: str, version: int, actor: Actor, force: bool = False) -> dict[str, Any]:
        """Load the version into the idle slot, warm it, then switch traffic to it."""
        require(actor, "model.deploy", model=name)
        row = self.registry.version(name, version, actor)
        failed = failed_gates(row["metrics"]["gates"])
        if failed and not force:
            raise CheckFailed(
                f"model {name}@{version} was rejected by its gates ({', '.join(failed)}); "
                "use --force to deploy it anyway"
            )
        self._no_release(name)
        model = self._load_verified(name, version, actor)
        model.warm_up()  # and smoke check: a row of missing values must get an answer
        faults.point("deploy.loaded")
        with self.control.transaction() as tx:
            self._no_release(name, tx)
            current = tx.deployment(name)
            if current is None:
                slot, previous, versions = "blue", None, {"blue": version, "green": None}
            else:
                slot = other(current["live_slot"])
                previous = current[f"{current['live_slot']}_version"]
                versions = slot_versions(current) | {slot: version}
            tx.put_deployment(name, slot, versions["blue"], versions["green"], actor)
            tx.append_audit(actor, "model.deploy", f"{name}@{version}",
                            {"slot": slot, "previous_version": previous}
                            | ({"forced": True, "failed_gates": failed} if failed else {}))  # fmt: skip
            if failed:  # its own event, so a search for forced deploys finds it
                tx.append_audit(actor, "model.deploy_forced", f"{name}@{version}",
                                {"failed_gates": failed, "slot": slot})  # fmt: skip
        faults.point("deploy.committed")
        self._install(name, slot, versions, model)
        return {"name": name, "version": version, "slot": slot, "previous_version": previous}

    def rollback(self, name: str, actor: Actor) -> dict[str, Any]:
        """Send traffic back to the other slot, which holds the previously live version."""
        require(actor, "model.deploy", model=name)
        row = self.control.deployment(name)
        if row is None:
            raise NotDeployed(f"model {name!r} is not deployed")
        self._no_release(name)
        slot = other(row["live_slot"])
        version, current = row[f"{slot}_version"], row[f"{row['live_slot']}_version"]
        if version is None:
            raise CheckFailed(
                f"model {name!r}: the {slot} slot is empty, there is nothing to roll back to"
            )
        model = self._load_verified(name, version, actor)  # verified again before it serves
        with self.control.transaction() as tx:
            now = tx.deployment(name)
            if now != row:
                raise CheckFailed(f"model {name!r}: its deployment changed meanwhile; try again")
            tx.put_deployment(name, slot, row["blue_version"], row["green_version"], actor)
            tx.append_audit(actor, "model.rollback", f"{name}@{version}",
                            {"slot": slot, "from_version": current})  # fmt: skip
        faults.point("rollback.committed")
        self._install(name, slot, slot_versions(row), model)
        return {"name": name, "version": version, "slot": slot, "previous_version": current}

    def _no_release(self, name: str, tx=None) -> None:
        """A deploy or rollback waits until a release of the model has ended."""
        active = tx.active_release(name) if tx is not None else next(
            (r for r in self.control.active_releases() if r["model"] == name), None)  # fmt: skip
        if active is not None:
            raise CheckFailed(
                f"model {name!r} has an active {active['strategy']} release of version "
                f"{active['candidate_version']}; `falaj release promote {name}` or "
                f"`falaj release rollback {name}` first"
            )

    def _install(self, name: str, slot: str, versions: dict, model) -> None:
        """Switch this process's slots to the committed state: ``slot`` is live with
        ``model``; the other keeps its loaded model if its version did not change."""
        old = self.server.loaded(name)
        slots = {}
        for s, v in versions.items():
            kept = old.slots.get(s) if old else None
            if s == slot:
                slots[s] = Slot(v, model)
            elif kept is not None and kept.version == v:
                slots[s] = kept
            else:
                slots[s] = Slot(v)  # loaded when a rollback needs it
        self.server.install(Deployment(name, slot, slots))

    def deployments(self, actor: Actor) -> dict[str, Deployment]:
        require(actor, "model.read")
        return self.server.deployments()

    def health(self) -> dict[str, Any]:
        """Each deployment's live version and any slot out of service (no actor: the
        health check answers anyone)."""
        out = {}
        for n, d in self.server.deployments(wait=False).items():  # as predictions see them
            live = d.slots[d.live_slot]
            out[n] = {"version": live.version, "slot": d.live_slot,
                      "serving": live.model is not None, "degraded": d.degraded}  # fmt: skip
        return out

    # -- predictions -----------------------------------------------------------

    def predict(
        self, name: str, records: Any, actor: Actor, where: str = "records",
        key: str | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """Score records with the live version; ``where`` names the input in errors.

        During a release the router picks the variant, sticky by ``key`` (the
        ``X-Falaj-Key`` header), else by the first record's entity column.
        The answer is returned only once its decision record is committed."""
        require(actor, "model.predict", model=name)
        if self.consent is not None:
            self.consent(key, records)
        deployment = self.server.get(name)
        if deployment.release is not None:
            key = key or record_key(records, deployment.release.entity_column)
            return self.router.answer(deployment, key, lambda m: m.matrices(records, where),
                                      actor, where)  # fmt: skip
        model = deployment.live  # this request finishes on this model, whatever swaps meanwhile
        t0 = time.perf_counter()
        X, inputs = model.matrices(records, where)
        # the key is logged even without a release: outcomes join decisions by it and time
        key = key or record_key(records, self.key_column(name, model))
        route = Route(deployment.live_slot, key=key)
        return self._answer(name, route, model, X, t0, actor, where, inputs=inputs)

    def predict_entities(
        self, name: str, entities: Any, actor: Actor, where: str = "entities",
        key: str | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """Score entities (``[{"customer_id": "c1"}, ...]``) with a model trained on
        feature views: their features come from the online store, values it lacks or
        that outlived their view's TTL take the training means. An entity the store
        does not hold is a ``BadInput`` naming it."""
        require(actor, "model.predict", model=name)
        if self.consent is not None:
            self.consent(key, entities)
        deployment = self.server.get(name)
        if deployment.release is not None:
            statuses: dict[int, list] = {}

            def build(m):  # the candidate's inputs may differ: each variant fetches its own
                X, inputs, st = self._entity_matrices(name, m, entities, where)
                statuses.setdefault(m.version, st)
                return X, inputs

            out = self.router.answer(deployment, key or entity_key(entities), build, actor,
                                     where)  # fmt: skip
            return out | {"statuses": statuses[out["version"]]}
        model = deployment.live
        t0 = time.perf_counter()
        X, inputs, statuses_ = self._entity_matrices(name, model, entities, where)
        route = Route(deployment.live_slot, key=key or entity_key(entities))
        return self._answer(name, route, model, X, t0, actor, where, inputs=inputs) | {
            "statuses": statuses_
        }

    def _entity_matrices(self, name: str, model, entities: Any, where: str):
        """The model's matrix and monitor vectors for entities from the online store,
        and the status of each value."""
        if model.online is None:
            raise BadInput(f"{where}: model {name}@{model.version} was not trained on feature "
                           "views; send records with its features instead")  # fmt: skip
        if not isinstance(entities, list) or not entities:
            raise BadInput(
                f'{where}: expected a non-empty list of objects like {{"{model.online["entities"][0]}": "..."}}'
            )
        if self._online is None:
            raise BadInput(f"{where}: no online store here")
        refs = [model.online["features"][f] for f in model.features]
        # Reading the model's own features is part of predicting: model.predict suffices.
        got = self._online().get_online_features(refs, entities, SYSTEM, full_names=True)
        rows = []
        for i, result in enumerate(got["results"]):
            for ref, at in result["event_times"].items():
                if at is None:
                    keys = ", ".join(f"{k}={v!r}" for k, v in result["entity"].items())
                    raise BadInput(f"{where}[{i}]: entity {keys} has no features in view {ref} "
                                   "(not in its online store: materialize it, or check the id)")  # fmt: skip
            rows.append(dict(zip(model.features, (result["values"][n] for n in got["features"]),
                                 strict=True)))  # fmt: skip
        X, inputs = model.filled_matrices(rows)
        statuses = [
            {f: r["statuses"][n] for f, n in zip(model.features, got["features"], strict=True)}
            for r in got["results"]
        ]
        return X, inputs, statuses

    def _answer(self, name, route: Route, model, X, t0, actor, where,
                inputs: np.ndarray | None = None) -> dict[str, Any]:  # fmt: skip
        """Score ``X`` (the model's matrix) and log the decisions with ``inputs`` (the
        records' monitor vector, ``Model.matrices``); the answer once they are logged."""
        proba = model.predict_matrix(X)
        model.check_outputs(proba, where)
        latency_ms = (time.perf_counter() - t0) * 1e3
        request_id = ids.new_id()
        # The fingerprint of an input is that of the exact feature vector the model saw.
        X = np.ascontiguousarray(X, dtype="<f8")
        prints = [hashlib.sha256(row.tobytes()).hexdigest() for row in X]
        self._log().record(
            Decisions(
                time.time_ns() // 1000,
                request_id,
                str(actor),
                name,
                model.version,
                route.slot,
                prints,
                proba,
                latency_ms,
                route.variant,
                route.release_id,
                route.served,
                route.key,
                inputs,
            )  # fmt: skip
        )
        return {
            "model": name,
            "version": model.version,
            "variant": route.variant,
            "predictions": proba.tolist(),
            "request_id": request_id,
            "receipt": request_id,  # `falaj audit prove RECEIPT` once its batch is checkpointed
        }

    def decision(self, request_id: str, actor: Actor) -> dict[str, Any]:
        """A logged decision, its batch's audit event, and whether the batch's records
        still hash to what the event committed to."""
        require(actor, "decision.read")
        features = self._features()
        self._log().flush()
        rows = features.decisions(request_id)
        if not rows:
            raise NotFound(f"no decision with request id {request_id!r}")
        batch_id = rows[0]["batch_id"]
        batch_rows = features.decision_batch_rows(batch_id)
        events = self.control.audit_find("decisions.logged", batch_id)
        event = events[0] if events else None
        columns = event["details"].get("columns", 1) if event else 1
        proved = bool(event) and event["details"]["records_sha256"] == records_sha256(
            batch_rows, columns
        )
        first = rows[0]
        names = self._feature_names(first["model"], first["version"])
        return {
            "request_id": request_id,
            "model": first["model"],
            "version": first["version"],
            "slot": first["slot"],
            "actor": first["actor"],
            "at": first["ts"].isoformat() + "Z",
            "latency_ms": first["latency_ms"],
            "variant": first.get("variant"),
            "release_id": first.get("release_id"),
            "served": first.get("served"),
            "request_key": first.get("request_key"),
            "outputs": [r["output"] for r in rows],
            # the raw inputs by feature name (categorical: the category's code among the
            # training ones, -1 unseen; dates: epoch seconds; null: missing)
            "inputs": [_named_inputs(r.get("inputs"), names) for r in rows],
            "input_fingerprints": [r["input_fingerprint"] for r in rows],
            "batch": batch_id,
            "audit_seq": event["seq"] if event else None,
            "verified": proved,
        }

    def _feature_names(self, name: str, version: int) -> list[str] | None:
        """The raw input names of a version, from its registry row (None if unknown)."""
        try:
            return self.registry.version(name, version, SYSTEM)["features"]
        except NotFound:
            return None

    def recent_decisions(self, actor: Actor, n: int = 10) -> list[dict[str, Any]]:
        require(actor, "decision.read")
        self._log().flush()
        return self._features().recent_decisions(n)

    def decision_count(self, actor: Actor, model: str | None = None) -> int:
        require(actor, "decision.read")
        self._log().flush()
        return self._features().decision_count(model)


def _named_inputs(values: list[float] | None, names: list[str] | None) -> dict[str, Any] | None:
    """A record's monitor vector by feature name; NaN (missing) as None."""
    if values is None:
        return None
    clean = [None if v is None or math.isnan(v) else v for v in values]
    if names is None or len(names) != len(clean):
        names = [f"input_{j}" for j in range(len(clean))]
    return dict(zip(names, clean, strict=True))
