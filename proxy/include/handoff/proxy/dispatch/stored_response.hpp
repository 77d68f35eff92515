// An HTTP response kept in memory to be given again: a reply read from Kafka (status endpoint,
// `reply` routes) or a completed response replayed for a repeated Idempotency-Key.
#pragma once

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

namespace handoff::proxy {

struct stored_response {
    unsigned status = 0;
    std::vector<std::pair<std::string, std::string>> headers;  // in order; names as sent
    std::string body;

    // What it costs in memory, roughly: for the byte bounds of the stores that keep it.
    std::size_t bytes() const noexcept {
        std::size_t n = sizeof(*this) + body.size();
        for (const auto& [k, v] : headers) n += k.size() + v.size() + 2 * sizeof(std::string);
        return n;
    }
};

}  // namespace handoff::proxy
