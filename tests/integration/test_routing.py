"""Route matching: 405 + Allow, exact beats template, unmatched -> defaults.mode (forward)."""
from __future__ import annotations

import json

import pytest

from conftest import assert_error, hdrs, unique


@pytest.mark.parametrize("method", ["GET", "DELETE", "PATCH"])
def test_a_wrong_method_on_a_matched_path_is_405_with_allow_listing_the_routes_methods(proxy, upstream, method):
    tag = unique("405")
    r = proxy.request(method, "/audit", b"x" if method == "PATCH" else None,
                      [("X-Tenant", "t"), ("X-Test-Tag", tag)])
    assert_error(r, 405, "method_not_allowed")
    allow = {m.strip().upper() for m in (r.header("Allow") or "").split(",") if m.strip()}
    assert allow == {"POST", "PUT"}, f"Allow: {r.header('Allow')!r}"
    assert not upstream.with_header("X-Test-Tag", tag), "a 405 request reached the upstream"


def test_an_exact_path_beats_a_template_that_also_matches(proxy, upstream, kafka, topics):
    tag = unique("exact")
    r = proxy.request("GET", "/orders/special", None, [("X-Test-Tag", tag)])
    assert r.status == 202, f"/orders/special should be served by the exact event route: {r!r}"
    assert r.json()["topic"] == topics.special
    assert not upstream.with_header("X-Test-Tag", tag), "the exact-path request was forwarded"
    msg = kafka.find(topics.special, r.header("X-Correlation-ID"))
    assert hdrs(msg)["handoff_path"] == b"/orders/special"
    assert hdrs(msg)["handoff_method"] == b"GET"


def test_the_template_still_serves_other_values_of_its_parameter(proxy, upstream):
    tag = unique("tmpl")
    r = proxy.request("GET", f"/orders/{tag}")
    assert r.status == 200, r
    assert json.loads(r.body)["path"] == f"/orders/{tag}"
    assert upstream.with_path(f"/orders/{tag}")


@pytest.mark.parametrize("path", ["/nowhere", "/orders", "/orders/a/b", "/audit/extra", "/"])
def test_a_path_that_matches_no_route_is_forwarded_by_default(proxy, upstream, path):
    tag = unique("unmatched")
    r = proxy.request("POST", path, b"body-" + tag.encode(), [("X-Test-Tag", tag)])
    assert r.status == 200, r
    got = upstream.with_header("X-Test-Tag", tag)
    assert len(got) == 1 and got[0].path == path and got[0].body == b"body-" + tag.encode()


def test_route_methods_are_matched_per_route_on_a_shared_template(proxy, upstream):
    # GET /orders/{id} is forward; POST /orders/{region} is commit.
    tag = unique("shared")
    assert proxy.request("GET", f"/orders/{tag}").status == 200
    r = proxy.request("POST", "/orders/eu", b'{"customer":{"id":"r"}}', [("Content-Type", "application/json")])
    assert r.status == 201, r
    assert r.json()["outcome"] == "persisted"
