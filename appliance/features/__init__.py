"""Features: the catalog of feature tables, declared feature views (``views``, from the
workspace file ``falaj.yaml``), point-in-time training sets and the online store."""

from __future__ import annotations

from typing import Any

from appliance.auth import Actor, require
from appliance.stores import ControlStore, FeatureStore


def contract_summary(spec: dict[str, Any]) -> dict[str, Any] | None:
    """A table spec's contract in a few words: policy, rules per column, freshness."""
    contract = spec.get("contract")
    if contract is None:
        return None
    return {
        "policy": contract.get("policy", "refuse"),
        "unique_key": contract.get("unique_key", False),
        "freshness": contract.get("freshness"),
        "columns": len(contract.get("columns", {})),
        "rules": sum(
            (not r.get("nullable", True)) + sum(k in r for k in ("type", "min", "max", "allowed"))
            for r in contract.get("columns", {}).values()
        ),
    }


class FeatureCatalog:
    def __init__(self, features: FeatureStore, control: ControlStore | None = None) -> None:
        self.features = features
        self.control = control

    def tables(self, actor: Actor) -> list[dict[str, Any]]:
        """Every feature table, ingested or only declared: rows, columns, keys, its latest
        ingest (UTC), its declared spec and contract summary, and the views over it."""
        require(actor, "data.read")
        specs = self.control.table_specs() if self.control is not None else {}
        views: dict[str, list[str]] = {}
        if self.control is not None:
            for v in self.control.latest_views():
                for t in [v["source_table"]] if v["source_table"] else v["definition"]["tables"]:
                    views.setdefault(t, []).append(f"{v['name']}@{v['version']}")
        out = [
            {
                "table": t["table_name"],
                "rows": self.features.row_count(t["table_name"]),
                "columns": self.features.column_types(t["table_name"]),
                "entity": t["entity_col"],
                "timestamp": t["timestamp_col"],
                "last_ingest": t["last"].isoformat(timespec="seconds") + "Z" if t["last"] else None,
                "batches": t["batches"],
            }
            for t in self.features.tables()
        ]
        ingested = {t["table"] for t in out}
        for name, spec in specs.items():
            if name not in ingested:
                out.append({"table": name, "rows": 0, "columns": {}, "entity": spec["entity"],
                            "timestamp": spec["event_time"], "last_ingest": None,
                            "batches": 0})  # fmt: skip
        for t in out:
            spec = specs.get(t["table"])
            t["declared"] = spec is not None
            t["spec"] = spec
            t["contract"] = contract_summary(spec) if spec is not None else None
            t["views"] = views.get(t["table"], [])
            # sealed per subject: shown as [encrypted], never as bytes (compliance.shredding)
            t["personal"] = list((spec or {}).get("personal", []))
        return sorted(out, key=lambda t: t["table"])
