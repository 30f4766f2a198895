"""Test hosts in network namespaces, and network faults between them (DESIGN §8).

A `NetLab` builds a tiny private network on this machine:

* one namespace holding only a Linux bridge (`br0`), the "switch";
* one namespace per test host (a node, the client host with the gateways and
  the load generator, ...), each with `lo` and an `eth0` veth whose peer is a
  port of the bridge, and an address from a private /24 (10.213.0.0/24 by
  default) that exists only inside these namespaces.

Faults:

* `isolate(host)` / `heal(host)`: the host's bridge port goes down / up, so
  it can reach no one (like pulling its cable);
* `block(a, b)`: nft rules in `a`'s namespace drop everything between `a`
  and the hosts `b` (both directions); `partition(side, other)` does that for
  every pair across two groups;
* `loss(host, percent, peers)`: nft drops a random `percent` share of the
  packets `host` receives (from `peers`, or from anyone) with
  `numgen random mod 100 < N drop`;
* `throttle(host, kbit)`: a `tc tbf` token bucket on the host's `eth0`
  egress: a slow link whose queue adds delay under load (up to
  `latency_ms`, then drops);
* `clear(host)` / `heal_all()` undo the nft rules, the throttle (and bridge ports).

There is no `tc netem` on this kernel, so there is no fixed-delay fault; a
throttled link is the closest we have.

Run a process on a host with `lab.prefix(host) + argv` (`ip netns exec NS`).
`close()` deletes every namespace (which deletes their links too); it runs on
failure as well, and an atexit hook catches a test that forgot. Namespaces
are named `pf<pid>x<n>-<host>`; `sweep_stale()` removes the ones of test runs
whose process is gone.

    with NetLab() as lab:
        lab.add_hosts(["node-0", "node-1", "client"])
        argv = [*lab.prefix("node-0"), "python", "-m", "parley", "node", ...]
        lab.isolate("node-0")
        lab.heal_all()
"""

from __future__ import annotations

import atexit
import ipaddress
import itertools
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Sequence

import pytest

SUBNET = "10.213.0.0/24"
"""The private subnet; used only inside namespaces a NetLab made."""

TABLE = "parley_faults"
"""The nft table (family inet) that holds our fault rules in a host's namespace."""

_NAME_RE = re.compile(r"^pf(\d+)x\d+-")
_counter = itertools.count()
_LIVE: set[NetLab] = set()


class NetnsError(RuntimeError):
    """An `ip`/`nft` command failed; the message carries its output."""


