"""The room engine's contract: nothing that depends on a write leaves before it.

Each test drives the production `RoomEngine` (through `sim.Cluster`, which runs
the node's Ready loop, or directly) and holds a node's store write, then looks
at what reached the network while the write was not durable.
"""

from __future__ import annotations

import pytest
from parley._generated import peer_service_pb2 as peer_pb
from parley.room.engine import TOMBSTONE, RoomEngine
from parley.room.entries import HardState
from parley.room.records import RoomRecord
from parley.room.replica import Role
from parley.room.state import RoomState
from sim import (
    APPEND,
    APPEND_RESULT,
    VOTE,
    VOTE_RESULT,
    Cluster,
    InvariantViolation,
    Msg,
    one_room,
    start,
)

ROOM = "r0"
QUIET_MS = 3000


def sent_by(c: Cluster, node: str, kind: str) -> list[Msg]:
    return [m for m in c.inflight if m.src == node and m.kind == kind]


def test_vote_requests_wait_for_the_new_epoch_to_be_durable() -> None:
    """A campaign's vote requests leave only once its epoch and self-vote are on disk."""
    c = one_room()
    start(c, "a")
    c.advance(QUIET_MS)
    c.hold_writes("b")
    c.campaign("b")
    assert c.replica("b").epoch == 2
    assert c.nodes["b"].writing is not None  # the epoch write is submitted...
    assert c.nodes["b"].store.load()[ROOM].hard == HardState(1, "")  # ...not durable
    assert sent_by(c, "b", VOTE) == []
    c.release_writes("b")
    assert c.nodes["b"].store.load()[ROOM].hard == HardState(2, "b")
    votes = sent_by(c, "b", VOTE)
    assert {m.dst for m in votes} == {"a", "c"} and all(m.body.epoch == 2 for m in votes)


def test_a_granted_vote_waits_for_the_vote_to_be_durable() -> None:
    """A voter answers only once its vote is on disk: a crash before loses the answer."""
    c = one_room()
    start(c, "a")
    c.advance(QUIET_MS)
    c.campaign("b")
    c.hold_writes("c")
    c.deliver_where(lambda m: m.kind == VOTE and m.dst == "c")
    assert c.replica("c").voted_for == "b"
    assert sent_by(c, "c", VOTE_RESULT) == []
    c.crash("c")  # killed in the window: no answer ever left, and no vote is on disk
    c.restart("c")
    assert (c.replica("c").epoch, c.replica("c").voted_for) == (1, "")
    c.stabilize()
    assert c.checker.admins.get((ROOM, 2)) in (None, "b")


def test_append_answers_wait_for_the_entries_to_be_durable() -> None:
    """A follower acknowledges entries only once they are on disk."""
    c = one_room()
    start(c, "a")
    c.publish("a", ROOM, "u", "m1", "m1")
    c.hold_writes("b")
    c.deliver_where(lambda m: m.kind == APPEND and m.dst == "b")
    assert c.replica("b").last_index > c.nodes["b"].store.load()[ROOM].entries[-1].index
    assert sent_by(c, "b", APPEND_RESULT) == []
    c.release_writes("b")
    (answer,) = sent_by(c, "b", APPEND_RESULT)
    assert answer.body.success and answer.body.match_index == c.replica("a").last_index


def test_no_message_of_a_new_epoch_leaves_before_the_epoch_is_durable() -> None:
    """Held through a whole election: nothing of epoch 2 leaves b until its write is done.

    b's detector sees a down, so b runs the whole pre-vote and campaign; while
    the campaign's write is held, b sends no vote request, no append and no
    heartbeat of epoch 2, whatever else happens (ticks, a's appends, time).
    """
    c = one_room()
    start(c, "a")
    c.crash("a")
    c.advance(QUIET_MS)
    c.tick("b")  # pre-vote: asks c, changes nothing, writes nothing
    assert c.replica("b").role is Role.PRE_CANDIDATE
    assert c.nodes["b"].writing is None
    c.hold_writes("b")
    c.deliver_where(lambda m: m.kind == VOTE and m.dst == "c")
    c.deliver_where(lambda m: m.kind == VOTE_RESULT)  # pre-vote won: real campaign
    assert (c.replica("b").role, c.replica("b").epoch) == (Role.CANDIDATE, 2)
    for _ in range(5):
        c.advance(300)
        c.tick("b")
        sent = [m for m in c.inflight if m.src == "b" and m.body.epoch >= 2]
        assert [m for m in sent if not (m.kind == VOTE and m.body.pre)] == []
    c.release_writes("b")
    c.stabilize()
    assert c.replica("b").serving and c.replica("b").epoch == 2


