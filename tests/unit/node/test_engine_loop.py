"""The node's Ready loop holds every message that depends on a write until
the store says the write is durable (the production driver, not the
simulation's: a real StoreWriter thread over a store whose write blocks)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Sequence

import pytest
from parley._generated import peer_service_pb2 as peer_pb
from parley.node.engine_loop import EngineLoop, now_ms
from parley.node.store_writer import StoreWriter
from parley.room.engine import Outbound, Ready, RoomEngine
from parley.room.entries import EntryKind, LogEntry
from parley.room.memory_store import MemoryLogStore
from parley.room.records import RoomWrite
from parley.room.store import MAX_HELD
from support.wait import wait_for

ROOM = "r0"


class GatedStore(MemoryLogStore):
    """A store whose writes wait until the test opens the gate."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.writing = threading.Event()

    def write(self, batch: Sequence[RoomWrite]) -> None:
        self.writing.set()
        assert self.gate.wait(10), "the test never released the write"
        super().write(batch)
        self.writing.clear()


class Harness:
    def __init__(self, node: str = "a") -> None:
        self.store = GatedStore()
        self.engine = RoomEngine(node)
        self.engine.add(ROOM, ["a", "b", "c"], None, now_ms())
        self.sent: list[Outbound] = []
        self.applied: list[Ready] = []
        # (a gated write must block the writer thread, not the test's loop)
        self.writer = StoreWriter(self.store, node, inline_entries=None)
        self.loop = EngineLoop(self.engine, self.writer, self.sent.extend, self.applied.append)

    async def write_started(self) -> None:
        await asyncio.to_thread(self.store.writing.wait, 5)
        assert self.store.writing.is_set()

    def durable_hard(self) -> tuple[int, str] | None:
        record = self.store.load().get(ROOM)
        return (record.hard.epoch, record.hard.voted_for) if record else None


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    h = Harness()
    h.loop.start()
    yield h
    h.store.gate.set()
    await h.loop.stop()
    await h.writer.close()


async def test_vote_requests_leave_only_after_the_epoch_write(harness: Harness) -> None:
    harness.engine.campaign(ROOM, now_ms())
    harness.loop.kick()
    await harness.write_started()
    await asyncio.sleep(0)  # let the loop run as far as it would
    assert harness.sent == []
    assert harness.durable_hard() is None
    harness.store.gate.set()
    await wait_for(lambda: len(harness.sent) == 2, 5, message="vote requests")
    assert harness.durable_hard() == (1, "a")
    assert all(isinstance(m.body, peer_pb.RoomVote) and m.body.epoch == 1 for m in harness.sent)


async def test_a_vote_is_answered_only_after_it_is_durable(harness: Harness) -> None:
    token, answer = harness.loop.answer_token()
    vote = peer_pb.RoomVote(room=ROOM, epoch=1, last_index=0, last_epoch=0)
    harness.engine.step_vote("b", vote, token, now_ms())
    harness.loop.kick()
    await harness.write_started()
    await asyncio.sleep(0.05)
    assert not answer.done()
    harness.store.gate.set()
    result = await asyncio.wait_for(answer, 5)
    assert isinstance(result, peer_pb.RoomVoteResult) and result.granted
    assert harness.durable_hard() == (1, "b")


async def test_an_append_is_answered_only_after_its_entries_are_durable(
    harness: Harness,
) -> None:
    token, answer = harness.loop.answer_token()
    entry = peer_pb.LogEntry(index=1, epoch=1, kind=6, seq=0, user="b")
    append = peer_pb.RoomAppend(room=ROOM, epoch=1, prev_index=0, entries=[entry])
    harness.engine.step_append("b", append, token, now_ms())
    harness.loop.kick()
    await harness.write_started()
    await asyncio.sleep(0.05)
    assert not answer.done()
    harness.store.gate.set()
    result = await asyncio.wait_for(answer, 5)
    assert isinstance(result, peer_pb.RoomAppendResult) and result.success
    assert result.match_index == 1
    assert len(harness.store.load()[ROOM].entries) == 1


