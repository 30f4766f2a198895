"""The fault suite's history checker catches doctored histories and passes clean ones."""

from __future__ import annotations

import copy
from pathlib import Path

from support.checker import (
    Delivery,
    HistEntry,
    History,
    Send,
    Subscription,
    check,
    longest_ack_gap,
    recovery,
)

ROOMS = ("r0", "r1")
USERS = ("alice", "bob", "carol")


def clean_history(messages: int = 6) -> History:
    """Three users in two rooms: joins at seqs 1-3, then `messages` acked messages each room."""
    history = History()
    for room in ROOMS:
        entries: list[HistEntry] = []
        for user in USERS:
            entries.append(HistEntry(seq=len(entries) + 1, kind="join", sender=user))
        for i in range(messages):
            user = USERS[i % len(USERS)]
            text = f"{user}/{room}/{i}"
            seq = len(entries) + 1
            entries.append(HistEntry(seq=seq, kind="message", sender=user, text=text))
            t = 10.0 + i
            history.sends.append(
                Send(
                    room=room,
                    client=user,
                    msg_id=f"m{i}",
                    text=text,
                    t_start=t,
                    outcome="ok",
                    seq=seq,
                    t_end=t + 0.01,
                )
            )
        history.histories.setdefault("fresh", {})[room] = entries
        for user in USERS:
            history.subscriptions.append(Subscription(subscriber=user, room=room, from_seq=1))
            for e in entries:
                history.deliveries.append(
                    Delivery(
                        subscriber=user,
                        room=room,
                        seq=e.seq,
                        kind=e.kind,
                        sender=e.sender,
                        text=e.text,
                        t=20.0 + e.seq,
                    )
                )
    return history


def stream(history: History, user: str, room: str) -> list[Delivery]:
    """The deliveries `user` got in `room`, in order (the same objects)."""
    return [d for d in history.deliveries if d.subscriber == user and d.room == room]


def test_clean_history_passes() -> None:
    """A consistent history has no findings and the right totals."""
    report = check(clean_history())
    assert report.ok, report.details()
    assert (report.sent, report.acked, report.delivered, report.stored) == (12, 12, 54, 18)


def test_unacked_sends_may_or_may_not_be_stored() -> None:
    """An unknown-outcome send that was stored, or not stored, is no anomaly."""
    history = clean_history()
    history.sends.append(Send(room="r0", client="bob", msg_id="lost-reply", text="x", t_start=1.0))
    stored = history.sends[0]
    stored.outcome, stored.seq, stored.t_end = "unknown", None, None
    assert check(history).ok


def test_dropped_acked_message_is_lost() -> None:
    """An acked message missing from the final history and from one subscriber is lost."""
    history = clean_history()
    send = history.sends[2]
    history.histories["fresh"]["r0"] = [
        e for e in history.histories["fresh"]["r0"] if e.seq != send.seq
    ]
    history.deliveries.remove(next(d for d in stream(history, "bob", "r0") if d.seq == send.seq))
    report = check(history)
    assert len(report.lost) == 2, report.details()
    assert any("history fresh" in item for item in report.lost)
    assert any("never delivered to bob" in item for item in report.lost)
    assert report.gaps  # the history and bob's stream both have a hole now


def test_message_missing_only_at_one_subscriber_is_lost() -> None:
    """The last acked message never reaching one full subscriber is lost (and a short stream)."""
    history = clean_history()
    last = stream(history, "carol", "r1")[-1]
    history.deliveries.remove(last)
    report = check(history)
    assert report.lost == [
        f"r1: {history.sends[-1].client}'s m5 (acked seq {last.seq}) never delivered to carol"
    ]
    assert report.gaps == [
        f"carol in r1: saw up to seq {last.seq - 1}, the room reached {last.seq}"
    ]


def test_delivered_entry_missing_from_history_is_lost() -> None:
    """An entry delivered past the end of the final history (delivered, then gone) is lost."""
    history = clean_history()
    history.sends.append(Send(room="r0", client="bob", msg_id="ghost", text="ghost", t_start=30.0))
    seq = len(history.histories["fresh"]["r0"]) + 1
    history.deliveries.append(
        Delivery(subscriber="alice", room="r0", seq=seq, kind="message", sender="bob", text="ghost")
    )
    report = check(history)
    assert report.lost == [
        f"r0 seq {seq} (message from bob 'ghost') was delivered but history fresh ends at seq "
        f"{seq - 1}"
    ]


def test_incomplete_subscriber_is_not_owed_later_messages() -> None:
    """A subscriber that left early (complete=False) missing the tail is fine."""
    history = clean_history()
    history.deliveries.remove(stream(history, "carol", "r1")[-1])
    for sub in history.subscriptions:
        if sub.subscriber == "carol" and sub.room == "r1":
            sub.complete = False
    assert check(history).ok


def test_duplicate_delivery_is_caught() -> None:
    """The same entry delivered twice to one subscriber is duplicated."""
    history = clean_history()
    again = copy.copy(stream(history, "alice", "r0")[4])
    history.deliveries.append(again)
    report = check(history)
    assert report.duplicated == [
        f"alice in r0: seq {again.seq} (message from {again.sender} {again.text!r}) delivered again"
    ]
    assert not report.lost and not report.divergence


