"""Side by side: Parley against a bare `websockets` server and Socket.IO 4.

One load generator drives three servers in the same run, each confined to
core 0 (`taskset -c 0`) while the generator runs on core 1:

* **bare**: `bench/bare_server.py`, rooms over plain `websockets` (no
  replication, no storage): the floor;
* **socket.io**: `bench/socketio/server.js`, the same rooms on Node.js
  Socket.IO 4 (skipped, with a note, when Node.js or npm is missing);
* **parley**: `parley up`'s cluster, 3 nodes + 1 gateway, R = 3, sqlite.

Scenarios:

* `fanout`: 1 room, S subscribers, P publishers keeping a window of W sends
  in flight (closed loop). Measured only once the joins are over and the
  server is quiet again; reports deliveries/s, delivery latency p50/p99
  (send to receipt, one clock), and per subscriber lost / duplicated /
  out-of-order / seq-gap counts (presence entries count in the seq check).
* `rate`: the same room with S subscribers (1000), one publisher sending
  at a fixed rate (50 msg/s, open loop): delivery latency p50/p99.
* `pipeline`: one room, P publishers each keeping a window of 256 sends in
  flight and no other subscribers: acknowledged messages per second.
* `latency`: one message in flight against Parley: the nodes' commit
  latency and the client's ack latency, next to the floor measured here —
  one gRPC round trip to a bare server on core 0 plus one fsync.
* `idle`: 10,000 clients (100 rooms x 100 members) connected and joined,
  then idle: resident memory per connection of the process holding them
  (Parley: the gateway).
* `joins`: C new clients join at once, spread over R rooms (`--storms
  1000x1 10000x100`); `reconnects`: the same clients, members already,
  reconnect and join at once (a gateway restart): seconds until every one
  has its `joined`, and how many frames the clients received until the room
  went quiet (linear in C is right; C² is not). Meanwhile a member who
  joined before publishes 50 msg/s into the first room and another watches:
  sent, acked, delivered and their latency say whether messages flow
  through the storm.

The clients are `wsload`'s lean WebSocket client on uvloop: the generator
must out-run three servers from one core.

Every ratio is against the bare server in the same run.

    .venv/bin/python scripts/bench_compare.py [--seconds 5] [--subscribers 100 1000]
        [--publishers 2] [--window 32] [--rate 50] [--rate-subscribers 1000]
        [--pipeline-window 256] [--storms 1000x1 10000x100]
        [--only fanout rate pipeline latency joins reconnects idle]
        [--servers bare socket.io parley]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import uvloop
import wsload
from grpc_health.v1 import health_pb2, health_pb2_grpc
from parley.bench import free_port, local_cluster, percentile, scrape_histogram

ROOT = Path(__file__).resolve().parent.parent
SERVER_CORE = 0
GENERATOR_CORE = 1
ROOM = "bench"


# ------------------------------------------------------------------ clients


class Client:
    """One connection, speaking Parley's JSON frames either as they are
    (Parley, bare) or as Socket.IO events (`42["type",{frame}]`), over the
    lean client in `wsload` (the generator's own cost per frame is what
    limits every fan-out figure)."""

    def __init__(self, protocol: wsload.WsProtocol, socketio: bool) -> None:
        self.protocol = protocol
        self.socketio = socketio
        self.closed = protocol.closed
        self._texts: asyncio.Queue[str | None] = asyncio.Queue()
        protocol.on_text = self._texts.put_nowait
        protocol.closed.add_done_callback(lambda _: self._texts.put_nowait(None))

    @classmethod
    async def open(cls, url: str, socketio: bool) -> Client:
        client = cls(await wsload.connect(url), socketio)
        if socketio:
            await client._texts.get()  # Engine.IO open packet
            client.protocol.write(b"40")  # connect to the default namespace
            while not str(await client._texts.get()).startswith("40"):
                pass
        return client

    async def send(self, frame: dict[str, Any]) -> None:
        if self.socketio:
            self.protocol.write(("42" + json.dumps([frame["type"], frame])).encode())
        else:
            self.protocol.write(json.dumps(frame).encode())

    def _decode(self, text: str) -> dict[str, Any] | None:
        if not self.socketio:
            return json.loads(text)  # type: ignore[no-any-return]
        if text.startswith("42"):
            return json.loads(text[2:])[1]  # type: ignore[no-any-return]
        if text == "2":
            self.protocol.write(b"3")  # Engine.IO ping
        return None

    def listen(self, handler: Callable[[dict[str, Any]], None]) -> None:
        """From now on every frame goes to `handler` as it is parsed (no
        queue, no coroutine per frame), the ones already queued first."""
        while not self._texts.empty():
            queued = self._texts.get_nowait()
            frame = self._decode(queued) if queued is not None else None
            if frame is not None:
                handler(frame)

        def take(text: str) -> None:
            frame = self._decode(text)
            if frame is not None:
                handler(frame)

        self.protocol.on_text = take

    async def frames(self) -> AsyncIterator[dict[str, Any]]:
        """Every frame received, as a dict (Socket.IO pings answered here)."""
        while (text := await self._texts.get()) is not None:
            frame = self._decode(text)
            if frame is not None:
                yield frame

    async def request(self, frame: dict[str, Any], answer: str) -> dict[str, Any]:
        await self.send(frame)
        async for reply in self.frames():
            if reply.get("type") == answer:
                return reply
            if reply.get("type") == "error":
                raise RuntimeError(f"{frame}: {reply}")
        raise RuntimeError(f"{frame}: connection closed")

    async def close(self) -> None:
        self.protocol.write(b"\x03\xe8", wsload.OP_CLOSE)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self.closed), 5)
        if self.protocol.transport is not None:
            self.protocol.transport.close()


@dataclass
class Server:
    """A server under test: how to reach it as a given user."""

    name: str
    base: str
    socketio: bool = False
    # the nodes' HTTP addresses (/metrics), for Parley
    nodes: list[str] = field(default_factory=list)
    # the processes that hold client connections (memory per connection)
    pids: list[int] = field(default_factory=list)

    def url(self, user: str) -> str:
        if self.socketio:
            return f"{self.base}/socket.io/?EIO=4&transport=websocket&user={user}"
        return f"{self.base}?user={user}"


@contextlib.asynccontextmanager
async def process_server(name: str, argv: list[str], socketio: bool) -> AsyncIterator[Server]:
    """A single-process server started on core 0, ready when it says so."""
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        "taskset", "-c", str(SERVER_CORE), *argv, str(port),
        stdout=subprocess.PIPE,
        cwd=ROOT,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        if b"ready" not in line:
            raise RuntimeError(f"{name} did not start: {line!r}")
        path = "" if socketio else "/"
        yield Server(name, f"ws://127.0.0.1:{port}{path}", socketio, pids=[proc.pid])
    finally:
        proc.terminate()
        await proc.wait()


@contextlib.asynccontextmanager
async def parley_server() -> AsyncIterator[Server]:
    """`parley up`'s cluster (3 nodes + 1 gateway, R = 3, sqlite), every
    process on core 0 (they inherit the supervisor's affinity)."""
    os.sched_setaffinity(0, {SERVER_CORE})
    try:
        async with local_cluster(nodes=3, replicas=3) as (url, https):
            os.sched_setaffinity(0, {GENERATOR_CORE})
            yield Server("parley", url, nodes=https, pids=children("gateway"))
    finally:
        os.sched_setaffinity(0, {GENERATOR_CORE})


def children(word: str) -> list[int]:
    """This process's children whose command line has `word` (/proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            if ppid == os.getpid() and word.encode() in (stat.parent / "cmdline").read_bytes():
                found.append(int(stat.parent.name))
    return found


def socketio_ready() -> str:
    """'' when the Socket.IO server can run, else why not (npm installs its
    one dependency into bench/socketio/node_modules on first use)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        return "Node.js or npm is not installed"
    folder = ROOT / "bench" / "socketio"
    if not (folder / "node_modules" / "socket.io").is_dir():
        done = subprocess.run(
            ["npm", "install", "--silent", "--no-audit", "--no-fund", "--no-package-lock"],
            cwd=folder,
            check=False,
            capture_output=True,
        )
        if done.returncode != 0:
            return f"npm install failed: {done.stderr.decode(errors='replace')[-200:]}"
    return ""


@contextlib.asynccontextmanager
async def server(name: str) -> AsyncIterator[Server]:
    if name == "bare":
        argv = [sys.executable, "bench/bare_server.py"]
        async with process_server(name, argv, socketio=False) as found:
            yield found
    elif name == "socket.io":
        argv = ["node", "bench/socketio/server.js"]
        async with process_server(name, argv, socketio=True) as found:
            yield found
    else:
        async with parley_server() as found:
            yield found


# ---------------------------------------------------------------- measuring


@dataclass
class Subscriber:
    """What one subscriber saw of the room."""

    client: Client
    last_seq: int = 0
    frames: int = 0
    deliveries: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    duplicates: int = 0
    out_of_order: int = 0
    gaps: int = 0
    last_frame_at: float = 0.0
    # frames other than messages (joins, presence, answers): a storm's own
    other_frames: int = 0
    last_other_at: float = 0.0
    measuring: bool = False
    joined_at: float = 0.0
    joined: asyncio.Event = field(default_factory=asyncio.Event)
    errors: dict[str, int] = field(default_factory=dict)

    async def run(self) -> None:
        """Take the connection's frames until it closes."""
        self.client.listen(self.take)
        await asyncio.shield(self.client.closed)  # (cancelling run leaves it be)

    def take(self, frame: dict[str, Any]) -> None:
        now = time.perf_counter()
        self.frames += 1
        self.last_frame_at = now
        kind = frame.get("type")
        if kind != "message":
            self.other_frames += 1
            self.last_other_at = now
        if kind == "joined":
            self.joined_at = now
            self.joined.set()
            return
        if kind == "error":
            code = str(frame.get("code"))
            self.errors[code] = self.errors.get(code, 0) + 1
            return
        seq = frame.get("seq")
        if seq is None:
            return  # online/offline and the like: no place in the log
        if not self.last_seq:
            # the first entry after joining (Parley sends a backlog of
            # the last 50 first): every later one must follow it
            self.last_seq = seq - 1
        if seq <= self.last_seq:
            if seq == self.last_seq:
                self.duplicates += 1
            else:
                self.out_of_order += 1
            return
        self.gaps += seq - self.last_seq - 1
        self.last_seq = seq
        if kind == "message" and self.measuring:
            self.deliveries += 1
            sent_ns = int(str(frame["text"]).split()[0])
            self.latencies_ms.append((time.perf_counter_ns() - sent_ns) / 1e6)


def core_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the servers' core so far (/proc/stat)."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{SERVER_CORE} "):
            values = [float(v) for v in line.split()[1:]]
            idle = values[3] + values[4]  # idle + iowait
            return sum(values) - idle, sum(values)
    return 0.0, 0.0


@dataclass
class Outcome:
    """One scenario against one server."""

    server: str
    values: dict[str, float]
    note: str = ""


async def open_members(target: Server, users: list[str]) -> list[Client]:
    """Connect every user (at most 200 handshakes at a time)."""
    slots = asyncio.Semaphore(200)

    async def one(user: str) -> Client:
        async with slots:
            return await Client.open(target.url(user), target.socketio)

    return await asyncio.gather(*(one(u) for u in users))


async def wait_quiet(
    subscribers: list[Subscriber], quiet: float, deadline: float, messages: bool = True
) -> None:
    """Until no subscriber got a frame (but messages, unless `messages`)
    for `quiet` seconds, or the deadline."""
    end = time.perf_counter() + deadline
    while time.perf_counter() < end:
        latest = max(
            (s.last_frame_at if messages else s.last_other_at for s in subscribers), default=0.0
        )
        if time.perf_counter() - latest >= quiet:
            return
        await asyncio.sleep(quiet / 4)


async def fanout(
    target: Server,
    subscribers: int,
    publishers: int,
    window: int,
    seconds: float,
    rate: float = 0.0,
) -> Outcome:
    """Closed loop (each publisher keeps `window` sends in flight) or, with
    `rate`, open loop: the publishers together send `rate` messages a second
    on a fixed schedule, whatever the acks do."""
    owner = await Client.open(target.url("owner"), target.socketio)
    await owner.request({"type": "create", "room": ROOM}, "created")
    subs = [
        Subscriber(c) for c in await open_members(target, [f"s{i:05d}" for i in range(subscribers)])
    ]
    readers = [asyncio.create_task(s.run()) for s in subs]
    for sub in subs:
        await sub.client.send({"type": "join", "room": ROOM})
    pubs = await open_members(target, [f"p{i:03d}" for i in range(publishers)])
    for pub in pubs:
        await pub.request({"type": "join", "room": ROOM}, "joined")
    await wait_quiet(subs, quiet=1.0, deadline=120)

    acked: list[int] = []
    stop = False

    async def publish(pub: Client, index: int) -> None:
        credits = asyncio.Semaphore(window)
        sent = 0

        async def acks() -> None:
            async for frame in pub.frames():
                if frame.get("type") == "ack":
                    acked.append(int(frame["seq"]))
                    credits.release()

        reader = asyncio.create_task(acks())
        interval = publishers / rate if rate else 0.0
        due = time.perf_counter()
        while not stop:
            if interval:
                due += interval
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
            else:
                await credits.acquire()
            sent += 1
            text = f"{time.perf_counter_ns()} p{index}"
            await pub.send({"type": "send", "room": ROOM, "text": text, "id": f"{index}-{sent}"})
        await asyncio.sleep(2.0)  # the last acks
        reader.cancel()

    for sub in subs:
        sub.measuring = True
    started, cpu_started, core_started = time.perf_counter(), time.process_time(), core_busy()
    writers = [asyncio.create_task(publish(p, i)) for i, p in enumerate(pubs)]
    await asyncio.sleep(seconds)
    delivered = sum(s.deliveries for s in subs)
    acks_seen = len(acked)
    elapsed = time.perf_counter() - started
    generator = (time.process_time() - cpu_started) / elapsed
    core_now = core_busy()
    server_core = (core_now[0] - core_started[0]) / max(1.0, core_now[1] - core_started[1])
    stop = True
    await asyncio.gather(*writers)
    await wait_quiet(subs, quiet=1.0, deadline=30)
    last = max(acked, default=0)
    lost = sum(max(0, last - s.last_seq) for s in subs)
    latencies = [x for s in subs for x in s.latencies_ms]
    for task in readers:
        task.cancel()
    await asyncio.gather(*(c.close() for c in [owner, *pubs, *(s.client for s in subs)]))
    return Outcome(
        target.name,
        {
            "deliveries/s": delivered / elapsed,
            "acks/s": acks_seen / elapsed,
            "p50 ms": percentile(latencies, 50) if latencies else float("nan"),
            "p99 ms": percentile(latencies, 99) if latencies else float("nan"),
            "lost": lost,
            "duplicated": sum(s.duplicates for s in subs),
            "out of order": sum(s.out_of_order for s in subs),
            "gaps": sum(s.gaps for s in subs),
            "server core %": 100 * server_core,
            "generator %": 100 * generator,
        },
    )


async def join_storm(
    target: Server, clients: int, members: bool, rooms: int = 1, flow: float = 50.0
) -> Outcome:
    """Every client joins at once, spread over `rooms` rooms; with `members`
    they joined before and reconnect (a gateway restart, a network blip):
    membership is kept, so the storm is only subscriptions and presence.

    Meanwhile a member who joined before the storm publishes `flow`
    messages a second into the first room and another one, also joined
    before, watches them arrive: how late they are while the storm lasts
    says whether messages keep flowing through it.
    """
    owner = await Client.open(target.url("owner"), target.socketio)
    names = [ROOM if r == 0 else f"{ROOM}{r:03d}" for r in range(rooms)]
    for room in names:
        await owner.request({"type": "create", "room": room}, "created")
    users = [f"j{i:05d}" for i in range(clients)]
    room_of = {user: names[i % rooms] for i, user in enumerate(users)}
    if members:
        first = [Subscriber(c) for c in await open_members(target, users)]
        readers = [asyncio.create_task(s.run()) for s in first]
        await asyncio.gather(
            *(
                s.client.send({"type": "join", "room": room_of[u]})
                for s, u in zip(first, users, strict=True)
            )
        )
        await asyncio.wait_for(asyncio.gather(*(s.joined.wait() for s in first)), 120)
        await wait_quiet(first, quiet=1.0, deadline=120)
        for task in readers:
            task.cancel()
        await asyncio.gather(*(s.client.close() for s in first))
    publisher, watcher_client = await open_members(target, ["flowpub", "flowwatch"])
    await publisher.request({"type": "join", "room": ROOM}, "joined")
    await watcher_client.request({"type": "join", "room": ROOM}, "joined")
    watcher = Subscriber(watcher_client, measuring=True)
    watching = asyncio.create_task(watcher.run())
    acked: list[int] = []

    async def acks() -> None:
        async for frame in publisher.frames():
            if frame.get("type") == "ack":
                acked.append(int(frame["seq"]))

    acking = asyncio.create_task(acks())
    subs = [Subscriber(c) for c in await open_members(target, users)]
    readers = [asyncio.create_task(s.run()) for s in subs]
    storming = True

    async def publish() -> int:
        sent, due = 0, time.perf_counter()
        while storming:
            due += 1 / flow
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            sent += 1
            text = f"{time.perf_counter_ns()} flow"
            await publisher.send({"type": "send", "room": ROOM, "text": text, "id": f"f{sent}"})
        return sent

    flowing = asyncio.create_task(publish())
    started = time.perf_counter()
    await asyncio.gather(
        *(
            s.client.send({"type": "join", "room": room_of[u]})
            for s, u in zip(subs, users, strict=True)
        )
    )
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*(s.joined.wait() for s in subs)), 120)
    all_joined = (
        max(s.joined_at for s in subs) - started if all(s.joined_at for s in subs) else float("nan")
    )
    # (the flow keeps the first room busy: the storm is over when nothing
    # but messages arrives)
    await wait_quiet(subs, quiet=1.0, deadline=120, messages=False)
    storming = False
    sent = await flowing
    storm_seconds = time.perf_counter() - started
    await wait_quiet([watcher], quiet=1.0, deadline=30)
    frames = sum(s.other_frames for s in subs)
    errors: dict[str, int] = {}
    for s in subs:
        for code, count in s.errors.items():
            errors[code] = errors.get(code, 0) + count
    for task in [*readers, watching, acking]:
        task.cancel()
    await asyncio.gather(
        *(c.close() for c in [owner, publisher, watcher_client, *(s.client for s in subs)])
    )
    latencies = watcher.latencies_ms
    return Outcome(
        target.name,
        {
            "all joined s": all_joined,
            "storm frames": frames,
            "per client": frames / clients,
            "flow sent": sent,
            "flow acked": len(acked),
            "flow delivered": len(latencies),
            "flow p50 ms": percentile(latencies, 50) if latencies else float("nan"),
            "flow p99 ms": percentile(latencies, 99) if latencies else float("nan"),
            "storm s": storm_seconds,
            "errors": sum(errors.values()),
        },
        note=" ".join(f"{c}: {n}" for c, n in sorted(errors.items())),
    )


