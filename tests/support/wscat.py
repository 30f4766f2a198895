"""Driving the real `wscat` client (the one the README shows) from tests.

Two ways, both as a user would:

* `wscat_execute(url, frames)`: `wscat -c URL -x FRAME ... -w SECONDS`, which
  sends the frames on connect and prints every frame received, one per line.
* `WscatSession`: an interactive `wscat -c URL` on a pseudo-terminal, typing
  lines and reading the `< {...}` lines it prints, exactly like the README's
  session.

wscat exits as soon as its stdin closes, even with -x, so stdin is kept open
(a pipe or the pty) until it is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pty
import re
import shutil
import signal
import subprocess
import time
from typing import Any

import pytest

_ANSI = re.compile(rb"\x1b\[[0-9;]*[A-Za-z]")


def require_wscat() -> str:
    """The wscat executable; skips the test when missing, unless CI=true (then fails)."""
    path = shutil.which("wscat")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("wscat is not installed (npm install -g wscat), and CI=true")
        pytest.skip("wscat is not installed (npm install -g wscat)")
    return path


_RECEIVED = re.compile(r"(?:^|\s)<\s*(\{.*\})\s*$")
"""An interactive wscat prints received frames as `< {...}`, possibly after the `> ` prompt."""


def json_lines(text: str, interactive: bool = False) -> list[dict[str, Any]]:
    """The JSON frames wscat printed in `text`.

    Args:
        text: wscat's output without terminal escapes.
        interactive: the output of an interactive session, where received
            frames are marked `< ` and the echo of typed lines must be skipped.
    """
    frames = []
    for line in text.splitlines():
        if interactive:
            match = _RECEIVED.search(line)
            if match is None:
                continue
            line = match.group(1)
        line = line.strip()
        if line.startswith("{"):
            with contextlib.suppress(json.JSONDecodeError):
                frames.append(json.loads(line))
    return frames


async def wscat_execute(
    url: str, frames: list[dict[str, Any]], wait_seconds: float = 1.5, deadline: float = 20.0
) -> list[dict[str, Any]]:
    """Run `wscat -c URL -x F1 -x F2 ... -w WAIT` and return the frames it printed."""
    argv = [require_wscat(), "-c", url, "--no-color", "-w", f"{wait_seconds:g}"]
    for frame in frames:
        argv += ["-x", json.dumps(frame, separators=(",", ":"))]
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE,  # kept open: wscat quits when stdin ends
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        async with asyncio.timeout(deadline):
            assert proc.stdout is not None
            out = await proc.stdout.read()
            await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, f"wscat exited {proc.returncode}: {out!r}"
    return json_lines(out.decode(errors="replace"))


class WscatSession:
    """An interactive `wscat -c URL` on a pseudo-terminal."""

    def __init__(self, url: str) -> None:
        """Start wscat connected to `url`; call wait_connected() next."""
        self.output = b""
        master, slave = pty.openpty()
        self._master = master
        self.proc = subprocess.Popen(
            [require_wscat(), "-c", url],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
        )
        os.close(slave)
        os.set_blocking(master, False)

    def _pump(self) -> None:
        """Move whatever wscat printed into self.output."""
        while True:
            try:
                chunk = os.read(self._master, 65536)
            except (BlockingIOError, OSError):
                return
            if not chunk:
                return
            self.output += chunk

    @property
    def text(self) -> str:
        """Everything printed so far, without colours and cursor movement."""
        self._pump()
        return _ANSI.sub(b"", self.output).replace(b"\r", b"").decode(errors="replace")

    def frames(self) -> list[dict[str, Any]]:
        """Every `< {...}` frame printed so far."""
        return json_lines(self.text, interactive=True)

    async def wait_text(self, needle: str, timeout: float = 10.0) -> None:
        """Wait until `needle` appears in the output."""
        deadline = time.monotonic() + timeout
        while needle not in self.text:
            if time.monotonic() >= deadline or self.proc.poll() is not None:
                raise AssertionError(f"wscat never printed {needle!r}; output:\n{self.text}")
            await asyncio.sleep(0.02)

    async def wait_frame(self, timeout: float = 10.0, **fields: Any) -> dict[str, Any]:
        """Wait for a printed frame whose fields include `fields`, and return it."""
        deadline = time.monotonic() + timeout
        while True:
            for frame in self.frames():
                if all(frame.get(k) == v for k, v in fields.items()):
                    return frame
            if time.monotonic() >= deadline or self.proc.poll() is not None:
                raise AssertionError(f"wscat never printed a frame with {fields}:\n{self.text}")
            await asyncio.sleep(0.02)

    async def wait_connected(self) -> None:
        """Wait for wscat's "Connected" line."""
        await self.wait_text("Connected")

    def type_line(self, line: str | dict[str, Any]) -> None:
        """Type one line (a dict is typed as compact JSON) and press Enter."""
        if isinstance(line, dict):
            line = json.dumps(line, separators=(",", ":"))
        os.write(self._master, line.encode() + b"\r")

    def close(self) -> None:
        """Stop wscat (Ctrl-C, then a kill if needed) and close the terminal."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        os.close(self._master)
