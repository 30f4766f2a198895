"""The C allocator's settings for a long-running server process.

gRPC's threads each get a glibc malloc arena of their own (up to eight per
core), and memory freed in one arena is not reused by another: after a burst
of calls (10,000 rooms created) a node's resident size stayed a third above
what its objects need. Two arenas keep the burst's free memory where the
next burst reuses it. Must run before any thread starts; a C library other
than glibc (musl in Alpine images) has its own allocator and is left as is.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_ARENA_MAX = -8
"""mallopt's parameter number for the arena limit (glibc's malloc.h)."""

ARENAS = 2


def limit_arenas() -> bool:
    """Cap glibc's malloc arenas at `ARENAS`, unless MALLOC_ARENA_MAX says
    otherwise. Returns True when the cap is in force."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return True  # glibc read it at start-up: the operator's choice
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_ARENA_MAX, ARENAS))
