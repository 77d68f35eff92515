#include "handoff/common/ids.hpp"

#include <sys/random.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <random>
#include <stdexcept>

namespace handoff::proxy {
namespace {

std::mt19937_64& rng() {
    // Per-thread generator for trace context: no locking on the hot path. Trace IDs need
    // uniqueness, not secrecy; request IDs come from the CSPRNG (make_uuid_v7).
    thread_local std::mt19937_64 gen{[] {
        std::random_device rd;
        std::seed_seq seq{rd(), rd(), rd(), rd(), rd(), rd(), rd(), rd()};
        return std::mt19937_64(seq);
    }()};
    return gen;
}

// `n` (at most 64) bytes from the kernel's CSPRNG (getrandom(2), which blocks only until the
// kernel's pool is first seeded, at boot), each handed out once. Drawn 4 KiB at a time into a
// per-thread buffer: a system call per ~400 IDs. Not OpenSSL's RAND_bytes, which draws from the same
// kernel source: starting OpenSSL's DRBG and providers costs a sidecar that has no TLS broker
// connection about 2 MB of resident memory (tests/integration/test_footprint.py). Throws
// std::runtime_error when the CSPRNG fails: no weak bytes instead.
const unsigned char* csprng_bytes(std::size_t n) {
    struct pool {
        std::array<unsigned char, 4096> bytes;
        std::size_t next = 4096;  // empty
    };
    thread_local pool p;
    if (p.next + n > p.bytes.size()) {
        // Above 256 bytes getrandom may return fewer (a signal): fill the rest.
        for (std::size_t filled = 0; filled < p.bytes.size();) {
            const ssize_t got = getrandom(p.bytes.data() + filled, p.bytes.size() - filled, 0);
            if (got < 0 && errno == EINTR) continue;
            if (got <= 0) throw std::runtime_error("the CSPRNG (getrandom) failed: no request ID can be made");
            filled += static_cast<std::size_t>(got);
        }
        p.next = 0;
    }
    const unsigned char* out = p.bytes.data() + p.next;
    p.next += n;
    return out;
}

constexpr char hex_digits[] = "0123456789abcdef";

// Writes `nibbles` hex digits of v at p; returns the end.
char* put_hex(char* p, std::uint64_t v, int nibbles) {
    for (int i = nibbles - 1; i >= 0; --i) *p++ = hex_digits[(v >> (i * 4)) & 0xF];
    return p;
}

bool lower_hex(std::string_view s) noexcept {
    for (char c : s) {
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    }
    return true;
}

bool all_zero(std::string_view s) noexcept {
    for (char c : s) {
        if (c != '0') return false;
    }
    return true;
}

}  // namespace

bool valid_correlation_id(std::string_view id) noexcept {
    if (id.empty() || id.size() > 128) return false;
    for (char c : id) {
        const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
                        c == '_' || c == ':' || c == '-';
        if (!ok) return false;
    }
    return true;
}

std::string make_uuid_v7() {
    using namespace std::chrono;
    const auto ms =
        static_cast<std::uint64_t>(duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count());
    const unsigned char* bytes = csprng_bytes(10);
    std::uint64_t r1 = 0, r2 = 0;
    for (int i = 0; i < 2; ++i) r1 = (r1 << 8) | bytes[i];
    for (int i = 2; i < 10; ++i) r2 = (r2 << 8) | bytes[i];
    // Layout: time_hi(32) time_lo(16) | ver(4) rand_a(12) | var(2) rand_b(62)
    const std::uint64_t hi = (ms << 16) | 0x7000u | (r1 & 0x0FFFu);
    const std::uint64_t lo = (r2 & 0x3FFFFFFFFFFFFFFFull) | 0x8000000000000000ull;
    char buf[36];
    char* p = put_hex(buf, hi >> 32, 8);
    *p++ = '-';
    p = put_hex(p, (hi >> 16) & 0xFFFF, 4);
    *p++ = '-';
    p = put_hex(p, hi & 0xFFFF, 4);
    *p++ = '-';
    p = put_hex(p, lo >> 48, 4);
    *p++ = '-';
    put_hex(p, lo & 0xFFFFFFFFFFFFull, 12);
    return std::string(buf, sizeof buf);
}

bool valid_traceparent(std::string_view tp) noexcept {
    // version "-" trace-id "-" parent-id "-" flags; future versions may append "-..." fields.
    if (tp.size() < 55) return false;
    const auto version = tp.substr(0, 2);
    if (!lower_hex(version) || version == "ff") return false;
    if (version == "00" && tp.size() != 55) return false;
    if (tp.size() > 55 && tp[55] != '-') return false;
    if (tp[2] != '-' || tp[35] != '-' || tp[52] != '-') return false;
    const auto trace_id = tp.substr(3, 32);
    const auto parent_id = tp.substr(36, 16);
    const auto flags = tp.substr(53, 2);
    return lower_hex(trace_id) && !all_zero(trace_id) && lower_hex(parent_id) && !all_zero(parent_id) &&
           lower_hex(flags);
}

std::string make_traceparent() {
    auto& gen = rng();
    std::uint64_t t1 = gen(), t2 = gen(), p = gen();
    if ((t1 | t2) == 0) t2 = 1;
    if (p == 0) p = 1;
    char buf[55] = {'0', '0', '-'};
    char* q = put_hex(buf + 3, t1, 16);
    q = put_hex(q, t2, 16);
    *q++ = '-';
    q = put_hex(q, p, 16);
    *q++ = '-';
    *q++ = '0';
    *q = '1';
    return std::string(buf, sizeof buf);
}

}  // namespace handoff::proxy
