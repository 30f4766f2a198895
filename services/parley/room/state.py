"""Room state as the log says it: owner, members, last seq, de-duplication."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from parley.room.entries import EntryKind, LogEntry

# Retries come seconds after the first try; remembering the last 100k message
# ids per room bounds memory while covering any realistic retry window.
DEDUPE_WINDOW = 100_000


@dataclass(slots=True)
class RoomState:
    """The state of a room after applying a prefix of its log, in order."""

    exists: bool = False
    owner: str = ""
    members: set[str] = field(default_factory=set)
    last_seq: int = -1  # -1: no visible entry yet (the create entry takes 0)
    last_ts_ms: int = 0
    # the replica group, as recorded by the create entry or the last move
    # (placement order); during a move, `joining` is the group it moves to
    replicas: tuple[str, ...] = ()
    joining: tuple[str, ...] = ()
    # index of the entry that set the group (create, move joint or done)
    config_index: int = 0
    # the create entry's id: tells a room from an earlier one of the same name
    incarnation: str = ""
    # index of the delete entry (0: not deleted)
    deleted_index: int = 0
    # (user, client_msg_id) -> seq of the stored message
    dedupe: OrderedDict[tuple[str, str], int] = field(default_factory=OrderedDict)

    def next_seq(self) -> int:
        """The seq the next visible entry gets."""
        return self.last_seq + 1

    def apply(self, entry: LogEntry) -> None:
        """Advance the state by one entry (the next one of the log)."""
        if entry.visible:
            self.last_seq = entry.seq
            self.last_ts_ms = entry.ts_ms
        kind = entry.kind
        if kind is EntryKind.MESSAGE:
            if entry.client_msg_id:
                self.dedupe[(entry.user, entry.client_msg_id)] = entry.seq
                if len(self.dedupe) > DEDUPE_WINDOW:
                    self.dedupe.popitem(last=False)
        elif kind is EntryKind.JOIN:
            self.members.add(entry.user)
        elif kind is EntryKind.LEAVE:
            self.members.discard(entry.user)
        elif kind is EntryKind.CREATE:
            self.exists = True
            self.owner = entry.user
            self.members = {entry.user}
            self.incarnation = entry.client_msg_id
            if entry.text:
                self.replicas = tuple(entry.text.split(","))
                self.config_index = entry.index
        elif kind is EntryKind.DELETE:
            self.exists = False
            self.members = set()
            self.deleted_index = entry.index
        elif kind is EntryKind.MOVE_JOINT:
            self.joining = tuple(entry.text.split(","))
            self.config_index = entry.index
        elif kind is EntryKind.MOVE_DONE:
            self.replicas = tuple(entry.text.split(","))
            self.joining = ()
            self.config_index = entry.index

    @classmethod
    def from_entries(cls, entries: list[LogEntry]) -> RoomState:
        """The state after applying every entry in order."""
        state = cls()
        for entry in entries:
            state.apply(entry)
        return state