def rss_bytes(pids: list[int]) -> int:
    """Resident memory of the processes, summed (/proc/PID/statm)."""
    page = os.sysconf("SC_PAGE_SIZE")
    return sum(int(Path(f"/proc/{p}/statm").read_text().split()[1]) * page for p in pids)


async def idle_connections(target: Server, rooms: int, per_room: int) -> Outcome:
    """rooms x per_room clients, each joined to one room, then left idle:
    the connection-holding process's resident memory per connection."""
    owner = await Client.open(target.url("owner"), target.socketio)
    names = [f"idle{r:03d}" for r in range(rooms)]
    for room in names:
        await owner.request({"type": "create", "room": room}, "created")
    before = rss_bytes(target.pids)
    users = [(f"u{r:03d}x{m:03d}", names[r]) for r in range(rooms) for m in range(per_room)]
    clients = await open_members(target, [u for u, _ in users])
    slots = asyncio.Semaphore(200)

    async def join(client: Client, room: str) -> None:
        async with slots:
            await client.request({"type": "join", "room": room}, "joined")

    await asyncio.gather(*(join(c, r) for c, (_, r) in zip(clients, users, strict=True)))
    subs = [Subscriber(c) for c in clients]
    readers = [asyncio.create_task(s.run()) for s in subs]
    await wait_quiet(subs, quiet=2.0, deadline=120)
    after = rss_bytes(target.pids)
    for task in readers:
        task.cancel()
    await asyncio.gather(*(c.close() for c in [owner, *clients]))
    count = len(clients)
    per = (after - before) / count / 1024
    return Outcome(target.name, {"connections": count, "KB per connection": per})