def test_engine_ready_classifies_what_may_leave_early() -> None:
    """Only appends of an epoch already on disk are eager; everything else waits."""
    record = RoomRecord(ROOM, HardState(3, "b"), [])
    engine = RoomEngine("a")
    engine.add(ROOM, ["a", "b", "c"], record, 0)
    engine.campaign(ROOM, 0)
    ready = engine.ready(0)
    assert [w.hard for w in ready.writes] == [HardState(4, "a")]
    assert ready.eager == []
    assert {m.to for m in ready.messages} == {"b", "c"}
    engine.advance(ready)
    engine.step_vote_result("b", peer_pb.RoomVoteResult(room=ROOM, epoch=4, granted=True), 1)
    ready = engine.ready(1)
    # administrator of epoch 4, which is durable: its epoch entry may go out
    # while it writes it itself; it counts itself only after advance()
    assert engine.rooms[ROOM].role is Role.ADMINISTRATOR
    assert {m.to for m in ready.eager} == {"b", "c"}
    assert all(m.body.epoch == 4 for m in ready.eager)
    assert ready.writes and ready.writes[0].hard is None
    assert engine.rooms[ROOM].persisted_index == 0
    engine.advance(ready)
    assert engine.rooms[ROOM].persisted_index == 1


def test_unsafe_switch_sends_before_persisting() -> None:
    """The test-only switch the simulation uses to show its teeth does what it says."""
    engine = RoomEngine("a")
    engine.add(ROOM, ["a", "b", "c"], None, 0)
    engine.unsafe_send_before_persist = True
    engine.campaign(ROOM, 0)
    ready = engine.ready(0)
    assert ready.writes and {m.to for m in ready.eager} == {"b", "c"}


def test_a_vote_sent_before_it_is_durable_elects_two_administrators() -> None:
    """What the rule prevents, shown with the planted bug: c grants b a vote,
    dies before the vote is on disk, comes back and grants a too, in the same
    epoch. Two administrators of epoch 2 write different entries at one
    (index, epoch): the Log Matching break the engine's ordering rules out."""
    c = one_room()
    start(c, "a")
    c.checker.check_durable_sends = False  # let the consequence show
    c.send_before_persist()
    c.advance(QUIET_MS)
    c.hold_writes("c")
    c.campaign("b")  # epoch 2
    c.deliver_where(lambda m: m.kind == VOTE and m.src == "b" and m.dst == "c")
    assert [m.body.granted for m in sent_by(c, "c", VOTE_RESULT)] == [True]
    c.crash("c")  # the granted vote left; it never reached c's disk
    c.restart("c")
    c.crash("a")
    c.restart("a")  # a is at epoch 1: its next campaign is epoch 2 too
    c.drop(lambda m: m.dst == "a")
    c.campaign("a")
    assert c.replica("a").epoch == 2
    c.deliver_where(lambda m: m.src == "a")
    c.deliver_where(lambda m: m.dst == "a")  # c's second grant: a wins epoch 2
    assert c.replica("a").role is Role.ADMINISTRATOR
    two = r"two administrators in epoch 2|two entries at index/epoch \(2, 2\)"
    with pytest.raises(InvariantViolation, match=two):
        c.stabilize()  # c's first grant reaches b


def test_a_node_without_the_room_never_votes_or_starts_a_copy() -> None:
    """What made scaling 3 -> 5 split rooms: a new node asked for its vote, or
    sent an append by another node without the room, created an empty copy
    (which then voted, and campaigned). Now it answers and keeps nothing."""
    engine = RoomEngine("d")
    engine.step_vote("e", peer_pb.RoomVote(room="r0", epoch=2, last_index=0, last_epoch=0), 1, 0)
    engine.step_vote(
        "e", peer_pb.RoomVote(room="r0", epoch=2, last_index=0, last_epoch=0, pre=True), 2, 0
    )
    engine.step_append(
        "e", peer_pb.RoomAppend(room="r0", epoch=2, prev_index=0, members=["e", "c"]), 3, 0
    )
    engine.step_append("e", peer_pb.RoomAppend(room="r0", epoch=2, prev_index=4), 4, 0)
    ready = engine.ready(0)
    assert engine.rooms == {} and ready.writes == []
    votes = [m.body for m in ready.messages if isinstance(m.body, peer_pb.RoomVoteResult)]
    assert [v.granted for v in votes] == [False, False]
    appends = [m.body for m in ready.messages if isinstance(m.body, peer_pb.RoomAppendResult)]
    assert [(a.success, a.unknown, a.retry_index) for a in appends] == [(False, True, 1)] * 2
    # named by the administrator on an append from the start: a copy begins
    engine.step_append(
        "e", peer_pb.RoomAppend(room="r0", epoch=2, prev_index=0, members=["e", "d", "c"]), 5, 0
    )
    assert "r0" in engine.rooms


