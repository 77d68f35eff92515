#include "handoff/proxy/dispatch/shared_state.hpp"

#include <nlohmann/json.hpp>
#include <openssl/evp.h>

#include <algorithm>
#include <climits>

namespace handoff::proxy::shared {
namespace {

using json = nlohmann::json;

constexpr int format_version = 1;

const char* kind_name(record_kind k) noexcept {
    switch (k) {
        case record_kind::claim: return "claim";
        case record_kind::complete: return "complete";
        case record_kind::release: return "release";
        case record_kind::status: return "status";
    }
    return "?";
}

std::optional<record_kind> parse_kind(std::string_view s) {
    for (auto k : {record_kind::claim, record_kind::complete, record_kind::release, record_kind::status}) {
        if (s == kind_name(k)) return k;
    }
    return std::nullopt;
}

std::optional<request_status::state> parse_state(std::string_view s) {
    using st = request_status::state;
    for (auto v : {st::accepted, st::persisted, st::failed, st::unknown, st::replied}) {
        if (s == to_string(v)) return v;
    }
    return std::nullopt;
}

std::string base64(std::string_view in) {
    if (in.size() > static_cast<std::size_t>(INT_MAX / 4 * 3 - 3)) throw std::length_error("body too large");
    std::string out(4 * ((in.size() + 2) / 3) + 1, '\0');
    const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                  reinterpret_cast<const unsigned char*>(in.data()), static_cast<int>(in.size()));
    out.resize(static_cast<std::size_t>(n));
    return out;
}

std::optional<std::string> unbase64(std::string_view in) {
    if (in.size() % 4 != 0 || in.size() > static_cast<std::size_t>(INT_MAX)) return std::nullopt;
    std::size_t pad = 0;
    if (!in.empty() && in.back() == '=') ++pad;
    if (in.size() >= 2 && in[in.size() - 2] == '=') ++pad;
    for (std::size_t i = 0; i < in.size() - pad; ++i) {
        const char c = in[i];
        const bool ok =
            (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
        if (!ok) return std::nullopt;
    }
    std::string out(in.size() / 4 * 3, '\0');
    const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                  reinterpret_cast<const unsigned char*>(in.data()), static_cast<int>(in.size()));
    if (n < 0 || static_cast<std::size_t>(n) < pad) return std::nullopt;
    out.resize(static_cast<std::size_t>(n) - pad);
    return out;
}

std::string hex(const request_fingerprint& fp) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string out;
    out.reserve(fp.size() * 2);
    for (auto b : fp) {
        out += digits[b >> 4];
        out += digits[b & 0xF];
    }
    return out;
}

std::optional<request_fingerprint> unhex(std::string_view s) {
    request_fingerprint fp{};
    if (s.size() != fp.size() * 2) return std::nullopt;
    auto nibble = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        return -1;
    };
    for (std::size_t i = 0; i < fp.size(); ++i) {
        const int hi = nibble(s[2 * i]), lo = nibble(s[2 * i + 1]);
        if (hi < 0 || lo < 0) return std::nullopt;
        fp[i] = static_cast<std::uint8_t>(hi << 4 | lo);
    }
    return fp;
}

json response_json(const stored_response& r) {
    json headers = json::array();
    for (const auto& [k, v] : r.headers) headers.push_back({k, v});
    return {{"status", r.status}, {"headers", std::move(headers)}, {"body", base64(r.body)}};
}

std::shared_ptr<const stored_response> parse_response(const json& j) {
    auto r = std::make_shared<stored_response>();
    const auto status = j.at("status").get<unsigned>();
    if (status < 100 || status > 999) throw std::invalid_argument("status out of range");
    r->status = status;
    for (const auto& h : j.at("headers")) {
        if (!h.is_array() || h.size() != 2) throw std::invalid_argument("header is not a [name, value] pair");
        r->headers.emplace_back(h.at(0).get<std::string>(), h.at(1).get<std::string>());
    }
    auto body = unbase64(j.at("body").get<std::string>());
    if (!body) throw std::invalid_argument("body is not base64");
    r->body = std::move(*body);
    return r;
}

// Whether `r` belongs under `record_key`: a record copied under another key must not touch that
// key's entry.
bool key_matches(const record& r, std::string_view key) { return record_key(r) == key; }

}  // namespace

std::string idempotency_record_key(std::string_view scope, std::string_view key) {
    std::string out = "i/";
    out += std::to_string(scope.size());
    out += '/';
    out += scope;
    out += '/';
    out += key;
    return out;
}

std::string status_record_key(std::string_view request_id) {
    std::string out = "s/";
    out += request_id;
    return out;
}

std::string record_key(const record& r) {
    return r.kind == record_kind::status ? status_record_key(r.request_id) : idempotency_record_key(r.scope, r.key);
}

