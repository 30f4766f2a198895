"""The event loop the node and gateway run on.

uvloop when it is installed (the default install has it) and
`PARLEY_LOOP` does not say `asyncio`: see docs/benchmarks.md for what it
changes.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from typing import Any


def run(main: Coroutine[Any, Any, None]) -> None:
    """Run `main` to completion on a new event loop."""
    if os.environ.get("PARLEY_LOOP", "uvloop") != "asyncio":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            uvloop.run(main)
            return
    asyncio.run(main)
