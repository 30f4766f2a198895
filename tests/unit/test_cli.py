"""The `parley` command line: flags, environment variables and dispatch."""

from __future__ import annotations

import dataclasses
import os
import sys
import types
from typing import Any

import pytest
from parley import cli
from parley.config import GatewayConfig, NodeConfig
from parley.supervisor import UpOptions

NODES = "node-0=127.0.0.1:7001,node-1=127.0.0.1:7002,node-2=127.0.0.1:7003"
NODES_DICT = {"node-0": "127.0.0.1:7001", "node-1": "127.0.0.1:7002", "node-2": "127.0.0.1:7003"}


def test_design_node_flags() -> None:
    """Every `parley node` flag of DESIGN §1 sets its field."""
    cfg = cli.parse_node_config(
        [
            "--id", "node-0",
            "--grpc", "127.0.0.1:7001",
            "--http", "127.0.0.1:9101",
            "--nodes", NODES,
            "--data-dir", "/tmp/d",
            "--store", "memory",
            "--replicas", "5",
            "--discovery", "kubernetes",
        ],
        {},
    )  # fmt: skip
    assert cfg == NodeConfig(
        id="node-0",
        grpc="127.0.0.1:7001",
        http="127.0.0.1:9101",
        nodes=NODES_DICT,
        data_dir="/tmp/d",
        store="memory",
        replicas=5,
        discovery="kubernetes",
    )


def test_design_gateway_flags() -> None:
    """Every `parley gateway` flag of DESIGN §1 sets its field."""
    cfg = cli.parse_gateway_config(
        [
            "--ws", "127.0.0.1:8080",
            "--http", "127.0.0.1:9100",
            "--nodes", NODES,
            "--discovery", "static",
            "--jwt-secret", "s3cret",
        ],
        {},
    )  # fmt: skip
    assert cfg == GatewayConfig(
        ws="127.0.0.1:8080",
        http="127.0.0.1:9100",
        nodes=NODES_DICT,
        discovery="static",
        jwt_secret="s3cret",
    )


def test_defaults_are_the_dataclass_defaults() -> None:
    """With no flags and no environment, the config is the dataclass default."""
    assert cli.parse_node_config(["--id", "n"], {}) == NodeConfig(id="n")
    assert cli.parse_gateway_config([], {}) == GatewayConfig()


@pytest.mark.parametrize("cls", [NodeConfig, GatewayConfig])
def test_every_field_has_a_flag_and_an_env_var(cls: type[Any]) -> None:
    """Each config field is settable as --field-name and as PARLEY_FIELD_NAME."""
    parse = cli.parse_node_config if cls is NodeConfig else cli.parse_gateway_config
    samples: dict[type, tuple[str, Any]] = {
        int: ("7", 7),
        float: ("2.5", 2.5),
        dict: ("a=127.0.0.1:1", {"a": "127.0.0.1:1"}),
    }
    for field in dataclasses.fields(cls):
        if field.name in cli._CHOICES:
            raw, want = cli._CHOICES[field.name][-1], cli._CHOICES[field.name][-1]
        else:
            default = NodeConfig(id="x") if cls is NodeConfig else GatewayConfig()
            raw, want = samples.get(type(getattr(default, field.name)), ("val", "val"))
        base = [] if field.name == "id" or cls is GatewayConfig else ["--id", "n"]
        flag = "--" + field.name.replace("_", "-")
        by_flag = parse([*base, flag, raw], {})
        by_env = parse(base, {f"PARLEY_{field.name.upper()}": raw})
        assert getattr(by_flag, field.name) == want, flag
        assert getattr(by_env, field.name) == want, field.name


def test_env_vars_configure_a_node() -> None:
    """PARLEY_* variables alone configure a node, typed like the fields."""
    env = {
        "PARLEY_ID": "node-1",
        "PARLEY_GRPC": "0.0.0.0:7000",
        "PARLEY_NODES": NODES,
        "PARLEY_DATA_DIR": "/data",
        "PARLEY_REPLICAS": "2",
        "PARLEY_MEMBER_GRACE": "1.5",
        "PARLEY_K8S_NAMESPACE": "chat",
    }
    cfg = cli.parse_node_config([], env)
    assert (cfg.id, cfg.grpc, cfg.data_dir, cfg.k8s_namespace) == (
        "node-1",
        "0.0.0.0:7000",
        "/data",
        "chat",
    )
    assert cfg.nodes == NODES_DICT
    assert cfg.replicas == 2 and isinstance(cfg.replicas, int)
    assert cfg.member_grace == 1.5 and isinstance(cfg.member_grace, float)


