"""`helm test` for Parley: chat once through the gateway Service.

Connects to the URL given as the first argument as user `helmtest` (with a
JWT signed by PARLEY_JWT_SECRET when auth is on), creates a fresh room,
joins it, sends a message and waits until that message comes back. Retries
until the deadline (second argument, seconds) while the cluster settles.
Exit status 0 means the whole path works: gateway, placement, replication.
"""

import asyncio
import json
import os
import sys
import time
import uuid

from websockets.asyncio.client import connect

USER = "helmtest"


def url_with_credentials(base: str) -> str:
    """The gateway URL with ?token= when auth is on, else ?user=."""
    secret = os.environ.get("PARLEY_JWT_SECRET", "")
    secret_file = os.environ.get("PARLEY_JWT_SECRET_FILE", "")
    if secret_file:
        with open(secret_file, encoding="utf-8") as file:
            secret = file.read().strip()
    if not secret:
        return f"{base}?user={USER}"
    import jwt

    token = jwt.encode({"sub": USER, "exp": int(time.time()) + 600}, secret, algorithm="HS256")
    return f"{base}?token={token}"


async def request(ws, frame: dict, want: str) -> dict:
    """Send one frame and return the first reply of type `want` (or raise on error)."""
    await ws.send(json.dumps(frame))
    while True:
        reply = json.loads(await ws.recv())
        if reply.get("type") == "error" and reply.get("id") == frame.get("id"):
            if frame["type"] == "create" and reply.get("code") == "room_exists":
                return reply
            raise RuntimeError(f"{frame['type']}: {reply.get('code')}: {reply.get('message')}")
        if reply.get("type") == want:
            return reply


async def chat_once(url: str) -> None:
    """Create, join, send, and wait for the message to be delivered back."""
    room = f"helmtest-{uuid.uuid4().hex[:12]}"
    text = f"hello from helm test {uuid.uuid4().hex}"
    async with connect(url, open_timeout=10) as ws:
        await request(ws, {"type": "create", "room": room, "id": "c1"}, "created")
        await request(ws, {"type": "join", "room": room, "id": "j1"}, "joined")
        await ws.send(json.dumps({"type": "send", "room": room, "text": text, "id": "m1"}))
        while True:
            reply = json.loads(await ws.recv())
            if reply.get("type") == "error":
                raise RuntimeError(f"send: {reply.get('code')}: {reply.get('message')}")
            if reply.get("type") == "message" and reply.get("text") == text:
                print(f"ok: {room} seq {reply.get('seq')} from {reply.get('from')}")
                return


async def main(base: str, seconds: float) -> int:
    """Try chat_once until it succeeds or the deadline passes."""
    deadline = time.monotonic() + seconds
    attempt = 0
    while True:
        attempt += 1
        try:
            await asyncio.wait_for(chat_once(url_with_credentials(base)), 20)
            return 0
        except Exception as exc:  # any failure is retried until the deadline
            print(f"attempt {attempt} failed: {type(exc).__name__}: {exc}", flush=True)
            if time.monotonic() + 2 > deadline:
                return 1
            await asyncio.sleep(2)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 90)))
