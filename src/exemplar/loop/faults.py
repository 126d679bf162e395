"""Fault injection for crash-safety tests: die with SIGKILL at a named point.

``EXEMPLAR_CRASH_AT=<point>`` makes the process kill itself (``kill -9``, no cleanup, no
``finally``) when it reaches that point, so tests can crash ``exemplar run`` at every
state and inside long steps, then check that a resumed run ends exactly like an
uninterrupted one. Points are named ``enter:<state>:<cycle>``, ``train:<cycle>:saved``,
``score:<cycle>:saved`` and ``label:<cycle>:<k>`` (after the k-th label is committed).
With the variable unset this is a dictionary lookup and nothing else.
"""

from __future__ import annotations

import os
import signal

__all__ = ["crash_point"]

ENV = "EXEMPLAR_CRASH_AT"


def crash_point(name: str) -> None:
    """SIGKILL this process if ``EXEMPLAR_CRASH_AT`` names this point."""
    if os.environ.get(ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
