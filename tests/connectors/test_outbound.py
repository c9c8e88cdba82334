"""The outbound guard: link-local and metadata refused always, the rest as configured."""

from __future__ import annotations

import asyncio

import pytest

from connectors.http import connector as http
from connectors.slack import connector as slack
from engine.errors import DeliveryError
from engine.outbound import OutboundGuard, Resolver
from engine.rules.trust import HostTrust
from tests.connectors.helpers import render, send
from tests.servers import Reply, TargetServer

METADATA_URL = "http://169.254.169.254/latest/meta-data"


def check(url: str, guard: OutboundGuard | None = None) -> None:
    asyncio.run((guard or OutboundGuard()).check(url))


@pytest.mark.parametrize(
    "address",
    [
        "169.254.169.254",  # AWS, GCP, Azure metadata
        "169.254.1.1",
        "::ffff:169.254.169.254",  # IPv4-mapped IPv6
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
        "fe80::1",
        "fd00:ec2::254",  # AWS metadata over IPv6
        "100.100.100.200",  # Alibaba Cloud metadata
        "0.0.0.0",
        "::",
    ],
)
def test_link_local_and_metadata_addresses_are_always_refused(address: str) -> None:
    reason = OutboundGuard().refusal(address)
    assert reason is not None and "link-local or cloud metadata" in reason
    # an allow list cannot open them either
    everything = OutboundGuard(allow=["0.0.0.0/0", "::/0"])
    assert everything.refusal(address) is not None


@pytest.mark.parametrize("address", ["127.0.0.1", "::1", "10.0.0.5", "192.168.1.20", "8.8.8.8"])
def test_loopback_private_and_public_addresses_are_allowed_by_default(address: str) -> None:
    assert OutboundGuard().refusal(address) is None


def test_deny_and_allow_lists_narrow_what_may_be_reached() -> None:
    denied = OutboundGuard(deny=["127.0.0.0/8"])
    assert denied.refusal("127.0.0.1") == "127.0.0.1 is in denied network 127.0.0.0/8"
    assert denied.refusal("::ffff:127.0.0.1") == "127.0.0.1 is in denied network 127.0.0.0/8"
    assert denied.refusal("192.168.1.20") is None

    home_only = OutboundGuard(allow=["192.168.0.0/16"])
    assert home_only.refusal("192.168.1.20") is None
    assert home_only.refusal("10.0.0.5") == "10.0.0.5 is outside the allowed networks"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        (METADATA_URL, "169.254.169.254 is link-local or cloud metadata"),
        ("http://[::ffff:169.254.169.254]/latest", "169.254.169.254 is link-local"),
        ("http://[fe80::1%25eth0]:8080/", "is link-local or cloud metadata"),
        # a host name, not an IP literal: it resolves (inet_aton) to 169.254.169.254
        ("http://2852039166/latest/meta-data", "169.254.169.254 is link-local"),
        ("http://metadata.google.internal/computeMetadata/v1/", "cloud metadata host"),
        ("https://METADATA.google.internal./computeMetadata/v1/", "cloud metadata host"),
        ("http://metadata/computeMetadata/v1/", "cloud metadata host"),
    ],
)
def test_check_refuses_metadata_urls(url: str, reason: str) -> None:
    with pytest.raises(DeliveryError) as caught:
        check(url)
    assert reason in caught.value.message
    assert caught.value.retryable is False
    assert caught.value.url == url


def test_localhost_resolves_to_loopback_allowed_unless_denied() -> None:
    check("http://localhost:8123/api/services/light/turn_on")  # no error
    with pytest.raises(DeliveryError) as caught:
        check("http://localhost:8123/", OutboundGuard(deny=["127.0.0.0/8"]))
    assert "127.0.0.1 is in denied network 127.0.0.0/8" in caught.value.message


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/file", "scheme 'ftp' not allowed"),
        ("file:///etc/passwd", "scheme 'file' not allowed"),
        ("http:///no-host", "URL has no host"),
        ("http://localhost:99999/", "Port out of range"),
        ("http://[::1/", "Invalid IPv6 URL"),
        ("http://" + "a" * 64 + ".example/", "is not valid"),
    ],
)
def test_check_refuses_urls_it_cannot_judge(url: str, reason: str) -> None:
    with pytest.raises(DeliveryError) as caught:
        check(url)
    assert reason in caught.value.message
    assert caught.value.retryable is False


def test_a_name_that_does_not_resolve_is_retryable() -> None:
    """DNS may be down for a moment; the outbox tries again later."""
    with pytest.raises(DeliveryError) as caught:
        check("http://no-such-host.invalid/hook")
    assert caught.value.message.startswith("cannot resolve no-such-host.invalid:")
    assert caught.value.retryable is True


def test_a_redirect_to_the_metadata_address_is_refused(target: TargetServer) -> None:
    target.script(Reply(302, b"", headers={"Location": METADATA_URL}))
    request = render(http, {"url": f"{target.url}/hook", "json": {"a": 1}})
    with pytest.raises(DeliveryError) as caught:
        send(http, request)
    error = caught.value
    assert error.connector == "http"
    assert "169.254.169.254 is link-local or cloud metadata" in error.message
    assert error.url == f"{target.url}/hook"
    assert f"(redirected to {METADATA_URL})" in error.message
    assert error.retryable is False
    assert [r.path for r in target.received] == ["/hook"]  # the first hop only


