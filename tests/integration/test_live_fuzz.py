"""A live fuzz run against a real gateway while 50 people chat beside it.

Abusers send random bytes instead of HTTP, half handshakes by the thousand,
binary frames, invalid UTF-8, deep nesting, huge numbers, random JSON,
truncated frames and frames split across TCP segments. Every input must be
answered by an error frame, the right reply or a close code; no process may
die, no room may be damaged, and the chatters must see every message in
order, with no gap. Their delivery latency p99, without and with the
abusers, is printed (not asserted: this machine is shared and noisy).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import statistics
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import pytest
from support.cluster import LocalCluster
from support.rawws import OP_BINARY, OP_TEXT, RawSocket, frame
from support.wait import wait_for
from websockets.asyncio.client import ClientConnection, connect

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

CHATTERS = 50
ROOMS = 5
PHASE_SECONDS = 8.0
SEND_EVERY = 1.0
HALF_HANDSHAKES = 2000
SEED = int(os.environ.get("PARLEY_FUZZ_SEED", "0")) or random.randrange(1, 2**31)

CLOSE_CODES = {1002, 1007, 1008, 1009, 1011, 1013}
"""Close codes an abuser may get: protocol error, bad UTF-8, policy, too big,
internal (keepalive), try later."""


@dataclass
class Chatter:
    user: str
    room: str
    ws: ClientConnection
    seqs: list[int] = field(default_factory=list)
    acked: list[int] = field(default_factory=list)
    latencies: dict[str, list[float]] = field(default_factory=lambda: {"quiet": [], "abused": []})
    errors: list[dict[str, Any]] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None


@dataclass
class Tally:
    inputs: int = 0
    answered: int = 0
    unexpected: list[str] = field(default_factory=list)

    def check(self, ok: bool, what: str) -> None:
        self.inputs += 1
        if ok:
            self.answered += 1
        elif len(self.unexpected) < 20:
            self.unexpected.append(what)


class Run:
    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        self.host, port = cluster.gateway_ws(0).rsplit(":", 1)
        self.port = int(port)
        self.phase = "quiet"
        self.stop = asyncio.Event()
        self.tally = Tally()
        self.rng = random.Random(SEED)
        self.serial = 0

    def user(self) -> str:
        self.serial += 1
        return f"mallory-{self.serial}"

    async def raw(self) -> RawSocket:
        return await RawSocket.open(self.host, self.port, f"/ws?user={self.user()}")


async def _chat(run: Run, chatter: Chatter) -> None:
    """Send one message a second, read everything, note each other's latency."""

    async def read() -> None:
        async for raw in chatter.ws:
            data = json.loads(raw)
            kind = data.get("type")
            if kind == "error":
                chatter.errors.append(data)
            elif kind == "ack":
                chatter.acked.append(data["seq"])
            elif "seq" in data and data.get("room") == chatter.room:
                chatter.seqs.append(data["seq"])
                if kind == "message" and data["from"] != chatter.user:
                    sent = float(data["text"].split("@", 1)[1])
                    chatter.latencies[data["text"].split("@")[0]].append(time.time() - sent)

    reader = asyncio.create_task(read())
    n = 0
    while not run.stop.is_set():
        n += 1
        text = f"{run.phase}@{time.time()}"
        await chatter.ws.send(json.dumps({"type": "send", "room": chatter.room, "text": text,
                                          "id": f"{chatter.user}-{n}"}))  # fmt: skip
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(run.stop.wait(), SEND_EVERY)
    chatter.reader = reader


def _random_json(rng: random.Random, depth: int = 0) -> Any:
    kinds = ["int", "float", "str", "bool", "null"] + (["list", "dict"] if depth < 4 else [])
    kind = rng.choice(kinds)
    if kind == "int":
        return rng.choice([0, -1, 2**63, -(2**70), rng.randrange(-(10**6), 10**6)])
    if kind == "float":
        return rng.choice([0.5, -1e300, 1e-300, rng.random()])
    if kind == "str":
        return rng.choice(["", "r", "general", "Ünïcödé", "x" * rng.randrange(1, 300), "\u0000"])
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "null":
        return None
    if kind == "list":
        return [_random_json(rng, depth + 1) for _ in range(rng.randrange(0, 4))]
    keys = ["type", "room", "text", "id", "since", "seq", "user", "emoji", "limit", "before"]
    frame_ = {rng.choice(keys): _random_json(rng, depth + 1) for _ in range(rng.randrange(0, 6))}
    if depth == 0 and rng.random() < 0.7:
        frame_["type"] = rng.choice(
            ["send", "join", "history", "create", "edit", "react", "ping", "auth", "nope"]
        )
    return frame_


