"""Idle rooms are quiescent: no heartbeats, no timers, woken by any event.

An administrator whose followers hold its whole log, committed, sends one
last heartbeat flagged `quiesce` and then nothing; its followers stop their
election timers while their failure detector sees its node up. A message, a
read, a move or a change of the detector's view wakes the room.
"""

from __future__ import annotations

import pytest
from parley.room.replica import Role, RoomReplica
from parley.room.shared import NO_PEERS
from sim import OWNER, Cluster, one_room, run_for, settle, start


def idle(nodes: str = "abc") -> Cluster:
    c = one_room(nodes)
    start(c, "a")
    c.publish("a", "r0", "alice", "m1", "hello")
    c.stabilize()
    settle(c, "a")
    run_for(c, 1000)
    return c


def test_an_idle_room_goes_quiet() -> None:
    c = idle()
    assert all(c.replica(n).quiet for n in "abc")
    assert c.engine("a").awake == set()
    sent = len(c.inflight)
    run_for(c, 60_000)  # a minute of nothing
    assert not c.inflight and sent == 0
    assert [c.replica(n).role for n in "abc"] == [Role.ADMINISTRATOR, Role.FOLLOWER, Role.FOLLOWER]


def test_quiescent_rooms_are_not_ticked(monkeypatch: pytest.MonkeyPatch) -> None:
    c = idle()
    calls = 0
    real = RoomReplica.tick

    def counting(self: RoomReplica, now_ms: int, up: set[str], campaign: bool = True) -> bool:
        nonlocal calls
        calls += 1
        return real(self, now_ms, up, campaign)

    monkeypatch.setattr(RoomReplica, "tick", counting)
    run_for(c, 5_000)
    assert calls == 0


def test_a_message_wakes_the_room_and_it_quiets_again() -> None:
    c = idle()
    entry = c.publish("a", "r0", "alice", "m2", "again")
    assert entry is not None and not c.replica("a").quiet
    c.stabilize()
    run_for(c, 1000)
    assert c.checker.acked[-1][1].client_msg_id == "m2"
    assert all(c.replica(n).quiet for n in "abc")


