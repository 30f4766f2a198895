"""The event loop the node and gateway run on.

uvloop when it is installed (the default install has it) and
`PARLEY_LOOP` does not say `asyncio`: see docs/benchmarks.md for what it
changes.
"""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import Coroutine
from typing import Any


def run(main: Coroutine[Any, Any, None]) -> None:
    """Run `main` to completion on a new event loop."""
    # Everything imported so far (gRPC, protobuf descriptors, the Kubernetes
    # client: hundreds of thousands of objects) lives as long as the process.
    # Frozen, the collector's full passes, which a busy room's long-lived
    # log entries trigger every few seconds, stop walking it: +12 % acked
    # messages/s in the pipelining benchmark (docs/benchmarks.md).
    gc.freeze()
    if os.environ.get("PARLEY_LOOP", "uvloop") != "asyncio":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            uvloop.run(main)
            return
    asyncio.run(main)