def _answered(texts: list[str]) -> bool:
    """One reply, an error frame or a request's own reply type (valid JSON either way)."""
    if len(texts) != 1:
        return False
    try:
        reply = json.loads(texts[0])
    except ValueError:
        return False
    return isinstance(reply, dict) and isinstance(reply.get("type"), str)


async def _garbage_instead_of_http(run: Run) -> None:
    while not run.stop.is_set():
        reader, writer = await asyncio.open_connection(run.host, run.port)
        writer.write(run.rng.randbytes(run.rng.randrange(1, 2000)))
        try:
            answer = await asyncio.wait_for(reader.read(64), 5)
        except (TimeoutError, ConnectionError):
            answer = b""
        # an HTTP error, or the connection closed: both are answers
        run.tally.check(answer.startswith(b"HTTP/1.1 4") or answer == b"", f"garbage: {answer!r}")
        writer.transport.abort()
        await asyncio.sleep(0.05)


async def _half_handshakes(run: Run) -> None:
    """Thousands of connections dropped mid-handshake, 100 at a time."""
    partial = b"GET /ws?user=half HTTP/1.1\r\nHost: x\r\nUpgrade: websock"
    done = 0
    while done < HALF_HANDSHAKES and not run.stop.is_set():
        writers = []
        for _ in range(100):
            try:
                _, writer = await asyncio.open_connection(run.host, run.port)
            except OSError:
                continue
            writer.write(partial[: run.rng.randrange(0, len(partial))])
            writers.append(writer)
        await asyncio.sleep(0.01)
        for writer in writers:
            writer.transport.abort()
        done += len(writers)
        run.tally.inputs += len(writers)
        run.tally.answered += len(writers)  # (nothing to answer; the server must just survive)
    print(f"  half handshakes dropped: {done}")


async def _frames_on_one_socket(run: Run) -> None:
    """Binary frames, random JSON, deep nesting and huge numbers, each answered by an error."""
    sock = await run.raw()
    try:
        while not run.stop.is_set():
            choice = run.rng.randrange(4)
            if choice == 0:
                data = frame(OP_BINARY, run.rng.randbytes(run.rng.randrange(0, 500)))
                what = "binary"
            elif choice == 1:
                depth = run.rng.randrange(9, 5000)
                data = frame(OP_TEXT, ('{"type":"ping","x":' + "[" * depth + "]" * depth
                                        + "}").encode())  # fmt: skip
                what = f"nesting {depth}"
            elif choice == 2:
                digits = run.rng.randrange(25, 20000)
                data = frame(
                    OP_TEXT, f'{{"type":"join","room":"r","since":{"9" * digits}}}'.encode()
                )
                what = f"number of {digits} digits"
            else:
                payload = json.dumps(_random_json(run.rng))
                data = frame(OP_TEXT, payload.encode())
                what = f"json {payload[:80]}"
            await sock.send(data)
            received = await sock.receive(1, 10)
            run.tally.check(_answered(received.texts), f"{what}: {received}")
            if received.close_code is not None:
                sock = await run.raw()
            await asyncio.sleep(0.03)  # under the 50 frames/s rate limit
    finally:
        await sock.close()


async def _invalid_utf8(run: Run) -> None:
    while not run.stop.is_set():
        sock = await run.raw()
        bad = run.rng.choice([b"\xff\xfe", b'{"type":"ping","x":"\xc3\x28"}', b"\xed\xa0\x80"])
        await sock.send(frame(OP_TEXT, bad))
        received = await sock.receive(1, 10)
        run.tally.check(received.close_code == 1007, f"invalid utf-8: {received}")
        await sock.close()
        await asyncio.sleep(0.05)


async def _truncated_frames(run: Run) -> None:
    while not run.stop.is_set():
        sock = await run.raw()
        whole = frame(OP_TEXT, b'{"type":"ping","id":"t"}' + b" " * 200)
        await sock.send(whole[: run.rng.randrange(1, len(whole) - 1)])
        sock.abort()  # gone mid-frame: nothing to answer, nothing may break
        run.tally.check(True, "")
        await asyncio.sleep(0.05)


