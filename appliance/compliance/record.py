"""The record of processing activities (GDPR art. 30; PDPL art. 9's record of personal
data processing): what is processed, why, on which legal basis, by which models, kept
how long, sent to whom (nobody: the box keeps it) and where it lives.

    app.processing_record(actor)              # a JSON-ready document
    processing_csv(app.processing_record(actor))
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Any

from appliance.auth import SYSTEM, Actor, require
from appliance.compliance import residency
from appliance.compliance.consent import BASES, PURPOSES


def processing_record(app: Any, actor: Actor) -> dict[str, Any]:
    require(actor, "compliance.read")
    specs = app.control.table_specs()
    tables = {t["table_name"]: t for t in app.features.tables()}
    personal = [
        {"table": name, "entity": spec.get("entity"), "personal_columns": spec["personal"],
         "rows": app.features.row_count(name) if name in tables else 0,
         "protection": "AES-256-GCM per subject; erasure deletes the subject's key"}
        for name, spec in sorted(specs.items()) if spec.get("personal")
    ]  # fmt: skip
    view_tables = {f: v["table"] for v in app.views.list(SYSTEM) if v.get("table")
                   for f in v["features"]}  # fmt: skip
    latest: dict[str, dict[str, Any]] = {}
    for m in app.control.model_versions():  # by name, then version: the last one wins
        latest[m["name"]] = m
    models = []
    for name, m in sorted(latest.items()):
        sources = {m.get("source_table")} | {view_tables.get(f) for f in m["features"] or []}
        models.append({"model": name, "version": m["version"], "status": m.get("status"),
                       "tables": sorted(sources - {None})})  # fmt: skip
    by_purpose = {p["purpose"]: p for p in app.control.consent_purposes()}
    purposes = []
    for purpose in sorted(set(PURPOSES) | set(by_purpose)):
        row = by_purpose.get(purpose, {})
        purposes.append({
            "purpose": purpose,
            "description": PURPOSES.get(purpose, "declared by the operator"),
            "legal_bases": sorted(set((row.get("bases") or "").split(",")) - {""}),
            "subjects": row.get("subjects", 0),
            "withdrawn": len(app.consent.withdrawn().get(purpose, ())),
            "models": [m["model"] for m in models] if purpose in ("model-training",
                                                                   "automated-decision") else [],
        })  # fmt: skip
    nets = residency.installed() or residency.parse_networks(
        app.settings.get("allowed_networks") or residency.DEFAULT_NETWORKS
    )
    return {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "generated_by": str(actor),
        "controller": "the operator of this Falaj appliance (on-premises)",
        "purposes": purposes,
        "legal_bases_known": list(BASES),
        "personal_data": personal,
        "tables": sorted(tables),
        "models": models,
        "retention": {
            "decision_log_days": app.settings.get("decision_retention_days"),
            "feature_tables": "kept until the subject is erased (crypto-shredding)",
            "audit_chain": "kept for the life of the appliance (holds no personal plaintext)",
        },
        "recipients": [],
        "transfers": "none: data stays on this appliance",
        "residency": {
            "where": "on-box, LAN only",
            "allowed_networks": [str(n) for n in nets],
        },  # fmt: skip
        "security": [
            "SQLCipher 4 control.db",
            "AES-GCM encrypted features.duckdb",
            "per-subject keys for personal columns",
            "hash-chained audit log",
        ],
        "subject_requests": len(app.control.subject_requests(limit=100000)),
    }


def processing_csv(record: dict[str, Any]) -> str:
    """The record as CSV: one row per purpose, personal table and model."""
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["section", "name", "legal_bases", "detail", "retention", "recipients", "residency"])
    ret = f"decisions {record['retention']['decision_log_days']} days; features until erased"
    where = record["residency"]["where"]
    for p in record["purposes"]:
        w.writerow(["purpose", p["purpose"], " ".join(p["legal_bases"]),
                    f"{p['description']}; subjects {p['subjects']}, withdrawn {p['withdrawn']}",
                    ret, "none", where])  # fmt: skip
    for t in record["personal_data"]:
        w.writerow(["personal_data", t["table"], "", " ".join(t["personal_columns"]), ret,
                    "none", where])  # fmt: skip
    for m in record["models"]:
        w.writerow(["model", f"{m['model']}@{m['version']}", "", " ".join(m["tables"]), ret,
                    "none", where])  # fmt: skip
    return out.getvalue()
