"""A small filesystem a test makes and fills: the disk-full fault.

`SmallFilesystem(path, size)` mounts a tmpfs of `size` bytes at `path` (root
only); `fill()` writes a filler file until the filesystem has no room left,
`free()` removes it. Tests that cannot mount skip, except under CI=true,
where they fail.

    with SmallFilesystem(tmp_path / "disk", 8 * 2**20) as disk:
        ...  # a node's data directory inside disk.path
        disk.fill()
        disk.free()
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from types import TracebackType

import pytest


class SmallFilesystem:
    """A tmpfs of a fixed size mounted at `path` for the test's lifetime."""

    def __init__(self, path: Path, size: int) -> None:
        self.path = Path(path)
        self.size = size
        self.filler = self.path / "filler"

    def __enter__(self) -> SmallFilesystem:
        self.path.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={self.size}", "tmpfs", str(self.path)],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            reason = f"cannot mount a tmpfs (needs root): {result.stderr.strip()}"
            if os.environ.get("CI", "").lower() == "true":
                pytest.fail(reason)
            pytest.skip(reason)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        subprocess.run(["umount", "-l", str(self.path)], capture_output=True, check=False)

    def fill(self) -> int:
        """Take every free byte; returns how many the filler took."""
        written = 0
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            # big writes first, then ever smaller ones for the last blocks
            for size in (65536, 4096, 512, 64, 1):
                chunk = b"\0" * size
                while True:
                    try:
                        written += os.write(fd, chunk)
                    except OSError:
                        break
        finally:
            os.close(fd)
        return written

    def free(self) -> None:
        """Give the space back."""
        self.filler.unlink(missing_ok=True)
