"""nightshift-tasks: spend leftover AI-agent tokens overnight on repository maintenance."""

from __future__ import annotations

__version__ = "0.1.0"
