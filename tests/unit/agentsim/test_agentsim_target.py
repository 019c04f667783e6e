"""The safety rule: traffic goes to loopback or an explicitly allowed private lab network, checked before sending.

Nothing here sends a packet anywhere: refused targets are refused before any connection (which the
in-process CLI test proves by making every way of connecting fail loudly), and the allowed-network
cases only check addresses.
"""

from __future__ import annotations

import asyncio
import socket

import pytest
from agentsim import cli
from agentsim.client import PinnedResolver
from agentsim.errors import TargetRefused, UsageError
from agentsim.target import check_target, parse_allowed_networks

LAB = parse_allowed_networks(["172.28.0.0/16"])


def resolver_of(addresses: list[str]):
    def resolve(host: str, port: int) -> list[str]:
        return addresses
    return resolve


@pytest.mark.parametrize("url", [
    "http://8.8.8.8",
    "http://8.8.8.8:8080/",
    "https://1.1.1.1",
    "http://[2001:4860:4860::8888]:80",
    "http://[::ffff:8.8.8.8]:8080",  # IPv4-mapped: reaches 8.8.8.8
    "http://172.29.0.1",  # private, but not the allowed lab network
    "http://10.0.0.1",
])
def test_non_loopback_targets_are_refused(url: str):
    with pytest.raises(TargetRefused, match=r"refused.*nothing was sent"):
        check_target(url, LAB)


def test_refusal_names_the_option_the_target_and_the_address():
    with pytest.raises(TargetRefused) as refused:
        check_target("http://8.8.8.8:8080")
    message = str(refused.value)
    assert message.startswith("--url http://8.8.8.8:8080 refused")
    assert "8.8.8.8 is neither loopback" in message
    assert "--allow-network: none given" in message


@pytest.mark.parametrize(("url", "address", "port"), [
    ("http://127.0.0.1:8080", "127.0.0.1", 8080),
    ("http://127.1.2.3", "127.1.2.3", 80),
    ("https://[::1]:8443/", "::1", 8443),
])
def test_loopback_targets_pass(url: str, address: str, port: int):
    target = check_target(url)
    assert (target.addresses, target.port) == ((address,), port)
    assert target.endpoint("/agent/checkin") == url.rstrip("/") + "/agent/checkin"


def test_allowed_lab_network_passes_and_only_with_the_option():
    target = check_target("http://172.28.1.10", LAB)
    assert target.addresses == ("172.28.1.10",)
    with pytest.raises(TargetRefused):
        check_target("http://172.28.1.10")


def test_every_resolved_address_must_pass():
    with pytest.raises(TargetRefused, match=r"resolves to 8\.8\.8\.8"):
        check_target("http://lab.example:8080", resolver=resolver_of(["127.0.0.1", "8.8.8.8"]))
    target = check_target("http://lab.example:8080", resolver=resolver_of(["127.0.0.1", "::1", "127.0.0.1"]))
    assert target.addresses == ("127.0.0.1", "::1")


def test_an_unresolvable_host_is_refused():
    def broken(host: str, port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    with pytest.raises(TargetRefused, match=r"cannot resolve host 'nowhere\.invalid'"):
        check_target("http://nowhere.invalid", resolver=broken)


@pytest.mark.parametrize(("value", "reason"), [
    ("0.0.0.0/0", "not a private network"),
    ("8.8.8.0/24", "not a private network"),
    ("::/0", "not a private network"),
    ("172.28.0.1/16", "host bits set"),
    ("lab", "not a network in CIDR notation"),
])
def test_allowed_networks_must_be_private_cidrs(value: str, reason: str):
    with pytest.raises(UsageError, match=reason) as error:
        parse_allowed_networks([value])
    assert str(error.value).startswith(f"--allow-network {value!r}")


@pytest.mark.parametrize(("url", "reason"), [
    ("ftp://127.0.0.1", "must start with http:// or https://"),
    ("http://127.0.0.1:8080/agent/checkin", "must be a base URL"),
    ("http://127.0.0.1/?x=1", "must be a base URL"),
    ("http://:8080", "has no host"),
    ("http://127.0.0.1:99999", "is not a valid URL"),
])
def test_bad_urls_are_usage_errors(url: str, reason: str):
    with pytest.raises(UsageError, match=reason):
        check_target(url)


def test_the_client_connects_only_to_the_checked_addresses():
    target = check_target("http://lab.example:8080", resolver=resolver_of(["127.0.0.1"]))
    resolver = PinnedResolver(target)

    results = asyncio.run(resolver.resolve("lab.example", 8080, socket.AF_UNSPEC))
    assert [(r["host"], r["port"]) for r in results] == [("127.0.0.1", 8080)]
    with pytest.raises(OSError, match="only to the checked target"):
        asyncio.run(resolver.resolve("8.8.8.8", 80, socket.AF_UNSPEC))
    with pytest.raises(OSError, match="no checked address"):
        asyncio.run(resolver.resolve("lab.example", 8080, socket.AF_INET6))


def test_cli_refuses_before_any_connection_or_file(monkeypatch, tmp_path, capsys):
    def no_traffic(*args, **kwargs):
        raise AssertionError("agentsim tried to connect")

    monkeypatch.setattr(socket.socket, "connect", no_traffic)
    monkeypatch.setattr(socket.socket, "connect_ex", no_traffic)
    monkeypatch.setattr(socket, "create_connection", no_traffic)
    monkeypatch.setattr(socket, "getaddrinfo", no_traffic)
    monkeypatch.setattr(asyncio.BaseEventLoop, "create_connection", no_traffic)
    monkeypatch.setattr(asyncio.BaseEventLoop, "sock_connect", no_traffic)
    ledger, report = tmp_path / "ledger.jsonl", tmp_path / "run.json"

    code = cli.main(["run", "--url", "http://8.8.8.8:8080", "--agents", "10", "--rate", "100", "--duration", "1",
                     "--ledger", str(ledger), "--json", str(report)])

    assert code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("agentsim: error: --url http://8.8.8.8:8080 refused: 8.8.8.8 is neither")
    assert captured.err.count("\n") == 1
    assert not ledger.exists()
    assert not report.exists()