def test_flag_beats_env_beats_default() -> None:
    """A flag overrides its environment variable, which overrides the default."""
    env = {"PARLEY_REPLICAS": "2", "PARLEY_STORE": "memory"}
    cfg = cli.parse_node_config(["--id", "n", "--replicas", "4"], env)
    assert cfg.replicas == 4  # flag over env
    assert cfg.store == "memory"  # env over default
    assert cfg.data_dir == NodeConfig(id="n").data_dir  # default


def test_empty_env_var_means_unset() -> None:
    """An empty PARLEY_* variable (as charts often render) leaves the default."""
    cfg = cli.parse_gateway_config([], {"PARLEY_REPLICAS": "", "PARLEY_NODES": ""})
    assert cfg.replicas == GatewayConfig().replicas
    assert cfg.nodes == {}


def test_bad_nodes_flag_is_a_clear_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """A malformed --nodes exits 2 and says what shape it wants."""
    with pytest.raises(SystemExit) as exc:
        cli.parse_node_config(["--id", "n", "--nodes", "node-0:7001"], {})
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--nodes" in err and "node-0:7001" in err and "id=host:port" in err


def test_bad_nodes_env_names_the_variable(capsys: pytest.CaptureFixture[str]) -> None:
    """A malformed PARLEY_NODES exits 2 and names the variable."""
    with pytest.raises(SystemExit) as exc:
        cli.parse_gateway_config([], {"PARLEY_NODES": "garbage"})
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "PARLEY_NODES" in err and "id=host:port" in err


def test_bad_number_in_env(capsys: pytest.CaptureFixture[str]) -> None:
    """A non-numeric PARLEY_REPLICAS exits 2 naming the variable."""
    with pytest.raises(SystemExit):
        cli.parse_node_config(["--id", "n"], {"PARLEY_REPLICAS": "three"})
    assert "PARLEY_REPLICAS" in capsys.readouterr().err


def test_bad_choice(capsys: pytest.CaptureFixture[str]) -> None:
    """--store and PARLEY_DISCOVERY accept only their known values."""
    with pytest.raises(SystemExit):
        cli.parse_node_config(["--id", "n", "--store", "postgres"], {})
    assert "postgres" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.parse_node_config(["--id", "n"], {"PARLEY_DISCOVERY": "dns"})
    assert "PARLEY_DISCOVERY" in capsys.readouterr().err


def test_node_id_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    """`parley node` without --id or PARLEY_ID exits 2 and says how to set it."""
    with pytest.raises(SystemExit) as exc:
        cli.parse_node_config([], {})
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--id" in err and "PARLEY_ID" in err
    assert cli.parse_node_config([], {"PARLEY_ID": "node-7"}).id == "node-7"


def _fake_module(monkeypatch: pytest.MonkeyPatch, name: str, **attrs: Any) -> None:
    """Install a module `name` with `attrs`, so dispatch can be checked in isolation."""
    monkeypatch.setitem(sys.modules, name, types.SimpleNamespace(**attrs))


def _clear_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove every PARLEY_* variable (and USER) from the test's environment."""
    for key in list(os.environ):
        if key.startswith("PARLEY_"):
            monkeypatch.delenv(key)
    monkeypatch.delenv("USER", raising=False)


def test_main_runs_a_node(monkeypatch: pytest.MonkeyPatch) -> None:
    """`parley node ...` builds the config from flags and env and exits with run()'s status."""
    _clear_env(monkeypatch)
    monkeypatch.setenv("PARLEY_STORE", "memory")
    seen: list[NodeConfig] = []
    _fake_module(monkeypatch, "parley.node.main", run=lambda cfg: seen.append(cfg) or 3)
    with pytest.raises(SystemExit) as exc:
        cli.main(["node", "--id", "node-0", "--nodes", NODES])
    assert exc.value.code == 3
    assert seen == [NodeConfig(id="node-0", nodes=NODES_DICT, store="memory")]


