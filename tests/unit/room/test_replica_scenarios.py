"""Scripted scenarios of the room log, step by step (etcd-io/raft interaction style).

Each test drives real RoomReplicas through `sim.Cluster` by hand: messages
wait on the network until the test delivers or loses them, and time moves
only with `advance`. The cluster's `Checker` watches every step, so any
safety rule broken along the way fails the test where it happens.
"""

from __future__ import annotations

from parley.room.entries import EntryKind, LogEntry
from parley.room.replica import Role, Timing
from sim import APPEND, APPEND_RESULT, OWNER, VOTE, VOTE_RESULT, Cluster, Msg, whole_log

ROOM = "r0"
# longer than election_min_ms: followers no longer count the old
# administrator as alive, so they may vote for someone else
QUIET_MS = 3000


def make(nodes: str = "abc", timing: Timing | None = None) -> Cluster:
    """A cluster of one-letter nodes holding one room, in that placement order."""
    names = list(nodes)
    return Cluster(names, {ROOM: names}, timing)


def elect(c: Cluster, node: str) -> None:
    """Make node campaign and deliver everything until the network is quiet."""
    c.campaign(node, ROOM)
    c.stabilize()


def settle(c: Cluster, admin: str) -> None:
    """Two heartbeat rounds: followers catch up and learn the commit index."""
    for _ in range(2):
        c.heartbeat(admin, ROOM)
        c.stabilize()


def start(c: Cluster, admin: str) -> None:
    """Elect admin and create the room, everything committed everywhere."""
    elect(c, admin)
    assert c.replica(admin).serving
    assert c.publish(admin, ROOM, OWNER, "create") is not None
    settle(c, admin)


def send(c: Cluster, node: str, cid: str) -> LogEntry:
    """Publish a message at node (which must accept it) and return its entry."""
    entry = c.publish(node, ROOM, "alice", cid, cid)
    assert entry is not None, f"{node} refused {cid}"
    return entry


def acked(c: Cluster) -> list[str]:
    """client_msg_ids acknowledged so far, in order ("create" for the create)."""
    return ["create" if e.kind is EntryKind.CREATE else e.client_msg_id for _, e in c.checker.acked]


def texts(c: Cluster, node: str) -> list[str]:
    """The client ids of the messages in a node's whole log (committed or not)."""
    return [e.client_msg_id for e in whole_log(c, node) if e.kind is EntryKind.MESSAGE]


def everyone_agrees(c: Cluster) -> None:
    """All replicas hold the same log, fully committed, and keep every ack."""
    c.checker.final(c)


def test_partitioned_administrator_loses_its_uncommitted_entries() -> None:
    """An old administrator cut off keeps appending; on rejoining it takes the new log."""
    c = make()
    start(c, "a")
    send(c, "a", "m1")
    c.stabilize()
    assert acked(c) == ["create", "m1"]

    c.isolate("a")
    send(c, "a", "lost1")
    send(c, "a", "lost2")
    c.stabilize()  # every append from a is lost
    assert c.replica("a").role is Role.ADMINISTRATOR
    assert texts(c, "a") == ["m1", "lost1", "lost2"]
    assert acked(c) == ["create", "m1"]

    c.advance(QUIET_MS)
    elect(c, "b")
    assert c.replica("b").serving and c.replica("b").epoch == 2
    send(c, "b", "m2")
    c.stabilize()
    assert acked(c) == ["create", "m1", "m2"]

    c.heal()
    # a still believes it leads epoch 1; its first append meets epoch 2
    c.heartbeat("a")
    c.stabilize()
    assert c.replica("a").role is Role.FOLLOWER
    assert c.replica("a").epoch == 2
    settle(c, "b")
    assert texts(c, "a") == texts(c, "b") == ["m1", "m2"]
    # the client's retry of lost1 now lands once, at the new administrator
    send(c, "b", "lost1")
    settle(c, "b")
    assert texts(c, "c") == ["m1", "m2", "lost1"]
    assert acked(c) == ["create", "m1", "m2", "lost1"]
    everyone_agrees(c)


def first_index(m: Msg) -> int:
    """The index of the first entry an append carries (0 for a heartbeat)."""
    return m.body.entries[0].index if m.body.entries else 0


def holders(c: Cluster, index: int, epoch: int) -> set[str]:
    """Running nodes whose log has an entry of that epoch at that index."""
    return {
        n
        for n, node in c.nodes.items()
        if not node.crashed
        and c.replica(n).last_index >= index
        and c.replica(n).epoch_at(index) == epoch
    }