FLOOR_SERVER = """
import asyncio, sys
import grpc
from grpc_health.v1 import health, health_pb2_grpc
async def main():
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
    server.add_insecure_port("127.0.0.1:" + sys.argv[1])
    await server.start()
    print("ready", flush=True)
    await server.wait_for_termination()
asyncio.run(main())
"""


async def floor(samples: int) -> dict[str, float]:
    """The physical floor of a commit here: one gRPC round trip (to a bare
    server on core 0) and one fsync of a small write (where the nodes keep
    their data), p50 of each."""
    fsyncs = []
    with tempfile.NamedTemporaryFile() as file:
        for _ in range(samples):
            started = time.perf_counter()
            file.write(b"x" * 100)
            file.flush()
            os.fsync(file.fileno())
            fsyncs.append((time.perf_counter() - started) * 1000)
    argv = [sys.executable, "-c", FLOOR_SERVER]
    async with process_server("grpc", argv, socketio=False) as target:
        port = target.base.rsplit(":", 1)[1].rstrip("/")
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            trips = []
            for _ in range(samples):
                started = time.perf_counter()
                await stub.Check(health_pb2.HealthCheckRequest())
                trips.append((time.perf_counter() - started) * 1000)
    return {"grpc round trip": percentile(trips, 50), "fsync": percentile(fsyncs, 50)}


