"""Logging: JSON lines with the agreed fields in pods, console at a terminal."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import textwrap
from datetime import datetime
from typing import Any

SCRIPT = textwrap.dedent(
    """
    import logging, sys
    import structlog
    from parley.observability.log import configure, get_logger

    configure("node", "node-1", fmt=sys.argv[1], level="info")
    log = get_logger()
    log.info("started", port=7001)
    log.debug("hidden")
    log.bind(room="general", seq=7).info("committed", role="replica")
    structlog.contextvars.bind_contextvars(room="random")
    log.warning("slow follower", follower="node-2")
    structlog.contextvars.unbind_contextvars("room")
    try:
        1 / 0
    except ZeroDivisionError:
        log.exception("failed")
    logging.getLogger("grpc").warning("from stdlib %s", "logging")
    logging.getLogger("grpc").info("stdlib info is below the library level")
    """
)


def _run(fmt: str) -> list[dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, fmt],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout == ""
    return [json.loads(line) for line in done.stderr.splitlines()]


def test_json_lines_carry_the_agreed_fields() -> None:
    """Every line is a JSON object with timestamp, level, role and node_id."""
    lines = _run("json")
    assert [line["event"] for line in lines] == [
        "started",
        "committed",
        "slow follower",
        "failed",
        "from stdlib logging",
    ]
    for line in lines:
        assert line["role"] == "node"
        assert line["node_id"] == "node-1"
        assert line["level"] in {"info", "warning", "error"}
        stamp = datetime.fromisoformat(line["timestamp"])
        assert stamp.utcoffset() is not None and stamp.utcoffset().total_seconds() == 0
    started, committed, slow, failed, stdlib = lines
    assert started["port"] == 7001 and started["level"] == "info"
    assert committed["room"] == "general" and committed["seq"] == 7
    assert committed["event_role"] == "replica"  # the process's role wins the key
    assert slow["room"] == "random" and slow["level"] == "warning"
    assert "room" not in failed
    assert failed["level"] == "error" and "ZeroDivisionError" in failed["exception"]
    assert stdlib["logger"] == "grpc" and stdlib["level"] == "warning"


def test_auto_is_json_when_stderr_is_not_a_terminal() -> None:
    """fmt="auto" writes JSON lines when stderr is a pipe, as in a pod."""
    lines = _run("auto")
    assert lines[0]["event"] == "started" and lines[0]["node_id"] == "node-1"


def test_auto_is_console_at_a_terminal() -> None:
    """fmt="auto" writes readable console lines when stderr is a terminal."""
    leader, follower = pty.openpty()
    output = b""
    try:
        child = subprocess.Popen(
            [sys.executable, "-c", SCRIPT, "auto"], stdout=subprocess.DEVNULL, stderr=follower
        )
        os.close(follower)
        # Read while it runs: a full terminal buffer would block the child.
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the child closed its side and all is read
                break
            if not chunk:
                break
            output += chunk
        assert child.wait(timeout=60) == 0
    finally:
        os.close(leader)
    text = output.decode(errors="replace")
    assert "started" in text and "committed" in text and "node-1" in text
    assert not text.lstrip().startswith("{")