def test_message_stored_twice_is_caught() -> None:
    """A retried send stored under a second seq is duplicated."""
    history = clean_history()
    send = history.sends[0]
    entries = history.histories["fresh"]["r0"]
    entries.append(
        HistEntry(seq=len(entries) + 1, kind="message", sender=send.client, text=send.text)
    )
    for user in USERS:
        history.deliveries.append(
            Delivery(
                subscriber=user,
                room="r0",
                seq=len(entries),
                kind="message",
                sender=send.client,
                text=send.text,
            )
        )
    report = check(history)
    assert len(report.duplicated) == 1, report.details()
    assert report.duplicated[0].startswith(
        f"r0: message from {send.client} {send.text!r} at seqs [{send.seq}, {len(entries)}] in "
    )


def test_resend_with_another_seq_is_caught() -> None:
    """A re-sent acked id answered with a different seq is duplicated; the same seq is fine."""
    history = clean_history()
    history.sends[0].reacks.append(history.sends[0].seq or 0)
    assert check(history).ok
    history.sends[1].reacks.append(99)
    report = check(history)
    assert report.duplicated == [
        f"r0: {history.sends[1].client}'s m1 acked as seq {history.sends[1].seq}, "
        "re-sent and acked as seq 99"
    ]


def test_swapped_deliveries_are_out_of_order() -> None:
    """Two entries swapped in one subscriber's stream are out of order (and a gap)."""
    history = clean_history()
    bob = stream(history, "bob", "r1")
    i, j = history.deliveries.index(bob[4]), history.deliveries.index(bob[5])
    history.deliveries[i], history.deliveries[j] = history.deliveries[j], history.deliveries[i]
    report = check(history)
    assert report.out_of_order == [f"bob in r1: seq {bob[4].seq} after seq {bob[5].seq}"]
    assert report.gaps == [
        f"bob in r1: seq {bob[5].seq} after seq {bob[3].seq} (missing {bob[4].seq}..{bob[4].seq})"
    ]
    assert not report.lost and not report.divergence


def test_gap_in_a_stream_is_caught() -> None:
    """A skipped seq in a stream is a gap, and its acked message is lost to that subscriber."""
    history = clean_history()
    skipped = stream(history, "alice", "r1")[5]
    history.deliveries.remove(skipped)
    report = check(history)
    assert report.gaps == [
        f"alice in r1: seq {skipped.seq + 1} after seq {skipped.seq - 1} "
        f"(missing {skipped.seq}..{skipped.seq})"
    ]
    assert len(report.lost) == 1


def test_gap_at_the_start_of_a_stream_is_caught() -> None:
    """A stream starting after the first seq its subscriber asked for has a gap."""
    history = clean_history()
    history.deliveries.remove(stream(history, "bob", "r0")[0])
    report = check(history)
    assert report.gaps == ["bob in r0: seq 2 after seq 0 (missing 1..1)"]


def test_gap_in_history_is_caught() -> None:
    """A final history with a hole is a gap even if subscribers saw everything."""
    history = clean_history()
    del history.histories["fresh"]["r1"][2]
    report = check(history)
    assert report.gaps == ["history fresh of r1: seqs 1-2,4-9"]


def test_invented_message_is_unexpected() -> None:
    """A delivered and stored message that nobody sent is unexpected."""
    history = clean_history()
    entries = history.histories["fresh"]["r0"]
    seq = len(entries) + 1
    entries.append(HistEntry(seq=seq, kind="message", sender="mallory", text="boo"))
    for user in USERS:
        history.deliveries.append(
            Delivery(
                subscriber=user, room="r0", seq=seq, kind="message", sender="mallory", text="boo"
            )
        )
    report = check(history)
    assert len(report.unexpected) == 4  # three subscribers and the stored entry
    assert f"r0 seqs [{seq}]: message from mallory 'boo' never sent" in report.unexpected


def test_diverging_subscribers_are_caught() -> None:
    """Two subscribers seeing different messages at one seq is divergence."""
    history = clean_history()
    a = stream(history, "alice", "r0")[5]
    b = stream(history, "bob", "r0")[6]
    a.sender, a.text, b_text = b.sender, b.text, b.text
    report = check(history)
    assert len(report.divergence) == 1, report.details()
    assert report.divergence[0].startswith(f"r0 seq {a.seq}:")
    assert b_text in report.divergence[0]
    assert report.duplicated  # alice now has bob's message at two seqs


def test_acked_at_another_seq_is_lost() -> None:
    """An ack whose seq holds another entry in the final history is reported."""
    history = clean_history()
    history.sends[1].seq = history.sends[2].seq
    report = check(history)
    assert any("acked as seq" in item and "stored at" in item for item in report.lost)


def test_history_roundtrips_through_json(tmp_path: Path) -> None:
    """save() and load() keep everything check() needs."""
    history = clean_history()
    history.sends[0].errors.append("unavailable")
    history.save(tmp_path / "h.json")
    loaded = History.load(tmp_path / "h.json")
    assert loaded == history
    assert check(loaded).summary() == check(history).summary()


def test_recovery_and_longest_gap() -> None:
    """Recovery is fault -> first ack of a later send; the longest gap spans missing acks."""
    history = clean_history()
    times = recovery(history, t_fault=12.5, rooms=["r0"])
    assert round(times["r0"] or 0, 3) == 0.51  # the send started at 13.0, acked at 13.01
    assert recovery(history, t_fault=99.0) == {"r0": None, "r1": None}
    only_bob = recovery(history, t_fault=12.5, rooms=["r0"], clients=["bob"])
    assert round(only_bob["r0"] or 0, 3) == 1.51  # bob's first send after 12.5 started at 14.0
    gaps = longest_ack_gap(history, start=10.0, end=20.0)
    assert round(gaps["r0"], 3) == 4.99  # last ack at 15.01, window ends at 20
