"""The model registry: numbered versions, their signed bundles, and verification.

Commit point of a registration: the ``model.register`` audit event, in the same
control.db transaction as the version's row. The bundle is published first (atomically,
under the same write lock); a crash before the commit leaves an unregistered bundle
folder, which ``reconcile`` removes.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from appliance import faults
from appliance.auth import SYSTEM, Actor, require
from appliance.errors import UnknownModel
from appliance.registry import bundles, uris
from appliance.registry.model import Model
from appliance.registry.uris import ModelRef
from appliance.stores import ControlStore
from appliance.stores.control import now
from appliance.training.gates import failed_gates

if TYPE_CHECKING:
    from appliance.training import TrainingRun

__all__ = ["Model", "Registry"]


class Registry:
    def __init__(
        self,
        control: ControlStore,
        home: Path,
        signer: Ed25519PrivateKey,
        cipher_key: bytes | None = None,
    ) -> None:
        self.control = control
        self.home = home
        self.artifacts = home / "artifacts"
        self.signer = signer
        self.public_key = signer.public_key()
        self.cipher = AESGCM(cipher_key) if cipher_key is not None else None

    def register(self, run: TrainingRun, actor: Actor) -> int:
        """Publish the bundle and record version N in one control.db transaction."""
        require(actor, "model.train")
        name = run.model.name
        with self.control.transaction() as tx:
            version = tx.next_version(name, actor)
            run.model.version = version
            path = self.artifacts / name / f"v{version}"
            if path.exists():  # left by a registration that never committed
                shutil.rmtree(path)
            docs = run.model.documents() | {
                "metrics.json": run.metrics,
                "lineage.json": run.lineage,
                "verdict.json": run.metrics["gates"] | {"status": run.status},
                "card.json": run.card,
            }
            manifest_sha = bundles.write(path, docs, self.signer, self.cipher)
            faults.point("register.bundle_written")
            try:
                tx.insert_version(
                    {"name": name, "version": version, "created_at": now(),
                     "created_by": str(actor), "path": str(path.relative_to(self.home)),
                     "manifest_sha256": manifest_sha, "source_table": run.lineage["table"],
                     "label": run.lineage["label"], "features": run.model.features,
                     "metrics": run.metrics, "data_fingerprint": run.lineage["data_fingerprint"],
                     "status": run.status}
                )  # fmt: skip
                tx.append_audit(
                    actor, "model.register", f"{name}@{version}",
                    {"manifest_sha256": manifest_sha, "data_fingerprint": run.lineage["data_fingerprint"],
                     "status": run.status, "gates_passed": run.gates_passed,
                     "holdout": {k: v for k, v in run.metrics["holdout"].items()
                                 if isinstance(v, int | float | None)},
                     "failed_gates": failed_gates(run.metrics["gates"])},
                )  # fmt: skip
            except BaseException:
                bundles.remove(path)
                raise
        return version

    # -- names and aliases -----------------------------------------------------

    def resolve(self, ref: str | ModelRef, actor: Actor) -> tuple[str, int]:
        """(name, version) for ``models:/NAME/VERSION``, ``models:/NAME@ALIAS``,
        ``NAME@VERSION``, ``NAME@ALIAS`` or ``NAME`` (the latest version)."""
        ref = uris.parse(ref) if isinstance(ref, str) else ref
        if ref.alias is not None:
            require(actor, "model.read")
            row = next((a for a in self.control.aliases(ref.name) if a["alias"] == ref.alias), None)
            if row is None:
                known = [a["alias"] for a in self.control.aliases(ref.name)]
                self.latest(ref.name, actor)  # an unknown model is named as such
                raise UnknownModel(f"model {ref.name!r} has no alias {ref.alias!r} "
                                   f"(aliases: {', '.join(known) or 'none'})")  # fmt: skip
            return ref.name, row["version"]
        if ref.version is None:
            return ref.name, self.latest(ref.name, actor)
        self.version(ref.name, ref.version, actor)
        return ref.name, ref.version

    def set_alias(self, name: str, alias: str, version: int, actor: Actor) -> dict[str, Any]:
        """Point ``alias`` at a version (moving it if it named another); audited."""
        require(actor, "model.alias", model=name)
        uris.check_alias(alias)
        row = self.version(name, version, actor)
        with self.control.transaction() as tx:
            previous = tx.set_alias(name, alias, version, now(), str(actor))
            tx.append_audit(actor, "model.alias", f"{name}@{alias}",
                            {"version": version, "previous_version": previous,
                             "status": row["status"]})  # fmt: skip
        return {"name": name, "alias": alias, "version": version, "previous_version": previous}

    def delete_alias(self, name: str, alias: str, actor: Actor) -> dict[str, Any]:
        require(actor, "model.alias", model=name)
        self.latest(name, actor)
        with self.control.transaction() as tx:
            previous = tx.delete_alias(name, alias)
            if previous is None:
                raise UnknownModel(f"model {name!r} has no alias {alias!r}")
            tx.append_audit(actor, "model.alias_deleted", f"{name}@{alias}",
                            {"previous_version": previous})  # fmt: skip
        return {"name": name, "alias": alias, "previous_version": previous}

    def aliases(self, name: str, actor: Actor) -> dict[str, int]:
        require(actor, "model.read")
        return {a["alias"]: a["version"] for a in self.control.aliases(name)}

    def aliases_of(self, name: str, version: int, actor: Actor) -> list[str]:
        """The aliases that name this version, sorted."""
        return sorted(a for a, v in self.aliases(name, actor).items() if v == version)

    def champion_version(self, name: str) -> int | None:
        """The version the ``champion`` alias names, else the live one, else None."""
        alias = self.aliases(name, SYSTEM).get("champion")
        if alias is not None:
            return alias
        d = self.control.deployment(name)
        return None if d is None else d[f"{d['live_slot']}_version"]

    def documents(self, name: str, version: int, actor: Actor) -> dict[str, Any]:
        """A version's bundle documents (verified), JSON ones parsed."""
        files = self.verify(name, version, actor)
        return {k: json.loads(v) if k.endswith(".json") else v.decode() for k, v in files.items()}

    def card_info(self, name: str, version: int, actor: Actor) -> dict[str, Any]:
        """What the model card shows for a version (see ``card.py``)."""
        row = self.version(name, version, actor)
        docs = self.documents(name, version, actor)
        schema, lineage, card = (
            docs["schema.json"],
            docs.get("lineage.json", {}),
            docs.get("card.json", {}),
        )
        return {
            "name": name, "version": version, "status": row["status"],
            "created_at": row["created_at"], "created_by": row["created_by"],
            "aliases": self.aliases_of(name, version, actor),
            "intended_use": card.get("intended_use"), "threshold": card.get("threshold"),
            "family": schema.get("family", "linear"), "task": schema.get("task", "binary"),
            "params": lineage.get("params") or lineage.get("hyperparameters") or {},
            "inputs": [{"name": i["name"], "role": i.get("role", "numeric"), "type": i["type"]}
                       for i in schema["inputs"]],
            "sensitive": schema.get("sensitive"),
            "lineage": lineage, "metrics": docs.get("metrics.json", row["metrics"]),
        }  # fmt: skip

    def card(self, name: str, version: int, actor: Actor, fmt: str = "md") -> str:
        from appliance.registry import card

        info = self.card_info(name, version, actor)
        return card.html(info) if fmt == "html" else card.markdown(info)

    def export(self, name: str, version: int, out: Path, actor: Actor) -> dict[str, Any]:
        """Write a version as ONNX (pipeline and estimator, taking the raw columns),
        published atomically; audited, since a model leaves the appliance."""
        from appliance.registry import onnx_export

        require(actor, "model.export")
        model = self.load(name, version, actor)
        result = onnx_export.export(model, out)
        with self.control.transaction() as tx:
            tx.append_audit(actor, "model.export", f"{name}@{version}",
                            {"format": "onnx", "sha256": result["sha256"], "bytes": result["bytes"]})  # fmt: skip
        return result

    def version(self, name: str, version: int, actor: Actor) -> dict[str, Any]:
        require(actor, "model.read", model=name)
        row = self.control.model_version(name, version)
        if row is None:
            known = [r["version"] for r in self.control.model_versions(name)]
            if not known:
                raise UnknownModel(f"model {name!r} is not registered")
            raise UnknownModel(
                f"model {name!r} has no version {version} (versions: {', '.join(map(str, known))})"
            )
        return row

    def latest(self, name: str, actor: Actor) -> int:
        require(actor, "model.read")
        versions = [r["version"] for r in self.control.model_versions(name)]
        if not versions:
            raise UnknownModel(f"model {name!r} is not registered")
        return max(versions)

    def versions(self, actor: Actor) -> list[dict[str, Any]]:
        """Every version, with ``live`` set on the one each deployment serves."""
        require(actor, "model.read")
        live = {(d["name"], d[f"{d['live_slot']}_version"]) for d in self.control.deployments()}
        aliases: dict[tuple[str, int], list[str]] = {}
        for a in self.control.aliases():
            aliases.setdefault((a["name"], a["version"]), []).append(a["alias"])
        return [r | {"live": (r["name"], r["version"]) in live,
                     "aliases": aliases.get((r["name"], r["version"]), [])}
                for r in self.control.model_versions()]  # fmt: skip

    def verify(self, name: str, version: int, actor: Actor) -> dict[str, bytes]:
        """Check a bundle's signature, manifest and files; its files' contents."""
        row = self.version(name, version, actor)
        return bundles.verify(
            self.home / row["path"], self.public_key, row["manifest_sha256"],
            label=f"bundle {name}@{version}", cipher=self.cipher,
        )  # fmt: skip

    def load(self, name: str, version: int, actor: Actor = SYSTEM) -> Model:
        return Model.from_files(name, version, self.verify(name, version, actor))

    def reconcile(self) -> list[str]:
        """Remove bundle folders that no committed version names (and stale temporary
        ones), under the write lock so no registration is in flight meanwhile."""
        if not self.artifacts.is_dir():
            return []
        removed = []
        with self.control.transaction() as tx:
            registered = set(tx.version_paths())
            for folder in sorted(self.artifacts.glob("*/*")):
                rel = folder.relative_to(self.home).as_posix()
                if folder.is_dir() and rel not in registered:
                    shutil.rmtree(folder, ignore_errors=True)
                    removed.append(rel)
            for model in self.artifacts.iterdir():  # a first version that never committed
                if model.is_dir() and not any(model.iterdir()):
                    model.rmdir()
            if removed:
                tx.append_audit(SYSTEM, "reconcile.rollback", "artifacts",
                                {"change": "model.register", "removed": removed})  # fmt: skip
        return removed
