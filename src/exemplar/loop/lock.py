"""The project lock: one process at a time drives the loop or changes the class list."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Self

from filelock import FileLock, Timeout

from exemplar.errors import ProjectError

__all__ = ["project_lock"]


def project_lock(root: Path) -> FileLock:
    """The lock ``exemplar run`` holds on the project folder (non-blocking: raises
    :class:`~exemplar.errors.ProjectError` at once when another process holds it)."""
    return _ProjectLock(root / ".exemplar.lock")


class _ProjectLock(FileLock):
    """A non-blocking lock on the project folder with a clear message when taken."""

    def __init__(self, path: Path) -> None:
        super().__init__(str(path), timeout=0)
        self.info = path.with_name(path.name + ".owner")

    def __enter__(self) -> Self:
        try:
            self.acquire()
        except Timeout:
            owner = self.info.read_text().strip() if self.info.exists() else "unknown"
            raise ProjectError(
                f"another `exemplar run` is driving this project ({owner}); wait for it to "
                "finish or stop it first"
            ) from None
        self.info.write_text(f"pid {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}")
        return self

    def __exit__(self, *args: object) -> None:
        self.info.unlink(missing_ok=True)
        self.release()
