"""`falaj users` and `falaj tokens`: accounts, roles, enrolment and API tokens."""

from __future__ import annotations