async def test_inputs_during_a_write_ride_in_the_next_batch(harness: Harness) -> None:
    """Group commit: what arrives while a write is in flight is written together next."""
    harness.engine.campaign(ROOM, now_ms())
    harness.loop.kick()
    await harness.write_started()
    tokens = []
    for voter_epoch in (5, 6, 7):
        token, future = harness.loop.answer_token()
        vote = peer_pb.RoomVote(room=ROOM, epoch=voter_epoch, last_index=0, last_epoch=0)
        harness.engine.step_vote("b", vote, token, now_ms())
        tokens.append(future)
        harness.loop.kick()
    writes = []
    real = harness.store.write

    def counting(batch: Sequence[RoomWrite]) -> None:
        writes.append(list(batch))
        real(batch)

    harness.store.write = counting  # type: ignore[method-assign]
    harness.store.gate.set()
    results = await asyncio.wait_for(asyncio.gather(*tokens), 5)
    assert [r.epoch for r in results] == [5, 6, 7]
    assert len(writes) == 1  # the three votes: one write
    assert harness.durable_hard() == (7, "b")


class ThreadRecordingStore(MemoryLogStore):
    """Records the thread of every write; a prune may be held at a gate."""

    def __init__(self) -> None:
        super().__init__()
        self.write_threads: list[int] = []
        self.gate = threading.Event()
        self.gate.set()
        self.pruning = threading.Event()

    def write(self, batch: Sequence[RoomWrite]) -> None:
        assert not self.pruning.is_set(), "a write ran during a prune"
        self.write_threads.append(threading.get_ident())
        super().write(batch)

    def prune(self, room: str, before_seq: int, before_ts_ms: int, held: int = MAX_HELD) -> int:
        self.pruning.set()
        assert self.gate.wait(10), "the test never released the prune"
        self.pruning.clear()
        return super().prune(room, before_seq, before_ts_ms, held)


def _entries(first: int, count: int) -> RoomWrite:
    entries = [
        LogEntry(index=i, epoch=1, kind=EntryKind.JOIN, seq=i - 1, user="u")
        for i in range(first, first + count)
    ]
    return RoomWrite(ROOM, entries=entries)


async def test_small_writes_run_inline_and_big_ones_on_the_writer_thread() -> None:
    """At low load the thread hops cost more than a small write: it runs on
    the loop's thread; a big batch runs on the writer thread."""
    store = ThreadRecordingStore()
    writer = StoreWriter(store, "a", inline_entries=4)
    try:
        await writer.write([_entries(1, 4)])
        await writer.write([_entries(5, 5)])
    finally:
        await writer.close()
    loop_thread = threading.get_ident()
    assert store.write_threads[0] == loop_thread
    assert store.write_threads[1] != loop_thread
    assert [e.index for e in store.entries(ROOM, 0, 100, 100)] == list(range(1, 10))


async def test_an_administrators_write_after_its_appends_is_never_inline() -> None:
    """A Ready that sent appends ahead of its write (an administrator's) is
    written on the writer thread however small: the loop stays free to read
    the followers' answers, the first of which commits the entry."""
    store = ThreadRecordingStore()
    writer = StoreWriter(store, "a", inline_entries=4)
    try:
        await writer.write([_entries(1, 1)], inline=False)
        await writer.write([_entries(2, 1)])
    finally:
        await writer.close()
    assert store.write_threads[0] != threading.get_ident()
    assert store.write_threads[1] == threading.get_ident()


async def test_a_small_write_waits_behind_what_the_writer_thread_does() -> None:
    """A small write while a prune holds the writer thread goes behind it on
    that thread: never two store calls at once (the store's contract)."""
    store = ThreadRecordingStore()
    writer = StoreWriter(store, "a", inline_entries=4)
    try:
        await writer.write([_entries(1, 2)])
        store.gate.clear()
        pruning = asyncio.create_task(writer.prune(ROOM, 0, 0))
        await asyncio.to_thread(store.pruning.wait, 5)
        writing = asyncio.create_task(writer.write([_entries(3, 1)]))
        await asyncio.sleep(0.05)
        assert not writing.done()
        store.gate.set()
        await asyncio.wait_for(asyncio.gather(pruning, writing), 5)
    finally:
        store.gate.set()
        await writer.close()
    assert store.write_threads[1] != threading.get_ident()
