"""Falaj's benchmark suite: each kernel against what a user would otherwise use."""
