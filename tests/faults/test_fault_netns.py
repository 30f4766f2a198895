"""The network-namespace test hosts: reachability, each fault primitive, and cleanup."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from support.netns import NetLab, require_netns, run, sweep_stale

SERVER = """
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 7700))
s.listen(64)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    c.close()
"""

CONNECT = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], 7700), timeout=0.7).close()
except OSError:
    sys.exit(1)
"""


@pytest.fixture
def lab() -> Iterator[NetLab]:
    """Hosts a, b, c with a TCP listener on b; everything deleted afterwards."""
    require_netns()
    with NetLab() as net:
        net.add_hosts(["a", "b", "c"])
        server = subprocess.Popen(
            [*net.prefix("b"), sys.executable, "-c", SERVER, net.addrs["b"]],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stdout is not None and server.stdout.readline().strip() == "ready"
            yield net
        finally:
            server.kill()
            server.wait()


def reaches(net: NetLab, src: str, dst: str) -> bool:
    """True when host `src` can open a TCP connection to the listener on host `dst`."""
    done = subprocess.run(
        [*net.prefix(src), sys.executable, "-c", CONNECT, net.addrs[dst]], timeout=10, check=False
    )
    return done.returncode == 0


def test_hosts_have_private_addresses(lab: NetLab) -> None:
    """Each host gets its own address in 10.213.0.0/24, visible only in its namespace."""
    assert sorted(lab.addrs.values()) == ["10.213.0.10", "10.213.0.11", "10.213.0.12"]
    shown = run(["ip", "netns", "exec", lab.hosts["a"], "ip", "-4", "addr", "show", "eth0"])
    assert "10.213.0.10/24" in shown
    assert "10.213.0." not in run(["ip", "-4", "addr", "show"])


def test_isolate_and_heal(lab: NetLab) -> None:
    """A host whose bridge port is down is unreachable until healed."""
    assert reaches(lab, "a", "b")
    lab.isolate("b")
    assert not reaches(lab, "a", "b")
    lab.heal("b")
    assert reaches(lab, "a", "b")


def test_block_cuts_only_the_chosen_pair(lab: NetLab) -> None:
    """block(a, [b]) drops a<->b traffic while c still reaches b; clear() undoes it."""
    lab.block("a", ["b"])
    assert not reaches(lab, "a", "b")
    assert reaches(lab, "c", "b")
    assert "drop" in lab.ruleset("a")
    lab.clear("a")
    assert reaches(lab, "a", "b")


def test_partition_cuts_both_ways(lab: NetLab) -> None:
    """partition([b], [a, c]) leaves b reachable from nobody; heal_all() restores it."""
    lab.partition(["b"], ["a", "c"])
    assert not reaches(lab, "a", "b")
    assert not reaches(lab, "c", "b")
    lab.heal_all()
    assert reaches(lab, "a", "b") and reaches(lab, "c", "b")


def test_total_loss_from_chosen_peers(lab: NetLab) -> None:
    """loss(b, 100, [a]) drops everything b gets from a but nothing from c."""
    lab.loss("b", 100, ["a"])
    assert not reaches(lab, "a", "b")
    assert reaches(lab, "c", "b")
    lab.loss("b", 0, ["a"])
    assert reaches(lab, "a", "b")


def test_partial_loss_rule(lab: NetLab) -> None:
    """loss(b, 30) installs a numgen rule dropping a random 30% of what b receives."""
    lab.loss("b", 30)
    assert "numgen random mod 100 < 30 drop" in lab.ruleset("b")
    lab.clear("b")
    assert "numgen" not in lab.ruleset("b")


def test_throttle_and_clear(lab: NetLab) -> None:
    """throttle() puts a tbf qdisc on the host's eth0; clear() removes it; traffic still flows."""
    lab.throttle("b", 512)
    shown = run(["ip", "netns", "exec", lab.hosts["b"], "tc", "qdisc", "show", "dev", "eth0"])
    assert "tbf" in shown and "512Kbit" in shown
    assert reaches(lab, "a", "b")
    lab.clear("b")
    shown = run(["ip", "netns", "exec", lab.hosts["b"], "tc", "qdisc", "show", "dev", "eth0"])
    assert "tbf" not in shown


def test_close_deletes_every_namespace() -> None:
    """close() leaves no namespace of the lab behind, and is idempotent."""
    require_netns()
    net = NetLab()
    net.add_hosts(["x", "y"])
    namespaces = [net.bridge_ns, *net.hosts.values()]
    net.close()
    net.close()
    listed = run(["ip", "netns", "list"])
    assert not [ns for ns in namespaces if ns in listed]


def test_sweep_stale_removes_dead_runs_only() -> None:
    """sweep_stale() deletes namespaces of test runs whose process is gone, not ours."""
    require_netns()
    dead = next(pid for pid in range(4_000_000, 4_100_000) if not os.path.exists(f"/proc/{pid}"))
    stale = f"pf{dead}x0-br"
    run(["ip", "netns", "add", stale])
    with NetLab() as net:
        net.add_host("mine")
        removed = sweep_stale()
        assert stale in removed
        assert net.hosts["mine"] in run(["ip", "netns", "list"])


def test_require_netns_skips_without_root_but_fails_under_ci(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without root the fault tests skip with the reason; with CI=true they fail instead."""
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="need root"):
        require_netns()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"cannot run under CI: .*need root"):
        require_netns()
