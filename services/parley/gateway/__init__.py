"""The WebSocket gateway (DESIGN §4): clients in, room administrators out.

Modules, one job each:

* app.py — the WebSocket server: handshake, one Session per connection.
* server.py / main.py — real discovery, channels and health; `parley gateway`.
* auth.py — who is connecting (`?user=` or a JWT).
* session.py — one connection: reading, rate limit, bounded outbound writes.
* handlers.py — what each client request does.
* router.py — finding a room's administrator and retrying within a deadline.
* errors.py — node errors mapped to client error codes, in one place.
* publisher.py — sends batched into PublishBatch calls per node.
* fanout.py — one Subscribe stream per room, fanned out to local sockets.
* presence.py — online/offline reports to administrators.
* wire.py — WebSocket frames built once, written to many sockets.
* latency.py, ratelimit.py, backoff.py — small helpers.
"""
