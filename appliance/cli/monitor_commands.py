"""``falaj monitor ...``: drift, live metrics and alerts."""