async def sequential(target: Server, seconds: float) -> dict[str, float]:
    """One sender, one message in flight: client ack p50/p99, and the nodes'
    own commit latency (mean: the histogram's buckets are coarser than the
    differences that matter here)."""
    before = [scrape_histogram(a, "parley_commit_latency_seconds") for a in target.nodes]
    sender = await Client.open(target.url("solo"), target.socketio)
    await sender.request({"type": "create", "room": ROOM}, "created")
    await sender.request({"type": "join", "room": ROOM}, "joined")
    acks: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        started = time.perf_counter()
        await sender.request(
            {"type": "send", "room": ROOM, "text": "x", "id": f"s{len(acks)}"}, "ack"
        )
        acks.append((time.perf_counter() - started) * 1000)
    await sender.close()
    after = [scrape_histogram(a, "parley_commit_latency_seconds") for a in target.nodes]
    total = sum(a[0] - b[0] for a, b in zip(after, before, strict=True))
    count = sum(a[1] - b[1] for a, b in zip(after, before, strict=True))
    return {
        "ack p50": percentile(acks, 50),
        "ack p99": percentile(acks, 99),
        "node commit mean": total / count * 1000 if count else float("nan"),
    }


# ------------------------------------------------------------------ running


def table(title: str, outcomes: list[Outcome], ratio_of: str) -> str:
    keys = list(outcomes[0].values)
    bare = next((o for o in outcomes if o.server == "bare"), None)
    lines = [
        f"\n{title}",
        "| server | " + " | ".join(keys) + " | x bare |",
        "|---" * (len(keys) + 2) + "|",
    ]
    for outcome in outcomes:
        cells = [
            f"{outcome.values[k]:,.2f}"
            if isinstance(outcome.values[k], float)
            else f"{outcome.values[k]:,}"
            for k in keys
        ]
        ratio = ""
        if bare is not None and bare.values[ratio_of]:
            ratio = f"{outcome.values[ratio_of] / bare.values[ratio_of]:.2f}"
        lines.append(f"| {outcome.server} | " + " | ".join(cells) + f" | {ratio} |")
    lines.extend(f"{o.server}: {o.note}" for o in outcomes if o.note)
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> None:
    os.sched_setaffinity(0, {GENERATOR_CORE})
    names = list(args.servers)
    if "socket.io" in names and (why := socketio_ready()):
        print(f"note: socket.io skipped: {why}", flush=True)
        names.remove("socket.io")
    if "fanout" in args.only:
        for subscribers in args.subscribers:
            outcomes = []
            for name in names:
                async with server(name) as target:
                    outcomes.append(
                        await fanout(
                            target, subscribers, args.publishers, args.window, args.seconds
                        )
                    )
            print(
                table(
                    f"fan-out: 1 room x {subscribers} subscribers, {args.publishers} publishers"
                    f" x window {args.window}, {args.seconds:.0f} s",
                    outcomes,
                    "deliveries/s",
                ),
                flush=True,
            )
    if "rate" in args.only:
        outcomes = []
        for name in names:
            async with server(name) as target:
                outcomes.append(
                    await fanout(target, args.rate_subscribers, 1, 1, args.seconds, args.rate)
                )
        title = (
            f"fixed rate: {args.rate:.0f} msg/s into 1 room x {args.rate_subscribers}"
            f" subscribers, {args.seconds:.0f} s"
        )
        print(table(title, outcomes, "p99 ms"), flush=True)
    if "pipeline" in args.only:
        outcomes = []
        for name in names:
            async with server(name) as target:
                outcomes.append(
                    await fanout(target, 0, args.publishers, args.pipeline_window, args.seconds)
                )
        title = (
            f"pipeline: 1 room, {args.publishers} publishers x window {args.pipeline_window},"
            f" no other subscribers, {args.seconds:.0f} s"
        )
        print(table(title, outcomes, "acks/s"), flush=True)
    if "latency" in args.only and "parley" in names:
        low = await floor(500)
        async with server("parley") as target:
            seen = await sequential(target, args.seconds)
        bound = low["grpc round trip"] + low["fsync"]
        print(
            f"\nlatency, one message in flight (ms): floor = gRPC round trip"
            f" {low['grpc round trip']:.2f} + fsync {low['fsync']:.2f} = {bound:.2f};"
            f" Parley node commit mean {seen['node commit mean']:.2f}"
            f" ({seen['node commit mean'] - bound:+.2f}), client ack p50 {seen['ack p50']:.2f}"
            f" ({seen['ack p50'] - bound:+.2f}), p99 {seen['ack p99']:.2f}",
            flush=True,
        )
    if "idle" in args.only:
        outcomes = []
        for name in names:
            async with server(name) as target:
                outcomes.append(await idle_connections(target, 100, 100))
        title = "idle: 100 rooms x 100 members, each connected and joined"
        print(table(title, outcomes, "KB per connection"), flush=True)
    for scenario, members in (("joins", False), ("reconnects", True)):
        if scenario not in args.only:
            continue
        for storm in args.storms:
            clients, rooms = (int(n) for n in storm.split("x"))
            outcomes = []
            for name in names:
                async with server(name) as target:
                    outcomes.append(await join_storm(target, clients, members, rooms))
            what = "members reconnect and join" if members else "new clients join"
            where = "one room" if rooms == 1 else f"{rooms} rooms"
            print(
                table(
                    f"{scenario}: {clients} {what} {where} at once, 50 msg/s flowing in one",
                    outcomes,
                    "all joined s",
                ),
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--subscribers", type=int, nargs="*", default=[100, 1000])
    parser.add_argument("--publishers", type=int, default=2)
    parser.add_argument("--window", type=int, default=32)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--rate-subscribers", type=int, default=1000)
    parser.add_argument("--pipeline-window", type=int, default=256)
    parser.add_argument(
        "--storms", nargs="*", default=["1000x1", "10000x100"],
        help="join storms: CLIENTSxROOMS (the clients spread evenly over the rooms)",
    )  # fmt: skip
    parser.add_argument(
        "--only",
        nargs="*",
        default=["fanout", "rate", "pipeline", "latency", "joins", "reconnects", "idle"],
    )
    parser.add_argument("--servers", nargs="*", default=["bare", "socket.io", "parley"])
    args = parser.parse_args()
    if os.cpu_count() is None or (os.cpu_count() or 0) < 2:
        sys.exit("needs two cores: one for the servers, one for the load generator")
    uvloop.run(run(args))


if __name__ == "__main__":
    main()
