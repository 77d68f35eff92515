"""Idempotency-Key covers what it promises (tests/CATALOGUE.md, I-2; issue 14, part 2).

The fingerprint a key is checked against covers everything that shapes the record or the answer:
method, target, body, and the values taken from the request into the record (the header a route's
key comes from, allow-listed headers, Content-Type). On a canary route a retry takes the path the
first attempt took, and the key's own checks apply before the path is chosen.
"""
from __future__ import annotations

import pytest

from conftest import base_config, unique


@pytest.fixture(scope="module")
def topic(kafka):
    return kafka.create_topic(unique("idem"), 1)


@pytest.fixture(scope="module")
def h(handoff_process, brokers, upstream, topic):
    routes = [
        {"name": "tenant", "match": {"methods": ["POST"], "path": "/tenant"}, "mode": "event", "topic": topic,
         "key": "header:X-Tenant", "headers": ["X-Region"]},
        {"name": "split", "match": {"methods": ["POST"], "path": "/split"}, "mode": "forward", "topic": topic,
         "canary": {"mode": "event", "percent": 50}},
        {"name": "split-required", "match": {"methods": ["POST"], "path": "/split-required"}, "mode": "forward",
         "topic": topic, "canary": {"mode": "event", "percent": 50}, "idempotency": "required"},
    ]
    return handoff_process(base_config(brokers, upstream.port, routes), name="idempotency")


def post(h, path, key, headers=None, body=b'{"n":1}'):
    hs = {"Idempotency-Key": key, "Content-Type": "application/json", **(headers or {})}
    return h.request("POST", path, body, hs)


@pytest.mark.parametrize("change", [
    {"X-Tenant": "us"},                         # the record key's header
    {"X-Region": "north"},                      # an allow-listed header copied into the record
    {"Content-Type": "text/plain"},             # the record's content-type
])
def test_the_same_key_and_body_with_another_value_taken_into_the_record_is_422(h, change):
    key = unique("k")
    first = post(h, "/tenant", key, {"X-Tenant": "eu", "X-Region": "south"})
    assert first.status == 202, first
    again = post(h, "/tenant", key, {"X-Tenant": "eu", "X-Region": "south", **change})
    assert again.status == 422 and again.json()["error"] == "idempotency_key_reused", again
    same = post(h, "/tenant", key, {"X-Tenant": "eu", "X-Region": "south"})
    assert same.status == 202 and same.header("Idempotent-Replayed") == "true", same


def test_a_retry_on_a_canary_route_takes_the_path_of_the_first_attempt(h, upstream):
    paths = set()
    for i in range(40):
        key = unique(f"c{i}")
        first = post(h, "/split", key)
        assert first.status in (200, 202), first
        for _ in range(2):
            again = post(h, "/split", key)
            assert again.status == first.status, (first, again)
            if first.status == 202:  # event: the stored answer, nothing produced again
                assert again.header("Idempotent-Replayed") == "true", again
        paths.add(first.status)
    assert paths == {200, 202}, f"40 keys at 50 % took one path only: {paths}"


def test_a_canary_route_that_requires_a_key_refuses_a_request_without_one_whichever_path_it_would_take(h, upstream):
    tag = unique("nokey")
    for i in range(10):
        r = h.request("POST", "/split-required", b"{}", {"X-Correlation-ID": f"{tag}-{i}"})
        assert r.status == 400 and r.json()["error"] == "idempotency_key_missing", r
    assert not upstream.matching(lambda q: (q.header("X-Correlation-ID") or "").startswith(tag))
