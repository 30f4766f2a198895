"""What a message looks like after its edits, unsends and reactions.

Those are entries of their own (ordered, replicated, replayed by `since`
like any other); `history` answers with each message as it stands now, so
it folds them in here, in log order: the last edit's text wins, an unsent
message stays unsent (a later edit cannot bring it back), a reaction is one
per user and emoji, in the order given.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from parley.room.entries import EntryKind, LogEntry


@dataclass(slots=True)
class Folded:
    """A message as it stands after the entries about it."""

    text: str
    edited: bool = False
    unsent: bool = False
    # emoji -> users, both in the order they were first given
    reactions: dict[str, list[str]] = field(default_factory=dict)


def fold(message: LogEntry, annotations: Iterable[LogEntry]) -> Folded:
    """`message` with the annotations about it applied, in their order."""
    folded = Folded(message.text)
    for entry in annotations:
        if entry.target != message.seq or folded.unsent:
            continue
        kind = entry.kind
        if kind is EntryKind.EDIT:
            folded.text, folded.edited = entry.text, True
        elif kind is EntryKind.UNSEND:
            folded.text, folded.unsent = "", True
            folded.reactions = {}
        elif kind is EntryKind.REACT:
            users = folded.reactions.setdefault(entry.text, [])
            if entry.user not in users:
                users.append(entry.user)
        elif kind is EntryKind.UNREACT:
            users = folded.reactions.get(entry.text, [])
            if entry.user in users:
                users.remove(entry.user)
                if not users:
                    del folded.reactions[entry.text]
    return folded
