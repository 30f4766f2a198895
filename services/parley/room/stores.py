"""Choosing a LogStore backend from the node's `--store` flag."""

from __future__ import annotations

from pathlib import Path

from parley.room.memory_store import MemoryLogStore
from parley.room.sqlite_store import SqliteLogStore
from parley.room.store import LogStore

STORE_KINDS = ("sqlite", "memory")
"""Accepted values of `--store`; the first is the default."""


def open_store(kind: str, data_dir: str, node_id: str) -> LogStore:
    """Open the node's LogStore.

    Args:
        kind: `"memory"` (nothing survives a restart) or `"sqlite"`.
        data_dir: Directory for the sqlite file; created if missing. Unused
            for memory.
        node_id: The node's stable id; the sqlite file is
            `<data_dir>/<node_id>.db`, so nodes sharing a directory (as with
            `parley up`) each get their own file.

    Returns:
        The opened store; the caller closes it.

    Raises:
        ValueError: If `kind` is unknown, or `node_id` cannot be a file name.
    """
    if kind == "memory":
        return MemoryLogStore()
    if kind == "sqlite":
        # The id becomes a file name: refuse anything that would escape data_dir.
        if not node_id or node_id in {".", ".."} or "/" in node_id or "\\" in node_id:
            raise ValueError(f"node id {node_id!r} cannot be used as a file name")
        return SqliteLogStore(Path(data_dir) / f"{node_id}.db")
    raise ValueError(f"unknown store {kind!r}; expected one of {', '.join(STORE_KINDS)}")
