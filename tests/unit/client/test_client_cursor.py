"""RoomCursor: the I/O-free dedupe, ordering and gap rules."""

from __future__ import annotations

from parley.client.cursor import RoomCursor, Verdict


def test_first_entry_is_delivered_whatever_its_seq() -> None:
    """With nothing delivered yet, any seq is accepted as the start."""
    assert RoomCursor().classify(17) is Verdict.DELIVER


def test_next_seq_delivers_and_older_is_duplicate() -> None:
    """last+1 is delivered; anything at or below last is a duplicate."""
    cursor = RoomCursor(last=5)
    assert cursor.classify(6) is Verdict.DELIVER
    assert cursor.classify(5) is Verdict.DUPLICATE
    assert cursor.classify(1) is Verdict.DUPLICATE


def test_jump_is_a_gap_with_the_missing_range() -> None:
    """A seq beyond last+1 is a gap; missing() names the hole."""
    cursor = RoomCursor(last=5)
    assert cursor.classify(9) is Verdict.GAP
    cursor.hold(9, {"seq": 9})
    assert cursor.missing() == (6, 8)


def test_release_drains_held_entries_in_order_once_the_hole_fills() -> None:
    """After the hole is filled, held entries come out in seq order."""
    cursor = RoomCursor(last=5)
    cursor.hold(8, {"seq": 8})
    cursor.hold(7, {"seq": 7})
    assert cursor.release() == []
    cursor.advance(6)
    assert [f["seq"] for f in cursor.release()] == [7, 8]
    assert cursor.last == 8 and not cursor.held


def test_release_discards_held_entries_already_filled() -> None:
    """A held entry that the resync delivered too is not released twice."""
    cursor = RoomCursor(last=5)
    cursor.hold(7, {"seq": 7})
    cursor.advance(6)
    cursor.advance(7)
    assert cursor.release() == []
    assert not cursor.held


def test_skip_to_held_gives_up_on_the_hole() -> None:
    """skip_to_held moves last so the first held entry is next."""
    cursor = RoomCursor(last=2)
    cursor.hold(6, {"seq": 6})
    assert cursor.skip_to_held() == 6
    assert [f["seq"] for f in cursor.release()] == [6]
