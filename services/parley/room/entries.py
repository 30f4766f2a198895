"""Log entries of a room: the unit that is ordered, replicated and stored."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class EntryKind(IntEnum):
    """Kinds of log entries; values match `parley.v1.EntryKind`."""

    CREATE = 1
    MESSAGE = 2
    JOIN = 3
    LEAVE = 4
    DELETE = 5
    EPOCH = 6  # written by a new administrator to commit its epoch; never shown
    # a room move by joint consensus (parley.coordination.move); never shown
    MOVE_JOINT = 7  # text: the new group; old and new must both agree from here
    MOVE_DONE = 8  # text: the new group, which alone holds the room from here
    # about the message at `target` (its seq): shown, and folded into that
    # message by `history`
    EDIT = 9  # text: the new text
    UNSEND = 10
    REACT = 11  # text: the emoji
    UNREACT = 12  # text: the emoji
    # never shown (no seq of their own, like epoch entries)
    INVITE = 13  # user: the inviter; text: the invitee
    READ = 14  # user's read marker moves to `target`
    # the archive (PostgreSQL) holds every entry up to seq `target`
    ARCHIVED = 15


ANNOTATION_KINDS = frozenset({EntryKind.EDIT, EntryKind.UNSEND, EntryKind.REACT, EntryKind.UNREACT})
"""Entries about an earlier message (`target`)."""

VISIBLE_KINDS = (
    frozenset(
        {EntryKind.CREATE, EntryKind.MESSAGE, EntryKind.JOIN, EntryKind.LEAVE, EntryKind.DELETE}
    )
    | ANNOTATION_KINDS
)


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One entry of a room's replicated log.

    `index` is the position in the log (from 1) and is what replication
    counts; `seq` is what clients see. Epoch entries take no seq of their own
    (they repeat the previous visible seq), so the seqs clients see rise by
    exactly 1 even across elections.
    """

    index: int
    epoch: int
    kind: EntryKind
    seq: int
    user: str = ""
    text: str = ""
    ts_ms: int = 0
    client_msg_id: str = ""
    target: int = 0  # for edits, unsends and reactions: the message's seq

    @property
    def visible(self) -> bool:
        """True for entries clients see (all but epoch entries)."""
        return self.kind in VISIBLE_KINDS


@dataclass(slots=True)
class HardState:
    """What a replica must remember across restarts besides its log."""

    epoch: int = 0
    voted_for: str = ""
    # a copy made from another node's log (a learner, a wiped replica) takes
    # part in elections only once its log holds the group entry at this
    # index: the groups before it, in the prefix it replays, are history
    config_floor: int = 0
