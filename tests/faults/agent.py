"""The fault suite's client host: load generator, prober and history recorder.

The fault tests run every Parley process in a network namespace, and the
test's own clients too (DESIGN §8), so the test process cannot open a socket
to any of them. It starts this program on the client host instead
(`ip netns exec NS python tests/faults/agent.py`) and drives it with JSON
lines on stdin; each request `{"rid": N, "op": ..., ...}` gets one reply line
`{"rid": N, "ok": true, ...}` (or `"ok": false, "error": ...`) on stdout.
Requests run concurrently. Operations:

* `probe {kind: "grpc"|"http", addr}` -> `{ready}`: node gRPC health / gateway /readyz;
* `setup {gateways, rooms, users}`: the first user creates the rooms, every
  user connects (round robin over the gateways) and joins every room from seq 1;
* `start {rate, seconds}`: every user sends `rate` messages/s in total, over
  its rooms in turn, until stopped (at most `seconds`); a send that fails or
  gets no answer is retried with the same id (idempotent) until acknowledged;
  every few sends it also re-sends an acked id, which must get its seq back;
  a closed connection is replaced by one to the next gateway, rejoining each
  room with `since` = the last seq seen;
* `stats {}` -> acks so far and the time of the last ack per room;
* `rooms {}` -> the `rooms` listing, from a fresh connection;
* `stop {settle}`: stop sending and wait (at most `settle` s) for the last sends;
* `finish {out, drain}`: wait until every user saw each room up to its final
  last seq (at most `drain` s), read every room's history from a fresh
  client on each gateway, and write the whole record (support.checker
  History) as JSON to `out`;

The program ends when its stdin closes.

Times are `time.monotonic()`, the same clock as the test process's.
Diagnostics go to stderr (the test sends it to a log file).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from parley.supervisor import grpc_serving, http_ready
from support.checker import Delivery, HistEntry, History, Send, Subscription
from support.client import ChatClient
from websockets.exceptions import WebSocketException

ATTEMPT_TIMEOUT = 4.0
"""Seconds one send attempt waits for its ack before it is retried."""

RETRY_PAUSE = 0.2
"""Seconds between attempts of one send (a constant pace, not synchronization)."""

RETRYABLE = {"unavailable", "internal", "rate_limited"}
"""Error codes after which a send is retried with the same id."""

CONNECT_TIMEOUT = 15.0
"""Seconds one (re)connection may take: the handshake plus joining every room."""

CONNECT_ERRORS = (OSError, TimeoutError, ConnectionError, RuntimeError, WebSocketException)
"""What a failed connection attempt raises; the next gateway is tried after any of them."""

REQUEST_ERRORS = (TimeoutError, ConnectionError, OSError, WebSocketException)
"""What a request on a connection that died raises; the request is retried."""

RESEND_EVERY = 5
"""Every this many sends, a user also re-sends one of its acked ids (the seq must match)."""


def log(*parts: Any) -> None:
    """One diagnostic line on stderr, with a monotonic timestamp."""
    print(f"{time.monotonic():.3f}", *parts, file=sys.stderr, flush=True)


class User:
    """One chat user: a connection (replaced when it closes) joined to every room."""

    def __init__(self, name: str, gateways: list[str], first_gateway: int, rooms: list[str]):
        """Plan the user; connect() makes the first connection."""
        self.name = name
        self.gateways = gateways
        self.gw = first_gateway
        self.rooms = rooms
        self.conns: list[ChatClient] = []
        self.sends: list[Send] = []
        self.rng = random.Random(name)
        """Picks which acked message to re-send; seeded by the name, so runs repeat."""
        self._lock = asyncio.Lock()

    @property
    def conn(self) -> ChatClient | None:
        """The current connection, if any."""
        return self.conns[-1] if self.conns else None

    def last_seq(self, room: str) -> int:
        """The highest seq this user has received in `room` over all its connections."""
        return max(
            (f["seq"] for c in self.conns for f in c.deliveries.get(room, [])),
            default=0,
        )

    async def connection(self, deadline: float) -> ChatClient:
        """The open connection, reconnecting (and rejoining with since) if it closed.

        Raises:
            TimeoutError: no gateway took us before `deadline`.
        """
        async with self._lock:
            conn = self.conn
            if conn is not None and not conn.closed.is_set():
                return conn
            while True:
                url = self.gateways[self.gw % len(self.gateways)]
                try:
                    async with asyncio.timeout(CONNECT_TIMEOUT):
                        return await self._connect(url)
                except CONNECT_ERRORS as exc:
                    log(self.name, "connect failed", url, repr(exc))
                    self.gw += 1
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{self.name}: no gateway before the deadline") from exc
                    await asyncio.sleep(RETRY_PAUSE)

    async def _connect(self, url: str) -> ChatClient:
        """Connect to `url` and join every room from after the last seq seen."""
        since = {room: self.last_seq(room) for room in self.rooms}
        log(self.name, "connecting to", url)
        conn = await ChatClient.connect(url, self.name, open_timeout=3.0)
        try:
            for room in self.rooms:
                reply = await conn.join(room, since=since[room])
                if reply.get("type") != "joined":
                    raise RuntimeError(f"join {room} -> {reply}")
        except BaseException:
            with contextlib.suppress(Exception):
                await conn.close()
            # Keep what it delivered before failing: it is part of the record.
            self.conns.append(conn)
            raise
        self.conns.append(conn)
        log(self.name, "joined via", url, "since", since)
        return conn

    async def send(self, room: str, msg_id: str, text: str, give_up: float) -> Send:
        """Send one message, retrying with the same id until acked or `give_up` passes."""
        record = Send(
            room=room, client=self.name, msg_id=msg_id, text=text, t_start=time.monotonic()
        )
        self.sends.append(record)
        record.attempts = 0
        while True:
            record.attempts += 1
            try:
                conn = await self.connection(give_up)
                reply = await conn.request(
                    {"type": "send", "room": room, "text": text, "id": msg_id},
                    timeout=ATTEMPT_TIMEOUT,
                )
            except REQUEST_ERRORS as exc:
                record.outcome = "unknown"
                record.errors.append(type(exc).__name__)
            except Exception as exc:  # never let one send end the load: log, retry
                log(self.name, "unexpected error sending", msg_id, repr(exc))
                record.outcome = "unknown"
                record.errors.append(type(exc).__name__)
            else:
                if reply.get("type") == "ack":
                    record.outcome, record.seq, record.t_end = "ok", reply["seq"], time.monotonic()
                    return record
                code = str(reply.get("code"))
                record.outcome, record.t_end = "error", time.monotonic()
                record.errors.append(code)
                if code not in RETRYABLE:
                    log(self.name, "send failed for good", msg_id, reply)
                    return record
            if time.monotonic() >= give_up:
                return record
            await asyncio.sleep(RETRY_PAUSE)

    async def resend(self, record: Send) -> None:
        """Send an acked message again with its id; record the seq of the ack, if one comes."""
        if record.outcome != "ok":
            return
        try:
            conn = await self.connection(time.monotonic() + ATTEMPT_TIMEOUT)
            reply = await conn.request(
                {"type": "send", "room": record.room, "text": record.text, "id": record.msg_id},
                timeout=ATTEMPT_TIMEOUT,
            )
        except (*REQUEST_ERRORS, RuntimeError) as exc:
            log(self.name, "re-send of", record.msg_id, "got no answer:", repr(exc))
            return
        if reply.get("type") == "ack":
            record.reacks.append(int(reply["seq"]))

    def deliveries(self) -> list[Delivery]:
        """Every entry this user received, per connection in order."""
        out: list[Delivery] = []
        for conn in self.conns:
            for room, frames in conn.deliveries.items():
                for f in frames:
                    if f.get("type") == "message":
                        kind, sender, text = "message", f.get("from", ""), f.get("text", "")
                    else:
                        kind, sender, text = str(f.get("event")), f.get("user", ""), ""
                    out.append(Delivery(self.name, room, f["seq"], kind, sender, text))
        return out


class Agent:
    """The request handlers; one instance per process."""

    def __init__(self) -> None:
        """Nothing set up yet."""
        self.gateways: list[str] = []
        self.rooms: list[str] = []
        self.users: list[User] = []
        self.loops: list[asyncio.Task[None]] = []
        self.stopping = asyncio.Event()
        self.stop_at = 0.0

    async def op_probe(self, kind: str, addr: str) -> dict[str, Any]:
        """Is the node (gRPC health) or gateway (/readyz) at `addr` ready?"""
        if kind == "grpc":
            return {"ready": await grpc_serving(addr, seconds=1.0)}
        return {"ready": await http_ready(addr, seconds=1.0)}

    async def op_setup(
        self, gateways: list[str], rooms: list[str], users: list[str]
    ) -> dict[str, Any]:
        """Create the rooms and connect and join every user."""
        self.gateways, self.rooms = gateways, rooms
        self.users = [User(name, gateways, i, rooms) for i, name in enumerate(users)]
        owner = await ChatClient.connect(gateways[0], users[0])
        try:
            for room in rooms:
                reply = await owner.create(room)
                if reply.get("type") != "created":
                    raise RuntimeError(f"create {room} -> {reply}")
        finally:
            await owner.close()
        deadline = time.monotonic() + 20
        await asyncio.gather(*(u.connection(deadline) for u in self.users))
        return {}

    async def op_start(self, rate: float, seconds: float) -> dict[str, Any]:
        """Start every user's send loop: `rate` messages/s per user, at most `seconds`."""
        self.stop_at = time.monotonic() + seconds
        self.loops = [asyncio.create_task(self._send_loop(u, rate)) for u in self.users]
        return {}

    async def _send_loop(self, user: User, rate: float) -> None:
        """Send to the user's rooms in turn at `rate`/s until stopped; each send until acked."""
        k = 0
        next_at = time.monotonic()
        while not self.stopping.is_set() and time.monotonic() < self.stop_at:
            room = user.rooms[k % len(user.rooms)]
            # Retry until acknowledged; stop() bounds this with its settle time.
            await user.send(room, f"{user.name}-{k}", f"{user.name}/{room}/{k}", give_up=1e18)
            k += 1
            if k % RESEND_EVERY == 0:
                await user.resend(user.rng.choice(user.sends))
            next_at = max(next_at + 1.0 / rate, time.monotonic() - 1.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), max(0.0, next_at - time.monotonic()))

    async def op_stats(self) -> dict[str, Any]:
        """Acks so far, and per room the time of the latest ack."""
        last: dict[str, float] = {}
        acked = 0
        for user in self.users:
            for s in user.sends:
                if s.outcome == "ok" and s.t_end is not None:
                    acked += 1
                    last[s.room] = max(last.get(s.room, 0.0), s.t_end)
        return {"acked": acked, "last_ack": last, "now": time.monotonic()}

    async def _fresh(self, i: int = 0, user: str = "observer") -> ChatClient:
        """A new connection as `user`, trying gateways in turn from gateway `i`."""
        deadline = time.monotonic() + 15
        while True:
            url = self.gateways[i % len(self.gateways)]
            try:
                return await ChatClient.connect(url, user, open_timeout=3.0)
            except (OSError, TimeoutError) as exc:
                if time.monotonic() > deadline:
                    raise
                log("observer connect failed", url, repr(exc))
                i += 1
                await asyncio.sleep(RETRY_PAUSE)

    async def op_rooms(self) -> dict[str, Any]:
        """The `rooms` listing, from a fresh connection."""
        client = await self._fresh()
        try:
            return {"rooms": (await client.rooms())["rooms"]}
        finally:
            await client.close()

    async def op_stop(self, settle: float) -> dict[str, Any]:
        """Stop sending; wait at most `settle` s for sends in flight (the rest stay unknown)."""
        self.stopping.set()
        if self.loops:
            done, pending = await asyncio.wait(self.loops, timeout=settle)
            for task in pending:
                task.cancel()
            for task in done:
                if task.exception() is not None:
                    log("send loop failed", repr(task.exception()))
        return {"pending": sum(1 for t in self.loops if t.cancelled())}

    async def _history(self, i: int, room: str) -> list[HistEntry]:
        """Every entry of `room` via gateway `i`, oldest first (retrying while unavailable)."""
        deadline = time.monotonic() + 20
        while True:
            # History is for members: a new connection of the first user (who created the rooms).
            client = await self._fresh(i, self.users[0].name)
            try:
                return await self._read_history(client, room)
            except (RuntimeError, TimeoutError, ConnectionError) as exc:
                if time.monotonic() > deadline:
                    raise
                log("history failed", room, repr(exc))
                await asyncio.sleep(RETRY_PAUSE)
            finally:
                await client.close()

    @staticmethod
    async def _read_history(client: ChatClient, room: str) -> list[HistEntry]:
        """Page backwards through `room`'s history with `before`."""
        entries: list[HistEntry] = []
        before: int | None = None
        while before is None or before > 1:
            reply = await client.history(room, before=before, limit=100)
            if reply.get("type") != "history":
                raise RuntimeError(f"history {room} -> {reply}")
            page = reply["messages"]
            if not page:
                break
            for f in reversed(page):
                if f.get("type") == "message":
                    entries.append(
                        HistEntry(f["seq"], "message", f.get("from", ""), f.get("text", ""))
                    )
                else:
                    entries.append(HistEntry(f["seq"], str(f.get("event")), f.get("user", ""), ""))
            before = page[0]["seq"]
        entries.reverse()
        return entries

    async def _read_histories(self) -> dict[str, dict[str, list[HistEntry]]]:
        """Every room's history through each gateway, by source name."""
        histories: dict[str, dict[str, list[HistEntry]]] = {}
        for i in range(len(self.gateways)):
            source = f"via-gateway-{i}"
            histories[source] = {room: await self._history(i, room) for room in self.rooms}
        return histories

    async def _drain(self, final: dict[str, int], deadline: float) -> None:
        """Wait until every user has received each room up to `final` (or the deadline)."""
        for user in self.users:
            while True:
                behind = [r for r in self.rooms if user.last_seq(r) < final[r]]
                if not behind:
                    break
                if time.monotonic() > deadline:
                    log(user.name, "still behind in", behind, "at the drain deadline")
                    break
                conn = user.conn
                if conn is None or conn.closed.is_set():
                    with contextlib.suppress(TimeoutError):
                        await user.connection(deadline)
                    continue
                await asyncio.sleep(0.05)  # polling the user's receive buffer

    async def op_finish(self, out: str, drain: float) -> dict[str, Any]:
        """Read histories, drain every user to each room's final last seq, write the record.

        If a user saw entries past what the histories held (something committed
        after they were read, e.g. a send abandoned by stop()), the histories
        are read again, at most a few times.
        """
        deadline = time.monotonic() + drain
        for _ in range(3):
            histories = await self._read_histories()
            final = {
                room: max((e[-1].seq for h in histories.values() if (e := h[room])), default=0)
                for room in self.rooms
            }
            await self._drain(final, deadline)
            if all(u.last_seq(r) <= final[r] for u in self.users for r in self.rooms):
                break
            log("entries past the histories were delivered; reading them again")
        history = History(
            sends=[s for u in self.users for s in u.sends],
            deliveries=[d for u in self.users for d in u.deliveries()],
            subscriptions=[
                # Every user was subscribed throughout (rejoining with since): it is owed
                # every entry, and the checker reports whatever it did not get.
                Subscription(u.name, room, from_seq=1, complete=True)
                for u in self.users
                for room in self.rooms
            ],
            histories=histories,
        )
        history.save(Path(out))
        for user in self.users:
            for conn in user.conns:
                with contextlib.suppress(Exception):
                    await conn.close()
        return {"final": final, "reconnects": {u.name: len(u.conns) - 1 for u in self.users}}


async def main() -> None:
    """Serve requests from stdin until it closes."""
    agent = Agent()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    tasks: set[asyncio.Task[None]] = set()

    async def handle(request: dict[str, Any]) -> None:
        rid = request.pop("rid")
        op = request.pop("op")
        try:
            result = await getattr(agent, f"op_{op}")(**request)
            reply = {"rid": rid, "ok": True, **result}
        except Exception as exc:  # one error boundary per request: report, keep serving
            log("request failed", op, repr(exc))
            reply = {"rid": rid, "ok": False, "error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()

    while line := await reader.readline():
        task = asyncio.create_task(handle(json.loads(line)))
        tasks.add(task)
        task.add_done_callback(tasks.discard)


if __name__ == "__main__":
    with contextlib.suppress(SystemExit, KeyboardInterrupt):
        asyncio.run(main())