def figure_8() -> Cluster:
    """Raft paper, Figure 8 (a)-(c), with five nodes 1..5.

    Ends with 1 administrator of epoch 4, its epoch-2 entry at index 3 held
    by 1, 2, 3 and 4 (a majority) and its own epoch-4 entry by 1 only; 5 is
    down, holding an epoch-3 entry at index 3.
    """
    # batches of one entry, so the old entry can travel without the new one
    c = make("12345", Timing(max_batch_entries=1))
    start(c, "1")  # epoch 1: epoch entry at 1, create at 2, committed everywhere
    assert c.replica("1").commit_index == 2

    # (a) 1 leads epoch 2; its epoch entry (index 3) reaches only 2
    c.advance(QUIET_MS)
    c.campaign("1")
    c.deliver_where(lambda m: m.kind == VOTE)
    c.deliver_where(lambda m: m.kind == VOTE_RESULT)
    assert (c.replica("1").role, c.replica("1").epoch) == (Role.ADMINISTRATOR, 2)
    c.deliver_where(lambda m: m.kind == APPEND and m.dst == "2")
    c.drop()
    c.crash("1")
    assert holders(c, 3, 2) == {"2"}

    # (b) 5 leads epoch 3 with 3 and 4 (2 refuses: its log is newer); its
    # epoch entry at index 3 reaches nobody before it goes down
    c.advance(QUIET_MS)
    c.campaign("5")
    c.deliver_where(lambda m: m.kind == VOTE)
    c.deliver_where(lambda m: m.kind == VOTE_RESULT)
    assert (c.replica("5").role, c.replica("5").epoch) == (Role.ADMINISTRATOR, 3)
    c.drop()
    c.crash("5")

    # (c) 1 comes back; epoch 3 is taken (3 and 4 voted for 5), epoch 4 it wins
    c.restart("1")
    c.advance(QUIET_MS)
    c.campaign("1")
    c.stabilize()
    assert c.replica("1").role is Role.CANDIDATE
    c.campaign("1")
    c.deliver_where(lambda m: m.kind == VOTE)
    c.deliver_where(lambda m: m.kind == VOTE_RESULT)
    one = c.replica("1")
    assert (one.role, one.epoch, one.last_index) == (Role.ADMINISTRATOR, 4, 4)
    # it replicates the epoch-2 entry to 3 and 4, one entry per append, and
    # every append carrying its epoch-4 entry is lost
    c.drop(lambda m: m.dst in ("2", "5"))
    c.deliver_where(lambda m: m.kind == APPEND)  # 3 and 4: too short, retry from 3
    c.deliver_where(lambda m: m.kind == APPEND_RESULT)
    c.deliver_where(lambda m: m.kind == APPEND and first_index(m) == 3)
    c.drop(lambda m: m.kind == APPEND)
    c.deliver_where(lambda m: m.kind == APPEND_RESULT)
    c.drop()
    assert holders(c, 3, 2) == {"1", "2", "3", "4"}
    assert holders(c, 4, 4) == {"1"}
    assert one.match_index["3"] == one.match_index["4"] == 3
    return c


def test_figure_8_old_epoch_entry_is_not_committed_by_counting() -> None:
    """An epoch-2 entry on a majority stays uncommitted in epoch 4; epoch 5 replaces it."""
    c = figure_8()
    assert c.replica("1").commit_index < 3  # index 3 is on 4 of 5, yet not committed

    # (d) 1 goes down; 5 (last entry of epoch 3, newer than their epoch 2)
    # wins epoch 5 with 2, 3 and 4 and overwrites index 3
    c.crash("1")
    c.restart("5")
    c.advance(QUIET_MS)
    c.campaign("5")  # epoch 4: 2, 3 and 4 voted for 1 already
    c.stabilize()
    c.campaign("5")  # epoch 5
    c.stabilize()
    assert c.replica("5").serving and c.replica("5").epoch == 5
    settle(c, "5")
    assert holders(c, 3, 3) == {"2", "3", "4", "5"}
    c.restart("1")
    settle(c, "5")
    assert holders(c, 3, 3) == set("12345")
    everyone_agrees(c)


def test_figure_8_entry_of_the_current_epoch_commits_the_old_one() -> None:
    """An epoch-4 entry on a majority commits the epoch-2 one before it; 5 cannot win."""
    c = figure_8()
    c.heartbeat("1")
    c.stabilize()
    assert c.replica("1").commit_index == 4  # (e)
    c.crash("1")
    c.restart("5")
    for _ in range(3):
        c.advance(QUIET_MS)
        c.campaign("5")
        c.stabilize()
        assert c.replica("5").role is Role.CANDIDATE
    assert holders(c, 3, 2) == {"2", "3", "4"}
    c.restart("1")
    c.advance(QUIET_MS)
    elect(c, "2")
    settle(c, "2")
    everyone_agrees(c)


