"""Local Functions host: runs ``function_app.py`` unchanged with host.json semantics (see host.py, __main__.py)."""

from localdev.funchost.config import HostError
from localdev.funchost.host import DUPLICATE_KNOB, FunctionsHost

__all__ = ["DUPLICATE_KNOB", "FunctionsHost", "HostError"]
