"""Issue 14: no spelling of a converted route's path reaches the legacy service through `forward`.

A legacy server decodes `%6F` to `o`, may treat `/orders/` as `/orders`, may strip `;x` path
parameters (Tomcat, Jetty, Spring) and may match paths case-insensitively (Express, ASP.NET). Each
spelling of `/orders` (an `event` route) is either served by that route or refused with 400; none
reaches the upstream. Paths that are not near a converted route are forwarded byte for byte.
"""
from __future__ import annotations

import pytest

import os

from conftest import assert_error, base_config, hdrs, to_yaml, unique, wait_until


@pytest.fixture(scope="module")
def paths_topic(kafka) -> str:
    t = unique("paths")
    kafka.create_topic(t, 1)
    return t


def routes(topic: str) -> list[dict]:
    return [
        {"name": "orders", "match": {"methods": ["POST"], "path": "/orders"}, "mode": "event",
         "topic": topic, "key": "correlation"},
        {"name": "items", "match": {"methods": ["POST"], "path": "/items/{id}"}, "mode": "event",
         "topic": topic, "key": "path:id"},
        {"name": "copied", "match": {"methods": ["POST"], "path": "/copied"}, "mode": "shadow",
         "topic": topic, "key": "correlation"},
        {"name": "read-order", "match": {"methods": ["GET"], "path": "/orders/{id}"}, "mode": "forward"},
    ]


@pytest.fixture(scope="module")
def paths_proxy(handoff_process, brokers, upstream, paths_topic):
    return handoff_process(base_config(brokers, upstream.port, routes(paths_topic)))


def post(proxy, target: str, tag: str):
    return proxy.request("POST", target, b"body-" + tag.encode(), [("X-Test-Tag", tag)])


# Spellings every legacy server routes to `/orders`: served by the event route.
@pytest.mark.parametrize("target", ["/orders", "/%6Frders", "/%6frders", "/%6F%72%64%65%72%73", "/orders/",
                                    "/%6Frders/?a=1"])
def test_a_spelling_of_a_converted_path_is_served_by_its_route(paths_proxy, upstream, kafka, paths_topic, target):
    tag = unique("same")
    r = post(paths_proxy, target, tag)
    assert r.status == 202, f"{target} should be served by the event route on /orders: {r!r}"
    assert not upstream.with_header("X-Test-Tag", tag), f"{target} reached the upstream"
    msg = kafka.find(paths_topic, r.header("X-Correlation-ID"))
    assert msg.value() == b"body-" + tag.encode()
    assert hdrs(msg)["handoff_path"] == target.partition("?")[0].encode()  # the path as received


def test_a_path_parameter_is_matched_and_decoded_after_normalisation(paths_proxy, upstream, kafka, paths_topic):
    tag = unique("param")
    r = post(paths_proxy, "/%69tems/4%32", tag)
    assert r.status == 202, r
    assert not upstream.with_header("X-Test-Tag", tag)
    assert kafka.find(paths_topic, r.header("X-Correlation-ID")).key() == b"42"


# Spellings a legacy server may or may not route to a converted route: refused, never forwarded.
@pytest.mark.parametrize("target", ["/orders;x", "/orders;jsessionid=1", "/%6Frders;x", "/orders/;x",
                                    "/orders%3Bx", "/ORDERS", "/Orders/", "/%4Frders", "/items/42;v=1",
                                    "/copied;x"])
def test_an_ambiguous_spelling_of_a_converted_path_is_400_and_never_forwarded(paths_proxy, upstream, target):
    tag = unique("ambiguous")
    r = post(paths_proxy, target, tag)
    assert_error(r, 400, "ambiguous_path")
    assert not upstream.with_header("X-Test-Tag", tag), f"{target} reached the upstream"


# Refused for every path (dot segments, empty segments, encoded separators, malformed escapes).
@pytest.mark.parametrize("target", ["//orders", "/./orders", "/x/../orders", "/%2e/orders", "/x/%2E%2E/orders",
                                    "/orders%2F", "/orders%", "/orders%6"])
def test_a_path_no_server_agrees_on_is_400_and_never_forwarded(paths_proxy, upstream, target):
    tag = unique("refused")
    r = post(paths_proxy, target, tag)
    assert_error(r, 400, "bad_request", require_correlation_id=False)
    assert not upstream.with_header("X-Test-Tag", tag), f"{target} reached the upstream"


# Not near a converted route: forwarded exactly as received (no decoding, no case or slash change).
@pytest.mark.parametrize("method,target", [
    ("POST", "/other"), ("POST", "/other/"), ("POST", "/other;jsessionid=1"), ("POST", "/%7Euser/a%2cb%C3%A9"),
    ("GET", "/%6Frders/more"), ("GET", "/orders/%34%32"), ("GET", "/orders/42;v=1"), ("POST", "/Other?q=%6F&x=;"),
])
def test_a_path_not_near_a_converted_route_is_forwarded_byte_for_byte(paths_proxy, upstream, method, target):
    tag = unique("unrelated")
    body = b"body-" + tag.encode() if method == "POST" else None
    r = paths_proxy.request(method, target, body, [("X-Test-Tag", tag)])
    assert r.status == 200, r
    got = upstream.with_header("X-Test-Tag", tag)
    assert [g.target for g in got] == [target]
    assert got[0].body == (body or b"")


def test_the_shadow_route_forwards_its_own_path_unchanged(paths_proxy, upstream):
    tag = unique("shadow")
    r = post(paths_proxy, "/%63opied", tag)
    assert r.status == 200, r
    assert [g.target for g in upstream.with_header("X-Test-Tag", tag)] == ["/%63opied"]


def test_with_trailing_slash_strict_the_slashed_path_is_another_path_and_forwarded_unchanged(
        handoff_process, brokers, upstream, kafka, paths_topic):
    h = handoff_process(base_config(brokers, upstream.port, routes(paths_topic),
                                    routing={"trailing_slash": "strict"}), name="strict-slash")
    tag = unique("strict")
    r = post(h, "/orders/", tag)
    assert r.status == 200, r
    assert [g.target for g in upstream.with_header("X-Test-Tag", tag)] == ["/orders/"]
    tag = unique("strict")
    r = post(h, "/%6Frders", tag)
    assert r.status == 202, r
    assert not upstream.with_header("X-Test-Tag", tag)
    assert h.admin_get("/config").json()["routing"] == {"trailing_slash": "strict"}


def test_a_reload_changes_the_trailing_slash_policy_with_the_routes(handoff_process, brokers, upstream, paths_topic):
    cfg = base_config(brokers, upstream.port, routes(paths_topic))
    h = handoff_process(cfg, name="reload-slash")
    tag = unique("before")
    assert post(h, "/orders/", tag).status == 202
    tmp = h.cfg_path.with_name(h.cfg_path.name + ".tmp")
    tmp.write_text(to_yaml({**cfg, "routing": {"trailing_slash": "strict"}}) + "\n")
    os.replace(tmp, h.cfg_path)  # the file watcher reloads it
    wait_until(lambda: h.admin_get("/config").json().get("routing") == {"trailing_slash": "strict"}, 10,
               what="the reloaded routing section")
    tag = unique("after")
    assert post(h, "/orders/", tag).status == 200
    assert [g.target for g in upstream.with_header("X-Test-Tag", tag)] == ["/orders/"]