def test_follower_restart_catches_up() -> None:
    """A follower that restarts from its store rejoins and receives what it missed."""
    c = make()
    start(c, "a")
    for i in range(3):
        send(c, "a", f"m{i}")
    settle(c, "a")
    c.crash("c")
    for i in range(3, 6):
        send(c, "a", f"m{i}")
    c.stabilize()  # a and b are a majority: these commit without c
    assert acked(c)[-1] == "m5"

    c.restart("c")
    restarted = c.replica("c")
    assert texts(c, "c") == ["m0", "m1", "m2"]  # its log came back from the store
    assert restarted.commit_index == 0  # and it learns the commit index again
    settle(c, "a")
    assert texts(c, "c") == [f"m{i}" for i in range(6)]
    assert restarted.commit_index == c.replica("a").commit_index
    everyone_agrees(c)


def test_paused_administrator_resumes_and_cannot_commit() -> None:
    """A paused administrator that missed an election commits nothing and steps down."""
    c = make()
    start(c, "a")
    send(c, "a", "m1")
    settle(c, "a")
    c.pause("a")
    c.advance(QUIET_MS)
    elect(c, "b")
    assert c.replica("b").serving
    send(c, "b", "m2")
    settle(c, "b")
    # everything sent to a while it was stopped is lost (its sockets timed out)
    c.nodes["a"].inbox.clear()
    assert c.publish("a", ROOM, "alice", "stale", "stale") is None  # paused: no answer

    c.resume("a")
    old = c.replica("a")
    assert old.role is Role.ADMINISTRATOR and old.epoch == 1
    commit_before = old.commit_index
    send(c, "a", "stale")  # it still takes a request...
    assert old.commit_index == commit_before  # ...which its own disk cannot commit
    c.stabilize()  # b and c answer with epoch 2
    assert old.role is Role.FOLLOWER and old.epoch == 2
    assert old.commit_index == commit_before
    assert "stale" not in acked(c)
    settle(c, "b")
    assert "stale" not in texts(c, "a")
    everyone_agrees(c)


def test_paused_administrator_steps_down_on_its_first_tick() -> None:
    """Back from a long pause, an administrator steps down on its first tick."""
    c = make()
    start(c, "a")
    c.pause("a")
    c.advance(Timing().election_max_ms + 1)
    c.resume("a")
    c.tick("a")
    assert c.replica("a").role is Role.FOLLOWER
    assert c.publish("a", ROOM, "alice", "late", "late") is None


def test_candidate_with_a_shorter_log_loses() -> None:
    """A candidate missing committed entries gets no votes; an up-to-date one wins."""
    c = make()
    start(c, "a")
    c.isolate("c")
    send(c, "a", "m1")
    send(c, "a", "m2")
    c.stabilize()
    assert acked(c)[-2:] == ["m1", "m2"]  # committed by a and b
    c.heal()
    c.crash("a")
    c.advance(QUIET_MS)

    elect(c, "c")
    assert c.replica("c").role is Role.CANDIDATE  # b refused: c lacks m1, m2
    assert texts(c, "c") == []

    c.advance(QUIET_MS)
    elect(c, "b")
    assert c.replica("b").serving
    settle(c, "b")
    assert texts(c, "c") == ["m1", "m2"]
    c.restart("a")
    settle(c, "b")
    everyone_agrees(c)


def test_vote_survives_restart() -> None:
    """A voter that restarts remembers its vote and gives no second one in that epoch."""
    c = make()
    start(c, "a")
    c.crash("a")
    c.advance(QUIET_MS)

    c.campaign("b")  # epoch 2
    c.deliver_where(lambda m: m.kind == VOTE and m.dst == "c")  # c votes for b
    assert c.replica("c").voted_for == "b"
    assert c.nodes["c"].store.load()[ROOM].hard.voted_for == "b"  # durable before the answer
    c.crash("c")
    c.restart("c")
    assert (c.replica("c").epoch, c.replica("c").voted_for) == (2, "b")

    # a comes back and asks for epoch 2 too (its own epoch was 1)
    c.restart("a")
    c.advance(QUIET_MS)
    c.campaign("a")
    assert c.replica("a").epoch == 2
    c.deliver_where(lambda m: m.kind == VOTE and m.src == "a")
    c.stabilize()  # c's answer (to a process that died) is lost; a's votes were refused
    assert c.replica("a").role is not Role.ADMINISTRATOR
    assert c.checker.admins.get((ROOM, 2)) in (None, "b")


def test_single_replica_commits_alone() -> None:
    """A room of one replica elects itself and commits on its own disk."""
    c = make("a")
    c.advance(1000)
    c.publish("a", ROOM, OWNER, "create")  # founds it: administrator at once
    assert c.replica("a").serving
    send(c, "a", "m1")
    assert acked(c) == ["create", "m1"]
    assert not c.inflight