def test_a_busy_room_does_not_quiesce_between_messages() -> None:
    """A room whose log is all committed at a tick, but that proposed less
    than `quiesce_after_ms` ago, stays awake: under load it would otherwise
    fold its whole tail and copy its state at the next message, many times
    a second."""
    c = idle()
    quiet_after = c.replica("a").timing.quiesce_after_ms
    for n in range(2, 12):
        c.publish("a", "r0", "alice", f"m{n}", "busy")
        c.stabilize()
        settle(c, "a")  # everything committed and known everywhere
        run_for(c, quiet_after // 2)
        assert not any(c.replica(x).quiet for x in "abc"), n
        assert c.replica("a").log, "the tail was folded away"
    run_for(c, quiet_after + 500)
    assert all(c.replica(x).quiet for x in "abc")


def test_the_administrator_dying_wakes_its_followers() -> None:
    c = idle()
    c.crash("a")
    run_for(c, 1500)  # the detector sees it at once; b is next in line
    assert c.replica("b").serving
    assert c.publish("b", "r0", "alice", "m2", "after") is not None
    c.stabilize()
    assert c.checker.acked[-1][1].client_msg_id == "m2"


def test_a_lying_detector_wakes_one_follower_but_deposes_nobody() -> None:
    c = idle()
    c.down["c"] = {"a"}  # c's detector wrongly reports a down
    run_for(c, 20_000)
    assert c.administrators() == ["a"]
    assert {c.replica(n).epoch for n in "abc"} == {1}


def test_a_restarted_follower_is_brought_back_to_quiet() -> None:
    """Its quiet state died with it: the administrator sees it come back,
    wakes for a heartbeat round, and quiets again, with no election."""
    c = idle()
    c.crash("c")
    run_for(c, 500)
    c.restart("c")
    run_for(c, 10_000)
    assert c.administrators() == ["a"] and {c.replica(n).epoch for n in "abc"} == {1}
    assert all(c.replica(n).quiet for n in "abc")


def test_a_create_goes_quiet_too() -> None:
    c = one_room()
    assert c.publish("a", "r0", OWNER, "create") is not None
    c.stabilize()
    run_for(c, 2000)
    assert all(c.replica(n).quiet for n in "abc")


# ------------------------------------------------- resting administrators


def tables(rep: RoomReplica) -> list[dict[str, int]]:
    return [rep.next_index, rep.match_index, rep._told, rep._acked_ms, rep._last_sent_ms]


def test_a_quiet_administrator_rests_without_per_peer_tables() -> None:
    """Once quiet with nothing in flight, every replica of the room holds only
    the shared empty tables (an idle room costs what its state costs)."""
    c = idle()
    for node in "abc":
        assert all(t is NO_PEERS for t in tables(c.replica(node))), node
    assert not c.replica("a").dirty_peers


def test_a_message_to_a_resting_administrator_commits_everywhere() -> None:
    """Its tables are rebuilt as they stood: the message commits at once,
    every follower holds it, and the room rests again."""
    c = idle()
    commits_after_rest(c)
    assert c.replica("a").match_index is NO_PEERS


def commits_after_rest(c: Cluster) -> None:
    assert c.publish("a", "r0", "alice", "m2", "again") is not None
    assert c.replica("a").match_index == {"b": 2, "c": 2}  # rebuilt before the append
    c.stabilize()
    run_for(c, 1000)
    assert c.checker.acked[-1][1].client_msg_id == "m2"
    assert all(c.replica(n).last_index == 3 for n in "abc")


def test_a_follower_down_while_the_room_rests_is_brought_up_to_date() -> None:
    """Nothing is assumed of a peer that was down when the room went quiet:
    it comes back and gets what it missed, then the room rests again."""
    c = idle()
    c.crash("c")
    run_for(c, 500)
    for i in range(3):
        assert c.publish("a", "r0", "alice", f"n{i}", "while c is down") is not None
        c.stabilize()
    run_for(c, 2000)
    for msg in c.lost_msgs:  # what a real node's RPC deadline reports
        c.fail_append(msg)
    run_for(c, 1000)
    assert c.replica("a").match_index is NO_PEERS  # resting, with c down
    c.restart("c")
    run_for(c, 3000)
    assert c.replica("c").last_index == c.replica("a").last_index == 5
    assert c.replica("c").commit_index == 5
    assert c.administrators() == ["a"] and all(c.replica(n).quiet for n in "abc")


def test_the_checks_notice_an_administrator_that_never_resumes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Planted bug: a resting administrator that takes input without
    rebuilding its tables knows of no peer to send to: nothing commits."""
    monkeypatch.setattr(RoomReplica, "resume", lambda self: None)
    c = idle()
    with pytest.raises(AssertionError):
        commits_after_rest(c)


# ------------------------------------------------------- mass failover


def test_a_dead_nodes_rooms_elect_a_few_per_tick() -> None:
    """When the administrator of many idle rooms dies, each survivor begins
    at most `elections_per_tick` elections a tick (a vote storm with every
    room in one RPC would be answered too late to elect anyone), and every
    room is served again."""
    rooms = {f"r{i}": ["a", "b", "c"] for i in range(40)}
    c = Cluster(["a", "b", "c"], rooms)
    for room in rooms:
        assert c.found("a", room) is not None
        c.stabilize()
    run_for(c, 2000)
    assert all(c.replica(n, r).quiet for n in "abc" for r in rooms)
    for node in "bc":
        c.engine(node).elections_per_tick = 3
    c.crash("a")
    c.advance(1000)
    for node in "bc":
        before = c.checker.elections
        c.tick(node)
        assert c.checker.elections - before <= 3, node
    run_for(c, 10_000)
    served = {r for r in rooms for n in "bc" if c.replica(n, r).serving}
    assert served == set(rooms)
