"""The bare baseline of the comparison benchmark: rooms over plain `websockets`.

It speaks the slice of Parley's client protocol the load generator uses
(join, send, message with a per-room seq, ack) and nothing else: no
replication, no storage, no auth. What Parley costs on top of this is the
price of its guarantees.

    python bench/bare_server.py PORT
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from websockets.asyncio.server import ServerConnection, broadcast, serve

rooms: dict[str, set[ServerConnection]] = {}
seqs: dict[str, int] = {}


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z"


async def handler(ws: ServerConnection) -> None:
    user = ws.request.path.partition("user=")[2] if ws.request else ""
    joined: set[str] = set()
    try:
        async for raw in ws:
            frame = json.loads(raw)
            kind, room = frame.get("type"), frame.get("room", "")
            if kind == "join":
                members = rooms.setdefault(room, set())
                members.add(ws)
                joined.add(room)
                seq = seqs[room] = seqs.get(room, 0) + 1
                await ws.send(json.dumps({"type": "joined", "room": room, "last_seq": seq - 1}))
                event = {
                    "type": "presence",
                    "room": room,
                    "seq": seq,
                    "user": user,
                    "event": "join",
                }
                broadcast(members, json.dumps(event))
            elif kind == "send":
                seq = seqs[room] = seqs.get(room, 0) + 1
                await ws.send(
                    json.dumps({"type": "ack", "id": frame["id"], "room": room, "seq": seq})
                )
                message = {
                    "type": "message",
                    "room": room,
                    "seq": seq,
                    "from": user,
                    "text": frame["text"],
                    "ts": now_iso(),
                }
                broadcast(rooms.get(room, ()), json.dumps(message))
            elif kind == "create":
                await ws.send(json.dumps({"type": "created", "room": room, "owner": user}))
    finally:
        for room in joined:
            rooms.get(room, set()).discard(ws)


async def main() -> None:
    async with serve(handler, "127.0.0.1", int(sys.argv[1]), max_queue=None) as server:
        print("ready", flush=True)
        await server.serve_forever()


asyncio.run(main())
