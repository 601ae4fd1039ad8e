"""Releases: canary, shadow and A/B beside blue/green, with promotion and rollback by
hand or by an automatic policy. Lands with the release and monitoring issue."""