def test_an_empty_copy_never_campaigns() -> None:
    """A replica with nothing in its log (only a founder's first moment has
    one) never starts an election, whatever its detector says."""
    c = one_room()
    for node in "abc":
        c.advance(10_000)
        c.tick(node)
    assert all(c.replica(n).role is Role.FOLLOWER for n in "abc")
    assert not c.inflight


def test_a_dropped_room_leaves_a_tombstone_that_stale_administrators_cannot_pass() -> None:
    """A node that dropped a room remembers the last epoch it saw (and the
    incarnation): a stale administrator of an older epoch cannot recreate its
    copy to commit with it, a current one can, and another incarnation of the
    name (the room deleted and created again) is another room."""
    engine = RoomEngine("d")
    engine.restore("r0", ["d"], RoomRecord("r0", HardState(3, TOMBSTONE + "inc"), []), 0)
    assert engine.rooms == {}
    stale = peer_pb.RoomAppend(room="r0", epoch=1, prev_index=0, incarnation="inc", members=["d"])
    engine.step_append("b", stale, 1, 0)
    (answer,) = engine.ready(0).messages
    assert isinstance(answer.body, peer_pb.RoomAppendResult)
    assert (answer.body.success, answer.body.epoch) == (False, 3) and engine.rooms == {}
    current = peer_pb.RoomAppend(room="r0", epoch=4, prev_index=0, incarnation="inc", members=["d"])
    engine.step_append("c", current, 2, 0)
    assert engine.rooms["r0"].epoch == 4
    other = RoomEngine("d")
    other.restore("r0", ["d"], RoomRecord("r0", HardState(3, TOMBSTONE + "inc"), []), 0)
    new_room = peer_pb.RoomAppend(
        room="r0", epoch=1, prev_index=0, incarnation="new", members=["d"]
    )
    other.step_append("e", new_room, 3, 0)
    assert other.rooms["r0"].epoch == 1


def test_a_damaged_copy_is_not_loaded_and_is_rebuilt_a_reign_later() -> None:
    """A stored copy that failed its checksum is no replica: the node holds
    nothing of the room, refuses the epoch it last stored (it may have voted
    in it and forgotten), and takes a snapshot from a later administrator,
    replacing the damaged rows in the same write."""
    engine = RoomEngine("d")
    damaged = RoomRecord("r0", HardState(3, "b"), [], damaged="entry 4 fails its checksum")
    assert engine.restore("r0", ["b", "c", "d"], damaged, 0) is None
    assert engine.rooms == {}
    vote = peer_pb.RoomVote(room="r0", epoch=4, last_index=9, last_epoch=3, incarnation="inc")
    engine.step_vote("b", vote, 1, 0)
    (refused,) = engine.ready(0).messages
    assert isinstance(refused.body, peer_pb.RoomVoteResult) and not refused.body.granted
    state = RoomState(exists=True, owner="o", members={"o"}, last_seq=8, replicas=("b", "c", "d"))
    snapshot = peer_pb.RoomSnapshot(
        room="r0",
        epoch=3,
        index=9,
        index_epoch=3,
        state=state.to_json(),
        incarnation="inc",
        members=["b", "c", "d"],
    )
    engine.step_snapshot("b", snapshot, 2, 0)
    (old,) = engine.ready(0).messages
    assert isinstance(old.body, peer_pb.RoomAppendResult)
    assert (old.body.success, old.body.epoch) == (False, 4) and engine.rooms == {}
    snapshot.epoch = 5
    engine.step_snapshot("c", snapshot, 3, 0)
    ready = engine.ready(0)
    (write,) = ready.writes
    assert write.drop and write.install and write.snapshot is not None
    assert write.snapshot.index == 9
    (ok,) = ready.messages
    assert isinstance(ok.body, peer_pb.RoomAppendResult)
    assert (ok.body.success, ok.body.match_index) == (True, 9)
    replica = engine.rooms["r0"]
    assert (replica.offset, replica.commit_index, replica.epoch) == (9, 9, 5)
    assert replica.tip.last_seq == 8
