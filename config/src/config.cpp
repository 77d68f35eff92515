#include "handoff/config/config.hpp"

namespace handoff::config {

const char* to_string(mode m) noexcept {
    switch (m) {
        case mode::forward: return "forward";
        case mode::event: return "event";
        case mode::commit: return "commit";
        case mode::shadow: return "shadow";
        case mode::reply: return "reply";
    }
    return "unknown";
}

bool produces(mode m) noexcept { return m != mode::forward; }

}  // namespace handoff::config