std::string encode(const record& r) {
    json j = {{"v", format_version}, {"t", kind_name(r.kind)}, {"req", r.request_id}, {"owner", r.owner}};
    switch (r.kind) {
        case record_kind::claim:
            j["scope"] = r.scope;
            j["key"] = r.key;
            j["fp"] = hex(r.fp);
            j["corr"] = r.correlation_id;
            break;
        case record_kind::complete:
            j["scope"] = r.scope;
            j["key"] = r.key;
            j["final"] = r.final;
            if (r.response) j["response"] = response_json(*r.response);
            break;
        case record_kind::release:
            j["scope"] = r.scope;
            j["key"] = r.key;
            break;
        case record_kind::status: {
            const auto& s = r.status;
            j["state"] = to_string(s.current);
            j["route"] = s.route;
            j["topic"] = s.topic;
            j["partition"] = s.partition;
            j["offset"] = s.offset;
            if (!s.reason.empty()) j["reason"] = s.reason;
            if (s.reply) j["reply"] = response_json(*s.reply);
            break;
        }
    }
    // Header values and bodies are bytes; a value that is not UTF-8 is a caller's: replaced, not
    // thrown on (bodies are base64 and never reach this).
    return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

decoded decode(std::string_view key, std::string_view value, clock::time_point timestamp) {
    decoded out;
    const auto j = json::parse(value, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) {
        out.error = "not a JSON object";
        return out;
    }
    try {
        if (j.value("v", 0) != format_version) {
            out.error = "unknown format version";
            return out;
        }
        const auto kind = parse_kind(j.at("t").get<std::string>());
        if (!kind) {
            out.error = "unknown record kind";
            return out;
        }
        record r;
        r.kind = *kind;
        r.request_id = j.at("req").get<std::string>();
        r.owner = j.value("owner", std::string());
        r.timestamp = timestamp;
        switch (r.kind) {
            case record_kind::claim: {
                r.scope = j.at("scope").get<std::string>();
                r.key = j.at("key").get<std::string>();
                r.correlation_id = j.value("corr", std::string());
                const auto fp = unhex(j.at("fp").get<std::string>());
                if (!fp) {
                    out.error = "fingerprint is not 64 hex digits";
                    return out;
                }
                r.fp = *fp;
                break;
            }
            case record_kind::complete:
                r.scope = j.at("scope").get<std::string>();
                r.key = j.at("key").get<std::string>();
                r.final = j.value("final", false);
                if (!j.contains("response")) {
                    out.error = "complete without a response";
                    return out;
                }
                r.response = parse_response(j.at("response"));
                break;
            case record_kind::release:
                r.scope = j.at("scope").get<std::string>();
                r.key = j.at("key").get<std::string>();
                break;
            case record_kind::status: {
                const auto state = parse_state(j.at("state").get<std::string>());
                if (!state) {
                    out.error = "unknown status state";
                    return out;
                }
                r.status.current = *state;
                r.status.route = j.value("route", std::string());
                r.status.topic = j.value("topic", std::string());
                r.status.partition = j.value("partition", -1);
                r.status.offset = j.value("offset", std::int64_t{-1});
                r.status.reason = j.value("reason", std::string());
                if (j.contains("reply")) r.status.reply = parse_response(j.at("reply"));
                r.status.updated = timestamp;
                break;
            }
        }
        if (!key_matches(r, key)) {
            out.error = "the record's key does not match its content";
            return out;
        }
        out.rec = std::move(r);
    } catch (const std::exception& e) {
        out.error = std::string("malformed: ") + e.what();
    }
    return out;
}

// ---- key_view -----------------------------------------------------------------------------------

key_view::key_view(limits l) : limits_(l) {}

void key_view::erase_locked(map_type::iterator it) {
    bytes_ -= it->second.bytes;
    by_claim_.erase({it->second.claimed, it->first});
    entries_.erase(it);
}

void key_view::account_locked(entry& e, std::size_t new_bytes) {
    bytes_ = bytes_ - e.bytes + new_bytes;
    e.bytes = new_bytes;
}

void key_view::shed_bytes_locked() {
    // Oldest claims first: their responses are the nearest to expiry anyway.
    for (auto it = by_claim_.begin(); bytes_ > limits_.max_bytes && it != by_claim_.end(); ++it) {
        auto e = entries_.find(it->second);
        if (e == entries_.end() || !e->second.response) continue;
        e->second.response.reset();
        e->second.evicted = true;
        account_locked(e->second, e->first.size() + sizeof(entry) + e->second.request_id.size() +
                                      e->second.correlation_id.size() + e->second.owner.size());
    }
}

void key_view::apply(const record& r) {
    if (r.kind == record_kind::status) return;
    const auto rk = idempotency_record_key(r.scope, r.key);
    std::lock_guard lock(mutex_);
    auto it = entries_.find(rk);
    switch (r.kind) {
        case record_kind::claim: {
            if (it != entries_.end()) {
                if (r.timestamp < it->second.claimed + limits_.ttl) return;  // the key is held: the claim loses
                erase_locked(it);                                            // expired at the claim's time
            }
            entry e;
            e.request_id = r.request_id;
            e.correlation_id = r.correlation_id;
            e.owner = r.owner;
            e.fp = r.fp;
            e.claimed = r.timestamp;
            auto [pos, inserted] = entries_.emplace(rk, std::move(e));
            by_claim_.insert({pos->second.claimed, rk});
            account_locked(pos->second, rk.size() + sizeof(entry) + pos->second.request_id.size() +
                                            pos->second.correlation_id.size() + pos->second.owner.size());
            return;
        }
        case record_kind::complete: {
            if (it == entries_.end() || it->second.request_id != r.request_id || !r.response) return;
            auto& e = it->second;
            if (e.final && !r.final) return;  // a settled answer is not replaced by a provisional one
            e.response = r.response;
            e.final = r.final;
            e.evicted = false;
            account_locked(e, rk.size() + sizeof(entry) + e.request_id.size() + e.correlation_id.size() +
                                  e.owner.size() + r.response->bytes());
            shed_bytes_locked();
            return;
        }
        case record_kind::release:
            if (it != entries_.end() && it->second.request_id == r.request_id) erase_locked(it);
            return;
        case record_kind::status: return;
    }
}

void key_view::forget(std::string_view record_key, std::string_view request_id) {
    std::lock_guard lock(mutex_);
    auto it = entries_.find(std::string(record_key));
    if (it == entries_.end()) return;
    if (!request_id.empty() && it->second.request_id != request_id) return;  // another request's since
    erase_locked(it);
}

key_view::answer key_view::verdict_locked(const entry& e, const request_fingerprint& fp, clock::time_point now) const {
    answer a;
    a.request_id = e.request_id;
    a.correlation_id = e.correlation_id;
    a.claimed = e.claimed;
    if (e.fp != fp) {
        a.kind = verdict::mismatch;
    } else if (e.response) {
        a.kind = verdict::replay;
        a.response = e.response;
    } else if (e.evicted) {
        a.kind = verdict::evicted;
    } else if (now >= e.claimed + limits_.claim_timeout) {
        a.kind = verdict::abandoned;
    } else {
        a.kind = verdict::in_flight;
    }
    return a;
}

std::optional<key_view::answer> key_view::peek(std::string_view scope, std::string_view key,
                                               const request_fingerprint& fp, clock::time_point now) const {
    std::lock_guard lock(mutex_);
    const auto it = entries_.find(idempotency_record_key(scope, key));
    if (it == entries_.end() || now >= it->second.claimed + limits_.ttl) return std::nullopt;
    return verdict_locked(it->second, fp, now);
}

key_view::answer key_view::decide(std::string_view scope, std::string_view key, const request_fingerprint& fp,
                                  std::string_view request_id, clock::time_point now) const {
    std::lock_guard lock(mutex_);
    const auto it = entries_.find(idempotency_record_key(scope, key));
    if (it == entries_.end()) return answer{verdict::lost, nullptr, {}, {}, {}};
    if (it->second.request_id == request_id) {
        answer a;
        a.kind = verdict::fresh;
        a.request_id = it->second.request_id;
        a.correlation_id = it->second.correlation_id;
        a.claimed = it->second.claimed;
        return a;
    }
    return verdict_locked(it->second, fp, now);
}

std::vector<key_view::expired> key_view::expire(clock::time_point now) {
    std::vector<expired> out;
    std::lock_guard lock(mutex_);
    while (!by_claim_.empty() && by_claim_.begin()->first + limits_.ttl <= now) {
        const auto it = entries_.find(by_claim_.begin()->second);
        if (it == entries_.end()) {
            by_claim_.erase(by_claim_.begin());
            continue;
        }
        out.push_back({it->first, it->second.request_id, it->second.owner});
        erase_locked(it);
    }
    return out;
}

bool key_view::full() const {
    std::lock_guard lock(mutex_);
    return entries_.size() > limits_.max_entries;
}

void key_view::clear() {
    std::lock_guard lock(mutex_);
    entries_.clear();
    by_claim_.clear();
    bytes_ = 0;
}

std::size_t key_view::size() const {
    std::lock_guard lock(mutex_);
    return entries_.size();
}

std::size_t key_view::bytes() const {
    std::lock_guard lock(mutex_);
    return bytes_;
}

}  // namespace handoff::proxy::shared
