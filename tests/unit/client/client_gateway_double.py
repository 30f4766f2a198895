"""A tiny in-process gateway speaking DESIGN §5, for unit tests of the client.

It is a real `websockets` server on 127.0.0.1:0 with one flat log per room,
plus knobs to misbehave the ways the client must survive: drop live entries
(a gap), send live entries twice (duplicates), cut every socket (a gateway
restart), refuse a token (HTTP 401). Integration tests use the real cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response


@dataclass
class RoomState:
    """One room: owner, persistent members and the log (index i holds seq i+1)."""

    owner: str
    members: set[str] = field(default_factory=set)
    log: list[dict[str, Any]] = field(default_factory=list)
    acks: dict[tuple[str, str], int] = field(default_factory=dict)


class GatewayDouble:
    """A §5 gateway in one process; start() with port 0, read `url`."""

    def __init__(self) -> None:
        self.rooms: dict[str, RoomState] = {}
        self.subscribers: dict[str, set[ServerConnection]] = {}
        self.users: dict[ServerConnection, str] = {}
        self.drop_live: set[tuple[str, int]] = set()
        """(room, seq) pairs not pushed live: the client sees a gap."""
        self.duplicate_live = False
        """Push every live entry twice."""
        self.history_works = True
        """When False, `history` returns no messages (an unfillable gap)."""
        self.fail_joins = 0
        """Answer this many of the next joins with `unavailable`."""
        self.refuse_token = "bad"
        """Handshakes with this token get HTTP 401."""
        self.frames_in: list[dict[str, Any]] = []
        self._server: Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        """The endpoint clients connect to."""
        return f"ws://127.0.0.1:{self.port}/ws"

    async def start(self) -> None:
        """Listen on 127.0.0.1 (port 0 the first time, the same port after)."""
        self._server = await serve(
            self._handle, "127.0.0.1", self.port, process_request=self._check_auth
        )
        self.port = next(iter(self._server.sockets)).getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and cut every connection (like a killed gateway)."""
        if self._server is not None:
            self._server.close(close_connections=True)
            await self._server.wait_closed()
            self._server = None

    def subscribed(self, room: str, user: str) -> bool:
        """True once a connection of `user` receives `room`'s live entries."""
        return any(self.users.get(ws) == user for ws in self.subscribers.get(room, ()))

    async def cut_connections(self) -> None:
        """Drop every client socket abruptly but keep listening."""
        for ws in list(self.users):
            ws.transport.abort()

    def add_entry(self, room: str, entry: dict[str, Any]) -> dict[str, Any]:
        """Append an entry to a room's log and push it live (honouring the knobs)."""
        state = self.rooms[room]
        entry = {
            **entry,
            "room": room,
            "seq": len(state.log) + 1,
            "ts": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        }
        state.log.append(entry)
        if (room, entry["seq"]) not in self.drop_live:
            text = json.dumps(entry)
            for ws in list(self.subscribers.get(room, ())):
                self._push(ws, text)
                if self.duplicate_live:
                    self._push(ws, text)
        return entry

    def _push(self, ws: ServerConnection, text: str) -> None:
        async def send() -> None:
            with contextlib.suppress(Exception):
                await ws.send(text)

        # Pushes keep their order: each task is scheduled in call order and
        # websockets serializes sends on one connection.
        asyncio.get_running_loop().create_task(send())

    def _check_auth(self, conn: ServerConnection, request: Request) -> Response | None:
        query = parse_qs(urlsplit(request.path).query)
        if query.get("token", [""])[0] == self.refuse_token:
            return conn.respond(HTTPStatus.UNAUTHORIZED, "bad token\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        query = parse_qs(urlsplit(ws.request.path).query)
        user = query.get("user", query.get("token", ["anon"]))[0]
        self.users[ws] = user
        try:
            async for raw in ws:
                frame = json.loads(raw)
                self.frames_in.append(frame)
                reply = self._answer(ws, user, frame)
                if reply is not None:
                    if "id" in frame:
                        reply["id"] = frame["id"]
                    await ws.send(json.dumps(reply))
                    if reply["type"] == "joined":
                        await self._backlog(ws, frame)
        except Exception:
            pass
        finally:
            self.users.pop(ws, None)
            for subs in self.subscribers.values():
                subs.discard(ws)

    async def _backlog(self, ws: ServerConnection, frame: dict[str, Any]) -> None:
        log = self.rooms[frame["room"]].log
        since = frame.get("since")
        backlog = log[since:] if since is not None else log[-50:]
        for entry in backlog:
            await ws.send(json.dumps(entry))
        self.subscribers.setdefault(frame["room"], set()).add(ws)

    def _error(self, code: str, message: str) -> dict[str, Any]:
        return {"type": "error", "code": code, "message": message}

    def _answer(
        self, ws: ServerConnection, user: str, frame: dict[str, Any]
    ) -> dict[str, Any] | None:
        kind = frame.get("type")
        room = frame.get("room", "")
        state = self.rooms.get(room)
        if kind == "ping":
            return {"type": "pong"}
        if kind == "rooms":
            return {
                "type": "rooms",
                "rooms": [
                    {
                        "room": name,
                        "owner": r.owner,
                        "members": len(r.members),
                        "last_seq": len(r.log),
                        "administrator": "node-0",
                    }
                    for name, r in sorted(self.rooms.items())
                ],
            }
        if kind == "create":
            if state is not None:
                return self._error("room_exists", f"room {room} already exists")
            self.rooms[room] = RoomState(owner=user)
            return {"type": "created", "room": room, "owner": user}
        if state is None:
            return self._error("not_found", f"no room named {room}")
        if kind == "join":
            if self.fail_joins > 0:
                self.fail_joins -= 1
                return self._error("unavailable", "the room is electing an administrator")
            if user not in state.members:
                state.members.add(user)
                self.add_entry(room, {"type": "presence", "user": user, "event": "join"})
            return {
                "type": "joined",
                "room": room,
                "last_seq": len(state.log),
                "members": sorted(state.members),
            }
        if kind == "send":
            if user not in state.members:
                return self._error("not_member", f"{user} is not a member of {room}")
            key = (user, str(frame.get("id")))
            if key not in state.acks:
                entry = self.add_entry(
                    room, {"type": "message", "from": user, "text": frame["text"]}
                )
                state.acks[key] = entry["seq"]
            return {"type": "ack", "room": room, "seq": state.acks[key]}
        if kind == "history":
            before = frame.get("before") or len(state.log) + 1
            limit = frame.get("limit") or 50
            older = state.log[: before - 1][-limit:] if self.history_works else []
            return {"type": "history", "room": room, "messages": older}
        if kind == "members":
            online = set(self.users.values())
            return {
                "type": "members",
                "room": room,
                "members": [{"user": m, "online": m in online} for m in sorted(state.members)],
            }
        if kind == "leave":
            if user in state.members:
                state.members.discard(user)
                self.add_entry(room, {"type": "presence", "user": user, "event": "leave"})
            self.subscribers.get(room, set()).discard(ws)
            return {"type": "left", "room": room}
        if kind == "delete":
            if state.owner != user:
                return self._error("forbidden", "only the owner can delete a room")
            text = json.dumps({"type": "deleted", "room": room})
            for sub in list(self.subscribers.pop(room, set())):
                if sub is not ws:
                    self._push(sub, text)
            del self.rooms[room]
            return {"type": "deleted", "room": room}
        return self._error("bad_request", f"unknown frame type {kind!r}")