def test_main_runs_a_gateway(monkeypatch: pytest.MonkeyPatch) -> None:
    """`parley gateway ...` passes a GatewayConfig to parley.gateway.main.run."""
    _clear_env(monkeypatch)
    seen: list[GatewayConfig] = []
    _fake_module(monkeypatch, "parley.gateway.main", run=lambda cfg: seen.append(cfg) or 0)
    with pytest.raises(SystemExit) as exc:
        cli.main(["gateway", "--ws", "127.0.0.1:8181", "--jwt-secret", "k"])
    assert exc.value.code == 0
    assert seen == [GatewayConfig(ws="127.0.0.1:8181", jwt_secret="k")]


def test_main_node_env_error_is_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`parley node` with a bad environment value exits 2 with the node usage line."""
    _clear_env(monkeypatch)
    monkeypatch.setenv("PARLEY_NODES", "nonsense")
    with pytest.raises(SystemExit) as exc:
        cli.main(["node", "--id", "n"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "parley node" in err and "PARLEY_NODES" in err


def test_client_commands_dispatch(monkeypatch: pytest.MonkeyPatch) -> None:
    """send, tail, rooms and chat get url, user and token from flags."""
    _clear_env(monkeypatch)
    calls: list[tuple[Any, ...]] = []

    def record(name: str) -> Any:
        return lambda *args: calls.append((name, *args)) or 0

    _fake_module(
        monkeypatch,
        "parley.client.commands",
        send=record("send"),
        tail=record("tail"),
        rooms=record("rooms"),
    )
    _fake_module(monkeypatch, "parley.client.app", run_chat=record("chat"))
    monkeypatch.setattr(
        "parley.client.commands", sys.modules["parley.client.commands"], raising=False
    )
    common = ["--url", "ws://h:1/ws", "--user", "bob", "--token", "t"]
    for argv in (
        ["send", *common, "general", "hello there"],
        ["tail", *common, "general", "--since", "4", "--json"],
        ["tail", *common, "general"],
        ["rooms", *common, "--json"],
        ["chat", *common],
    ):
        with pytest.raises(SystemExit) as exc:
            cli.main(argv)
        assert exc.value.code == 0
    assert calls == [
        ("send", "ws://h:1/ws", "bob", "t", "general", "hello there", None),
        ("tail", "ws://h:1/ws", "bob", "t", "general", 4, True, None),
        ("tail", "ws://h:1/ws", "bob", "t", "general", None, False, None),
        ("rooms", "ws://h:1/ws", "bob", "t", True, None),
        ("chat", "ws://h:1/ws", "bob", "t", None),
    ]
    calls.clear()
    with pytest.raises(SystemExit):
        cli.main(["rooms", "--url", "ws://h:1/ws", "--token-file", "/nonexistent/token"])
    (call,) = calls
    source = call[-1]
    assert callable(source) and source() == ""  # read when needed, not at parse time


def test_client_defaults_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """PARLEY_URL/PARLEY_USER/PARLEY_TOKEN, then $USER, then built-in defaults apply."""
    _clear_env(monkeypatch)
    parser = cli.build_parser({})
    ns = parser.parse_args(["rooms"])
    assert (ns.url, ns.user, ns.token) == (cli.DEFAULT_URL, "me", None)
    ns = cli.build_parser({"USER": "carol"}).parse_args(["rooms"])
    assert ns.user == "carol"
    env = {"PARLEY_URL": "ws://x:2/ws", "PARLEY_USER": "dave", "PARLEY_TOKEN": "jwt", "USER": "c"}
    ns = cli.build_parser(env).parse_args(["rooms"])
    assert (ns.url, ns.user, ns.token) == ("ws://x:2/ws", "dave", "jwt")
    ns = cli.build_parser(env).parse_args(["rooms", "--user", "erin"])
    assert ns.user == "erin"


def test_up_flags() -> None:
    """`parley up` flags become UpOptions, with the documented defaults."""
    parser = cli.build_parser({})
    assert cli_up(parser, []) == UpOptions()
    opts = cli_up(
        parser,
        ["--nodes", "5", "--gateways", "2", "--port", "9000", "--data-dir", "/d",
         "--store", "memory", "--replicas", "2", "--base-grpc", "7100", "--prometheus"],
    )  # fmt: skip
    assert opts == UpOptions(
        nodes=5,
        gateways=2,
        port=9000,
        data_dir="/d",
        store="memory",
        replicas=2,
        base_grpc=7100,
        prometheus=True,
    )


def cli_up(parser: Any, argv: list[str]) -> UpOptions:
    """Parse `parley up ARGV` into UpOptions."""
    from parley.supervisor import options_from_args

    return options_from_args(parser.parse_args(["up", *argv]))