def run(argv: Sequence[str], stdin: str | None = None, check: bool = True) -> str:
    """Run one `ip`/`nft` command and return its stdout.

    Raises:
        NetnsError: when it exits non-zero and `check` is set.
    """
    done = subprocess.run(
        list(argv), input=stdin, capture_output=True, text=True, timeout=30, check=False
    )
    if check and done.returncode != 0:
        raise NetnsError(f"{' '.join(argv)} -> {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def netns_unavailable_reason() -> str | None:
    """Why namespaces cannot be used here, or None when they can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed"
    probe = f"pf{os.getpid()}x-probe"
    try:
        run(["ip", "netns", "add", probe])
    except (NetnsError, OSError) as exc:
        return f"cannot create a network namespace: {exc}"
    try:
        run(["ip", "-n", probe, "link", "add", "br0", "type", "bridge"])
        run(["ip", "netns", "exec", probe, "nft", "list", "ruleset"])
    except (NetnsError, OSError) as exc:
        return f"bridge or nft unusable in a namespace: {exc}"
    finally:
        run(["ip", "netns", "del", probe], check=False)
    return None


def require_netns() -> None:
    """Skip the calling test when namespaces are unusable; under CI=true fail instead."""
    reason = netns_unavailable_reason()
    if reason is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"network fault tests cannot run under CI: {reason}")
    pytest.skip(reason)


def sweep_stale() -> list[str]:
    """Delete the namespaces of earlier test runs whose process no longer exists."""
    removed: list[str] = []
    for line in run(["ip", "netns", "list"], check=False).splitlines():
        name = line.split()[0] if line.strip() else ""
        match = _NAME_RE.match(name)
        if not match:
            continue
        pid = int(match.group(1))
        if pid != os.getpid() and not os.path.exists(f"/proc/{pid}"):
            run(["ip", "netns", "del", name], check=False)
            removed.append(name)
    return removed


class NetLab:
    """A bridge namespace plus one namespace per host; see the module docstring."""

    def __init__(self, subnet: str = SUBNET) -> None:
        """Plan the lab; nothing exists until the first add_host()."""
        self.tag = f"pf{os.getpid()}x{next(_counter)}"
        self.network = ipaddress.ip_network(subnet)
        self.bridge_ns = f"{self.tag}-br"
        self.hosts: dict[str, str] = {}
        """Host name -> its namespace."""
        self.addrs: dict[str, str] = {}
        """Host name -> its IPv4 address."""
        self._ports: dict[str, str] = {}
        self._created: list[str] = []
        self._blocked: dict[str, set[str]] = {}
        self._loss: dict[str, tuple[int, tuple[str, ...]]] = {}
        self._throttled: set[str] = set()

    # -- building --------------------------------------------------------------

    def _ensure_bridge(self) -> None:
        if self.bridge_ns in self._created:
            return
        _LIVE.add(self)
        run(["ip", "netns", "add", self.bridge_ns])
        self._created.append(self.bridge_ns)
        run(["ip", "-n", self.bridge_ns, "link", "add", "br0", "type", "bridge"])
        run(["ip", "-n", self.bridge_ns, "link", "set", "br0", "up"])

    def add_host(self, name: str) -> str:
        """Create host `name` on the bridge and return its address."""
        if name in self.hosts:
            return self.addrs[name]
        self._ensure_bridge()
        index = len(self.hosts)
        ns = f"{self.tag}-{name}"
        port = f"p{index}"
        addr = str(self.network.network_address + 10 + index)
        run(["ip", "netns", "add", ns])
        self._created.append(ns)
        run(["ip", "link", "add", "eth0", "netns", ns, "type", "veth",
             "peer", "name", port, "netns", self.bridge_ns])  # fmt: skip
        run(["ip", "-n", self.bridge_ns, "link", "set", port, "master", "br0"])
        run(["ip", "-n", self.bridge_ns, "link", "set", port, "up"])
        run(["ip", "-n", ns, "link", "set", "lo", "up"])
        run(["ip", "-n", ns, "addr", "add", f"{addr}/{self.network.prefixlen}", "dev", "eth0"])
        run(["ip", "-n", ns, "link", "set", "eth0", "up"])
        self.hosts[name] = ns
        self.addrs[name] = addr
        self._ports[name] = port
        return addr

    def add_hosts(self, names: Iterable[str]) -> dict[str, str]:
        """add_host() for each name; returns name -> address."""
        return {name: self.add_host(name) for name in names}

    def prefix(self, host: str) -> list[str]:
        """The command prefix that runs a program on `host`: `ip netns exec NS`."""
        return ["ip", "netns", "exec", self.hosts[host]]

    # -- faults ----------------------------------------------------------------

    def isolate(self, host: str) -> None:
        """Take `host`'s bridge port down: it can reach no other host, nor they it."""
        run(["ip", "-n", self.bridge_ns, "link", "set", self._ports[host], "down"])

    def heal(self, host: str) -> None:
        """Bring `host`'s bridge port up again and remove its nft fault rules."""
        run(["ip", "-n", self.bridge_ns, "link", "set", self._ports[host], "up"])
        self.clear(host)

    def block(self, host: str, others: Iterable[str]) -> None:
        """Drop all traffic between `host` and each of `others` (rules in `host`'s namespace)."""
        self._blocked.setdefault(host, set()).update(others)
        self._apply(host)

    def partition(self, side: Iterable[str], other: Iterable[str]) -> None:
        """Cut every link between the hosts of `side` and those of `other`."""
        others = list(other)
        for host in side:
            self.block(host, others)

    def loss(self, host: str, percent: int, peers: Iterable[str] = ()) -> None:
        """Drop a random `percent` share of packets `host` receives (from `peers`, or all)."""
        if not 0 <= percent <= 100:
            raise ValueError(f"percent must be 0..100, not {percent}")
        self._loss[host] = (percent, tuple(peers))
        self._apply(host)

    def throttle(self, host: str, kbit: int, latency_ms: int = 300, burst_kb: int = 16) -> None:
        """Limit `host`'s outgoing traffic to `kbit` kbit/s with a tbf queue of `latency_ms`.

        Raises:
            NetnsError: when tc or the tbf qdisc is unavailable.
        """
        run(["ip", "netns", "exec", self.hosts[host], "tc", "qdisc", "replace", "dev", "eth0",
             "root", "tbf", "rate", f"{kbit}kbit", "burst", f"{burst_kb}kb",
             "latency", f"{latency_ms}ms"])  # fmt: skip
        self._throttled.add(host)

    def clear(self, host: str) -> None:
        """Remove every nft fault rule and any throttle from `host`'s namespace."""
        self._blocked.pop(host, None)
        self._loss.pop(host, None)
        if host in self._throttled:
            self._throttled.discard(host)
            run(["ip", "netns", "exec", self.hosts[host], "tc", "qdisc", "del", "dev", "eth0",
                 "root"], check=False)  # fmt: skip
        run(["ip", "netns", "exec", self.hosts[host], "nft", "delete", "table", "inet", TABLE],
            check=False)  # fmt: skip

    def heal_all(self) -> None:
        """Every bridge port up, every nft fault rule gone."""
        for host in self.hosts:
            self.heal(host)

    def ruleset(self, host: str) -> str:
        """`nft list ruleset` in `host`'s namespace, for diagnostics."""
        return run(["ip", "netns", "exec", self.hosts[host], "nft", "list", "ruleset"])

    def _apply(self, host: str) -> None:
        """Replace `host`'s fault table with rules for its current blocks and loss."""
        lines = [
            f"table inet {TABLE} {{}}",
            f"delete table inet {TABLE}",
            f"table inet {TABLE} {{",
            "  chain input { type filter hook input priority -10; policy accept; }",
            "  chain output { type filter hook output priority -10; policy accept; }",
            "}",
        ]
        blocked = sorted(self.addrs[h] for h in self._blocked.get(host, ()))
        if blocked:
            addrs = ", ".join(blocked)
            lines.append(f"add rule inet {TABLE} input ip saddr {{ {addrs} }} drop")
            lines.append(f"add rule inet {TABLE} output ip daddr {{ {addrs} }} drop")
        if host in self._loss:
            percent, peers = self._loss[host]
            match = ""
            if peers:
                match = "ip saddr { " + ", ".join(sorted(self.addrs[p] for p in peers)) + " } "
            # numgen ... mod 100 is 0..99, so "< 100" is out of range: all is a plain drop.
            share = "" if percent >= 100 else f"numgen random mod 100 < {percent} "
            if percent > 0:
                lines.append(f"add rule inet {TABLE} input {match}{share}drop")
        run(["ip", "netns", "exec", self.hosts[host], "nft", "-f", "-"], stdin="\n".join(lines))

    # -- teardown --------------------------------------------------------------

    def close(self) -> None:
        """Delete every namespace this lab made (their links go with them). Idempotent."""
        for ns in reversed(self._created):
            run(["ip", "netns", "del", ns], check=False)
        self._created.clear()
        self.hosts.clear()
        _LIVE.discard(self)

    def __enter__(self) -> NetLab:
        """Use as `with NetLab() as lab:`; close() runs on the way out."""
        return self

    def __exit__(self, *_exc: object) -> None:
        """Delete everything."""
        self.close()


@atexit.register
def _close_leftovers() -> None:
    """Last resort: delete the namespaces of labs a test did not close."""
    for lab in list(_LIVE):
        lab.close()
