"""L-10, the idle footprint (issue 16: "Handoff idle < 15 MB"): what a started sidecar that has
served one request keeps resident, and which of that is libraries it never needed.

Two causes of a larger footprint are regressions of the build, not of the code, and are checked
by name: librdkafka built with Cyrus SASL (libsasl2, Berkeley DB and the SASL plugins, for
Kerberos only: PLAIN, SCRAM and OAUTHBEARER are librdkafka's own), and librdkafka seeding its
jitter PRNG from OpenSSL's DRBG, which starts OpenSSL's providers in a process that has no TLS
broker connection (scripts/setup.sh builds librdkafka without both).
"""
from __future__ import annotations

import re
from pathlib import Path

from conftest import base_config, http_request, rss_bytes, standard_routes

MiB = 1024 * 1024
IDLE_RSS_BOUND = 15 * MiB  # the bound, for the non-sanitized build


def mappings_rss_kb(pid: int) -> dict[str, int]:
    """Resident kB per mapped file (anonymous mappings under "")."""
    out: dict[str, int] = {}
    name = ""
    for ln in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        m = re.match(r"^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$", ln)
        if m:
            name = m.group(1)
        elif ln.startswith("Rss:"):
            out[name] = out.get(name, 0) + int(ln.split()[1])
    return out


def test_an_idle_sidecar_maps_no_cyrus_sasl_and_stays_under_15_mb(handoff_process, brokers, upstream, topics):
    h = handoff_process(base_config(brokers, upstream.port, standard_routes(topics)), name="footprint")
    # A request before measuring: the producer and its broker connection are up, as in a pod that
    # has started serving.
    r = http_request(h.port, "GET", "/_handoff/requests/00000000-0000-7000-8000-000000000000")
    assert r.status == 404, r
    maps = mappings_rss_kb(h.proc.pid)
    loaded = sorted(n for n in maps if re.search(r"libsasl2|/sasl2/|libdb-", n))
    assert not loaded, f"Cyrus SASL is loaded (librdkafka built with --enable-sasl/--enable-gssapi?): {loaded}"

    sanitized = any("libasan" in n or "libubsan" in n for n in maps)
    if sanitized:
        return  # ASan's shadow memory and allocator make RSS meaningless here
    rss = rss_bytes(h.proc.pid)
    crypto = {n: kb for n, kb in maps.items() if "libcrypto" in n}
    assert rss < IDLE_RSS_BOUND, (f"idle RSS {rss / MiB:.1f} MiB; the largest mappings: "
                                  f"{sorted(maps.items(), key=lambda kv: -kv[1])[:8]}")
    # OpenSSL started (its DRBG, providers and error tables) touches about 2 MB more of libcrypto
    # than loading it does (1.4 MB here, most of it relocations): a plaintext sidecar never needs it.
    assert sum(crypto.values()) < 2500, f"libcrypto resident {crypto} kB: was OpenSSL initialised at start?"
