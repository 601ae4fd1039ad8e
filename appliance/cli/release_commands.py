"""``falaj release ...``: canary, shadow and A/B releases."""
