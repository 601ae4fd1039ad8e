"""Who may do what: the acting principal of every service call, the role matrix, and
the one place that checks it.

Every service function takes an ``Actor`` and calls ``require(actor, permission)``
before it reads or changes anything, so the CLI, the API, the dashboard and the
scheduler pass through the same gate. The permission names and the role matrix
(``ROLES``: role -> the permissions it holds) are declared here, once, as data:

- ``admin``: everything.
- ``viewer``: read-only over data, features, models, releases, monitoring, pipelines.
- ``data-engineer``: data.* and features.* (ingest, quarantine, views, training sets),
  plus the reads.
- ``data-scientist``: reads, features.build, model.train/alias/export, pipeline.run.
- ``ml-engineer``: model.* (train, deploy, alias, export, predict), release.*,
  monitor.*, pipeline.*, decision.read/prune, and the data and feature reads.
- ``platform-engineer``: runs the box: home.check, keys.rotate, selftest.run,
  backup.*, token.manage (tokens no stronger than its own role), audit
  read/checkpoint/export, monitoring, pipelines and model reads. No user management.
- ``compliance-officer``: audit.*, consent.*, subject.*, review.*, compliance.read,
  decision.read, and the model and monitoring reads.
- ``scheduler`` (internal, no user holds it): what scheduled pipelines, monitoring
  passes, checkpoints, backups and pruning need; no user, token or key management.

Principals: a signed-in user (``user``) or an API token (``token``) carries its role,
and a token may be scoped to some models (``models``): ``require(actor, perm,
model=NAME)`` then refuses any other model. The CLI's local operator (``cli``) holds
the master key and can read every store anyway, so it is ``admin`` unless it acts as a
named user (``falaj --as USER``); ``system``, ``test`` and ``bench`` are ``admin``;
``scheduler`` is the scheduler role.
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


def _having(*prefixes: str) -> frozenset[str]:
    """The permissions named exactly, or all of a family by ``"family.*"``."""
    out = set()
    for p in prefixes:
        family = p[:-1] if p.endswith(".*") else None
        found = [q for q in PERMISSIONS if (q.startswith(family) if family else q == p)]
        if not found:
            raise KeyError(f"role matrix names unknown permission {p!r}")
        out.update(found)
    return frozenset(out)


READS = ("data.read", "features.read", "model.read", "release.read", "monitor.read",
         "pipeline.read")  # fmt: skip

# role -> the permissions it holds: the one matrix the service layer and the web enforce
# fmt: off
ROLES: dict[str, frozenset[str]] = {
    "admin": frozenset(PERMISSIONS),
    "viewer": _having(*READS),
    "data-engineer": _having(*READS, "data.*", "features.*"),
    "data-scientist": _having(*READS, "features.build", "model.train", "model.alias",
                              "model.export", "pipeline.run", "decision.read"),
    "ml-engineer": _having(*READS, "model.*", "release.*", "monitor.*", "pipeline.*",
                           "decision.read", "decision.prune"),
    "platform-engineer": _having(*READS, "home.check", "keys.rotate", "selftest.run",
                                 "backup.*", "token.manage", "audit.read", "audit.checkpoint",
                                 "audit.export", "monitor.configure"),
    "compliance-officer": _having("audit.*", "consent.*", "subject.*", "review.*",
                                  "compliance.read", "decision.read", "model.read",
                                  "monitor.read"),
    # internal: scheduled pipelines (ingest, views, training sets, training, releases),
    # monitoring passes, audit checkpoints, backups and decision pruning
    "scheduler": _having(*READS, "home.check", "data.ingest", "features.define",
                         "features.build", "model.train", "model.alias", "model.deploy",
                         "model.predict", "release.*", "monitor.*", "pipeline.*",
                         "decision.read", "decision.prune", "audit.read", "audit.checkpoint",
                         "backup.create"),
}
# fmt: on
USER_ROLES = tuple(r for r in ROLES if r != "scheduler")  # the roles a user or token may hold

# the role of a principal that is not a user or a token
KIND_ROLES = {"cli": "admin", "system": "admin", "test": "admin", "bench": "admin",
              "scheduler": "scheduler"}  # fmt: skip


@dataclass(frozen=True)
class Actor:
    """Who did it: a user, an API token, the scheduler or the CLI's local operator.

    ``role`` is the role it acts with (left empty: the role of its kind, ``KIND_ROLES``);
    ``models``, for a scoped token, the only models it may name."""

    kind: str
    name: str
    role: str = ""
    models: tuple[str, ...] | None = None

    def __str__(self) -> str:
        return f"{self.kind}:{self.name}"

    @property
    def effective_role(self) -> str | None:
        return self.role or KIND_ROLES.get(self.kind)

    def can(self, permission: str, model: str | None = None) -> bool:
        role = self.effective_role
        if role is None or permission not in ROLES.get(role, ()):
            return False
        return model is None or self.models is None or model in self.models


class Forbidden(FalajError):
    status = 403


class Unauthenticated(FalajError):
    """No valid credential: sign in, or send ``Authorization: Bearer <token>``."""

    status = 401


def require(actor: Actor, permission: str, model: str | None = None) -> None:
    """Allow ``actor`` to use ``permission`` (on ``model``, when one is named) or raise
    ``Forbidden``."""
    if permission not in PERMISSIONS:
        raise KeyError(f"unknown permission {permission!r}")  # a programming error
    if not isinstance(actor, Actor) or actor.kind not in ACTOR_KINDS:
        raise Forbidden(f"{permission}: no known actor given ({actor!r})")
    role = actor.effective_role
    if role is None or permission not in ROLES.get(role, ()):
        raise Forbidden(
            f"{actor} (role {role or 'none'}) may not {PERMISSIONS[permission]} ({permission})"
        )
    if model is not None and actor.models is not None and model not in actor.models:
        raise Forbidden(f"{actor} is scoped to {', '.join(actor.models)}: not model {model!r}")


SYSTEM = Actor("system", "falaj")
