"""Who may do what: the acting principal of every service call and the one place that
checks it.

Every service function takes an ``Actor`` and calls ``require(actor, permission)``
before it reads or changes anything, so the CLI, the API, the dashboard and the
scheduler pass through the same gate. Until users and roles land, every known actor
holds every permission; the permission names are declared here, as data, so a service
cannot ask for one that does not exist.
"""

from __future__ import annotations

from dataclasses import dataclass

from appliance.errors import FalajError

ACTOR_KINDS = ("user", "token", "cli", "scheduler", "system", "api", "test", "bench")

# permission -> what it allows; the trust issue maps roles onto these.
PERMISSIONS = {
    "home.init": "create the home, its key and stores",
    "home.check": "read every page of both stores",
    "data.read": "list tables and their columns",
    "data.ingest": "load a file into a table",
    "data.quarantine": "release or drop quarantined rows",
    "features.read": "list and show feature views, read online features",
    "features.define": "apply a workspace, define views, materialize the online store",
    "features.build": "build and register point-in-time training sets",
    "model.read": "list and show model versions, verify bundles",
    "model.train": "train and register a version",
    "model.alias": "set, move and delete model aliases (champion, challenger, ...)",
    "model.deploy": "deploy, roll back",
    "model.export": "export a version to ONNX",
    "model.predict": "score records with a live model",
    "decision.read": "read logged decisions",
    "decision.prune": "delete decision batches older than the retention setting",
    "release.read": "see releases (canary, shadow, A/B) and their per-variant reports",
    "release.manage": "start, promote and roll back releases, set their automatic policy",
    "monitor.read": "read drift, live metrics and alerts",
    "monitor.configure": "set monitoring thresholds and alert webhooks, acknowledge alerts",
    "pipeline.read": "list pipelines, their runs, steps and scheduled jobs",
    "pipeline.run": "start, resume and cancel pipeline runs",
    "pipeline.approve": "approve or reject a pipeline's manual approval step",
    "audit.read": "read and verify the audit chain, its checkpoints and proofs",
    "audit.checkpoint": "write a signed audit checkpoint",
    "audit.export": "export the audit log with its checkpoints for an outside verifier",
    "user.manage": "add, disable and enrol users, set their roles",
    "token.manage": "create, list and revoke API tokens",
    "keys.rotate": "rotate the master key and the store keys",
    "selftest.run": "run the on-box self-test and read its signed reports",
    "backup.create": "take an encrypted, signed backup of the home",
    "backup.restore": "restore a home from a backup",
    "consent.read": "read the consent registry",
    "consent.manage": "record consent given or withdrawn",
    "subject.export": "export everything held about a data subject",
    "subject.rectify": "correct a data subject's rows (audited)",
    "subject.erase": "erase a data subject's personal data by crypto-shredding",
    "subject.object": "record a data subject's objection to an automated decision",
    "review.read": "read the human-review queue",
    "review.decide": "record the outcome of a human review",
    "compliance.read": "read and export the record of processing activities",
}


@dataclass(frozen=True)
class Actor:
    """Who did it: a user, an API token, the scheduler or the CLI's local operator."""

    kind: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}"


class Forbidden(FalajError):
    status = 403


def require(actor: Actor, permission: str) -> None:
    """Allow ``actor`` to use ``permission`` or raise ``Forbidden``."""
    if permission not in PERMISSIONS:
        raise KeyError(f"unknown permission {permission!r}")  # a programming error
    if not isinstance(actor, Actor) or actor.kind not in ACTOR_KINDS:
        raise Forbidden(f"{permission}: no known actor given ({actor!r})")


SYSTEM = Actor("system", "falaj")