async def _split_frames(run: Run) -> None:
    sock = await run.raw()
    try:
        while not run.stop.is_set():
            piece = run.rng.randrange(1, 8)
            await sock.send(frame(OP_TEXT, b'{"type":"ping","id":"split"}'), piece=piece)
            received = await sock.receive(1, 10)
            ok = _answered(received.texts) and json.loads(received.texts[0])["type"] == "pong"
            run.tally.check(ok, f"split into {piece}-byte segments: {received}")
            await asyncio.sleep(0.05)
    finally:
        await sock.close()


ABUSERS: list[Callable[[Run], Coroutine[Any, Any, None]]] = [
    _garbage_instead_of_http,
    _half_handshakes,
    _frames_on_one_socket,
    _frames_on_one_socket,
    _invalid_utf8,
    _truncated_frames,
    _split_frames,
]


def _p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] * 1000 if len(values) >= 2 else float("nan")


async def test_live_fuzz_beside_fifty_chatters(cluster: LocalCluster) -> None:
    print(f"\nlive fuzz seed {SEED} (PARLEY_FUZZ_SEED={SEED} repeats it)")
    run = Run(cluster)
    chatters: list[Chatter] = []
    for i in range(CHATTERS):
        room = f"room-{i % ROOMS}"
        ws = await connect(cluster.gateway_url(0) + f"?user=chatter-{i}", max_size=2**20)
        chatter = Chatter(f"chatter-{i}", room, ws)
        if i < ROOMS:
            await ws.send(json.dumps({"type": "create", "room": room, "id": "c"}))
            assert json.loads(await ws.recv())["type"] == "created"
        chatters.append(chatter)
    for chatter in chatters:
        await chatter.ws.send(json.dumps({"type": "join", "room": chatter.room, "id": "j"}))
    chat = [asyncio.create_task(_chat(run, c)) for c in chatters]

    await asyncio.sleep(PHASE_SECONDS)  # the quiet phase: chat alone, for the baseline
    run.phase = "abused"
    abusers = [asyncio.create_task(abuse(run)) for abuse in ABUSERS]
    await asyncio.sleep(PHASE_SECONDS)
    run.stop.set()
    await asyncio.gather(*chat)
    await asyncio.gather(*abusers)

    # every chatter gets every acknowledged message of its room
    last = {room: 0 for room in {c.room for c in chatters}}
    for chatter in chatters:
        if chatter.acked:
            last[chatter.room] = max(last[chatter.room], *chatter.acked)
    await wait_for(
        lambda: all(c.seqs and c.seqs[-1] >= last[c.room] for c in chatters), 30,
        message="every chatter has its room's last message",
    )  # fmt: skip
    for chatter in chatters:
        await chatter.ws.close()
    await asyncio.gather(*(c.reader for c in chatters if c.reader), return_exceptions=True)

    quiet = [v for c in chatters for v in c.latencies["quiet"]]
    abused = [v for c in chatters for v in c.latencies["abused"]]
    print(f"  inputs from abusers: {run.tally.inputs}, answered as expected: {run.tally.answered}")
    print(f"  chatter deliveries: {len(quiet)} quiet, {len(abused)} with abusers")
    medians = [statistics.median(v) * 1000 if v else float("nan") for v in (quiet, abused)]
    print(f"  delivery p99: {_p99(quiet):.1f} ms quiet, {_p99(abused):.1f} ms with abusers "
          f"(p50 {medians[0]:.1f} / {medians[1]:.1f})")  # fmt: skip

    assert not run.tally.unexpected, run.tally.unexpected
    assert run.tally.inputs > 1000
    for chatter in chatters:
        assert not chatter.errors, (chatter.user, chatter.errors[:3])
        start = chatter.seqs[0]
        assert chatter.seqs == list(range(start, start + len(chatter.seqs))), chatter.user
        assert len(chatter.acked) >= PHASE_SECONDS  # it kept chatting through both phases
    assert all(cluster.is_running(name) for name in cluster.procs)
    for name in cluster.procs:
        log = cluster.log_path(name).read_text(errors="replace")
        assert "Traceback" not in log, name
