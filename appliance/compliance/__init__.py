"""Compliance: consent, data-subject requests, the review queue and residency (UAE PDPL,
GDPR). Lands with the trust issue."""
