"""Fixture app that fails at import time (the stack manager must report the host's crash)."""

raise RuntimeError("fixture app deliberately broken at import")
