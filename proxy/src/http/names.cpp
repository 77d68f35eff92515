#include "handoff/ports/producer.hpp"
#include "handoff/ports/upstream.hpp"

namespace handoff::proxy {

const char* to_string(produce_error e) noexcept {
    switch (e) {
        case produce_error::ok: return "ok";
        case produce_error::queue_full: return "queue_full";
        case produce_error::message_too_large: return "message_too_large";
        case produce_error::invalid_topic: return "invalid_topic";
        case produce_error::unknown_topic: return "unknown_topic";
        case produce_error::not_ready: return "producer_not_ready";
    }
    return "unknown";
}

const char* to_string(upstream_error e) noexcept {
    switch (e) {
        case upstream_error::ok: return "ok";
        case upstream_error::refused: return "upstream_unavailable";
        case upstream_error::timeout: return "upstream_timeout";
        case upstream_error::bad_response: return "upstream_bad_response";
        case upstream_error::pool_exhausted: return "upstream_pool_exhausted";
    }
    return "unknown";
}

}  // namespace handoff::proxy
