"""The model registry: numbered versions, their signed bundles, and verification.

Commit point of a registration: the ``model.register`` audit event, in the same
control.db transaction as the version's row. The bundle is published first (atomically,
under the same write lock); a crash before the commit leaves an unregistered bundle
folder, which ``reconcile`` removes.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance import faults
from appliance.auth import SYSTEM, Actor, require
from appliance.errors import UnknownModel
from appliance.registry import bundles
from appliance.registry.model import Model
from appliance.stores import ControlStore
from appliance.stores.control import now

if TYPE_CHECKING:
    from appliance.training.logistic import TrainingRun

__all__ = ["Model", "Registry"]


class Registry:
    def __init__(self, control: ControlStore, home: Path, signer: Ed25519PrivateKey) -> None:
        self.control = control
        self.home = home
        self.artifacts = home / "artifacts"
        self.signer = signer
        self.public_key = signer.public_key()

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
            docs = run.model.documents() | {"metrics.json": run.metrics,
                                             "lineage.json": run.lineage}  # fmt: skip
            manifest_sha = bundles.write(path, docs, self.signer)
            faults.point("register.bundle_written")
            try:
                tx.insert_version(
                    {"name": name, "version": version, "created_at": now(),
                     "created_by": str(actor), "path": str(path.relative_to(self.home)),
                     "manifest_sha256": manifest_sha, "source_table": run.lineage["table"],
                     "label": run.lineage["label"], "features": run.model.features,
                     "metrics": run.metrics, "data_fingerprint": run.lineage["data_fingerprint"]}
                )  # fmt: skip
                tx.append_audit(
                    actor, "model.register", f"{name}@{version}",
                    {"manifest_sha256": manifest_sha, "data_fingerprint": run.lineage["data_fingerprint"],
                     "holdout": run.metrics["holdout"], "gates_passed": run.gates_passed},
                )  # fmt: skip
            except BaseException:
                bundles.remove(path)
                raise
        return version

    def version(self, name: str, version: int, actor: Actor) -> dict[str, Any]:
        require(actor, "model.read")
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
        return [r | {"live": (r["name"], r["version"]) in live}
                for r in self.control.model_versions()]  # fmt: skip

    def verify(self, name: str, version: int, actor: Actor) -> dict[str, bytes]:
        """Check a bundle's signature, manifest and files; its files' contents."""
        row = self.version(name, version, actor)
        return bundles.verify(
            self.home / row["path"], self.public_key, row["manifest_sha256"],
            label=f"bundle {name}@{version}",
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
