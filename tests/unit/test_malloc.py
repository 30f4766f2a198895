"""The node and gateway cap glibc's malloc arenas before gRPC starts threads."""

from __future__ import annotations

import platform

import pytest
from parley import malloc


def test_the_cap_is_set_on_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    """On glibc mallopt accepts the arena cap; another C library is left as is."""
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert malloc.limit_arenas() == (platform.libc_ver()[0] == "glibc")


def test_an_operators_setting_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    """MALLOC_ARENA_MAX in the environment (read by glibc at start) is left alone."""
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    calls: list[object] = []
    monkeypatch.setattr(malloc.ctypes, "CDLL", lambda *a: calls.append(a))
    assert malloc.limit_arenas()
    assert calls == []


def test_no_c_library_found_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where no C library can be found, the process runs with its defaults."""
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    monkeypatch.setattr(malloc.ctypes.util, "find_library", lambda name: None)
    assert not malloc.limit_arenas()
