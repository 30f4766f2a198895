"""StaticDiscovery: a fixed node set that tests can change."""

from __future__ import annotations

from parley.cluster.discovery import Discovery, Members
from parley.cluster.static import StaticDiscovery

NODES = {"node-0": "127.0.0.1:7001", "node-1": "127.0.0.1:7002"}


async def test_members_after_start() -> None:
    """start() returns with the given set known."""
    discovery: Discovery = StaticDiscovery(NODES)
    await discovery.start()
    assert discovery.members() == NODES
    await discovery.stop()


def test_members_is_a_copy() -> None:
    """Mutating the returned dict or the input does not change the set."""
    given = dict(NODES)
    discovery = StaticDiscovery(given)
    given["node-9"] = "127.0.0.1:1"
    discovery.members()["node-8"] = "127.0.0.1:2"
    assert discovery.members() == NODES


def test_set_members_notifies_subscribers() -> None:
    """set_members() calls every subscriber with the new set."""
    discovery = StaticDiscovery(NODES)
    seen: list[Members] = []
    discovery.subscribe(seen.append)
    grown = {**NODES, "node-2": "127.0.0.1:7003"}
    discovery.set_members(grown)
    assert seen == [grown]
    assert discovery.members() == grown


def test_set_members_unchanged_does_not_notify() -> None:
    """Setting the same set again is not a change."""
    discovery = StaticDiscovery(NODES)
    seen: list[Members] = []
    discovery.subscribe(seen.append)
    discovery.set_members(dict(NODES))
    assert seen == []


def test_unsubscribe_stops_notifications() -> None:
    """After the returned function is called the callback is not called again."""
    discovery = StaticDiscovery(NODES)
    seen: list[Members] = []
    unsubscribe = discovery.subscribe(seen.append)
    unsubscribe()
    unsubscribe()
    discovery.set_members({})
    assert seen == []


def test_failing_subscriber_does_not_block_others() -> None:
    """An exception in one callback is logged and the next still runs."""
    discovery = StaticDiscovery(NODES)
    seen: list[Members] = []

    def broken(_: Members) -> None:
        raise RuntimeError("boom")

    discovery.subscribe(broken)
    discovery.subscribe(seen.append)
    discovery.set_members({})
    assert seen == [{}]