def test_a_redirect_to_a_metadata_host_name_is_refused_for_the_sending_connector(
    target: TargetServer,
) -> None:
    target.script(Reply(307, b"", headers={"Location": "http://metadata.google.internal/v1/"}))
    request = render(slack, {"webhook_url": f"{target.url}/services/T/B/X", "text": "hi"})
    with pytest.raises(DeliveryError) as caught:
        send(slack, request)
    assert caught.value.connector == "slack"
    assert "metadata.google.internal is a cloud metadata host" in caught.value.message
    assert len(target.received) == 1


def test_a_redirect_to_an_allowed_address_is_followed(target: TargetServer) -> None:
    target.script(Reply(302, b"", headers={"Location": "/moved"}), Reply(200, "moved here"))
    delivered = send(http, render(http, {"method": "GET", "url": f"{target.url}/old"}))
    assert delivered.status == 200
    assert delivered.response == "moved here"
    assert [r.path for r in target.received] == ["/old", "/moved"]


def test_a_redirect_into_a_denied_network_is_refused(target: TargetServer) -> None:
    """The first hop is allowed (127.0.0.1); the redirect goes to a denied address."""
    port = target.url.rsplit(":", 1)[1]
    target.script(Reply(302, b"", headers={"Location": f"http://127.0.0.2:{port}/inside"}))
    guard = OutboundGuard(deny=["127.0.0.2/32"])
    with pytest.raises(DeliveryError) as caught:
        send(http, render(http, {"method": "GET", "url": f"{target.url}/start"}), guard=guard)
    assert "127.0.0.2 is in denied network 127.0.0.2/32" in caught.value.message
    assert [r.path for r in target.received] == ["/start"]


def test_the_guard_refuses_before_connecting(target: TargetServer) -> None:
    guard = OutboundGuard(deny=["127.0.0.0/8"])
    with pytest.raises(DeliveryError) as caught:
        send(http, render(http, {"url": f"{target.url}/x"}), guard=guard)
    assert "denied network" in caught.value.message
    assert target.received == []


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),  # SSDP
        ("ff02::1", "multicast"),
        ("255.255.255.255", "reserved or broadcast"),
        ("240.0.0.1", "reserved or broadcast"),
    ],
)
def test_multicast_broadcast_and_reserved_addresses_are_always_refused(
    address: str, kind: str
) -> None:
    assert OutboundGuard().refusal(address) == f"{address} is {kind}"
    assert OutboundGuard(allow=["0.0.0.0/0", "::/0"]).refusal(address) is not None


def answers(*rounds: list[str]) -> tuple[Resolver, list[str]]:
    """A resolver that answers each call with the next round (the last one repeats)."""
    calls: list[str] = []

    async def resolver(host: str, port: int) -> list[str]:
        calls.append(host)
        return rounds[min(len(calls), len(rounds)) - 1]

    return resolver, calls


def test_dns_rebinding_cannot_reach_loopback(target: TargetServer) -> None:
    """The checks before the request see a public address (the connector's and the client's
    request hook), the next answer is 127.0.0.1: the connection resolves once more, checks
    that answer and connects only to it, so the request never reaches loopback."""
    port = target.url.rsplit(":", 1)[1]
    public = ["93.184.216.34"]
    resolver, calls = answers(public, public, ["127.0.0.1"])
    guard = OutboundGuard(trusted=HostTrust(), resolver=resolver)
    with pytest.raises(DeliveryError) as caught:
        send(http, render(http, {"url": f"http://localhost:{port}/x", "timeout": 2}), guard=guard)
    assert "localhost resolves to 127.0.0.1, a loopback or private address" in str(caught.value)
    assert target.received == []
    assert len(calls) == 3  # two checks before the request, then the connection's own


def test_the_connection_goes_to_the_checked_address(target: TargetServer) -> None:
    """`home.test` exists only in the injected resolver: reaching the target proves the
    connection used the address the guard checked, not a second lookup."""
    port = target.url.rsplit(":", 1)[1]
    resolver, calls = answers(["127.0.0.1"])
    guard = OutboundGuard(trusted=HostTrust(frozenset({"home.test"})), resolver=resolver)
    delivered = send(http, render(http, {"url": f"http://home.test:{port}/in"}), guard=guard)
    assert delivered.status == 200
    assert [r.path for r in target.received] == ["/in"]
    assert target.received[0].header("Host") == f"home.test:{port}"
    assert calls and set(calls) == {"home.test"}  # the system resolver was never asked


def test_a_redirect_to_an_untrusted_host_may_not_reach_loopback(target: TargetServer) -> None:
    """127.0.0.1 is trusted (a rule names it); `localhost` is not, and resolves to loopback."""
    port = target.url.rsplit(":", 1)[1]
    target.script(Reply(302, b"", headers={"Location": f"http://localhost:{port}/inside"}))
    guard = OutboundGuard(trusted=HostTrust(frozenset({"127.0.0.1"})))
    with pytest.raises(DeliveryError) as caught:
        send(http, render(http, {"method": "GET", "url": f"{target.url}/start"}), guard=guard)
    assert "localhost resolves to 127.0.0.1" in caught.value.message
    assert f"(redirected to http://localhost:{port}/inside)" in caught.value.message
    assert [r.path for r in target.received] == ["/start"]
