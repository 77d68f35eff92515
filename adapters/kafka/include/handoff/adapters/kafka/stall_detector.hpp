// When a producer handle makes no progress while its cluster answers (adapters/kafka/README.md,
// "Stalls"). Pure logic: fed observations and a clock by the producer's probe thread, tested in
// memory (tests/adapters/kafka/stall_detector_test.cpp). Not thread-safe; one owner.
#pragma once

#include <chrono>
#include <cstdint>

namespace handoff::adapters::kafka {

struct stall_observation {
    std::uint64_t pending = 0;    // accepted records whose delivery report has not run yet
    std::uint64_t persisted = 0;  // delivery reports with status persisted so far (monotonic)
    bool reachable = false;       // a broker answered a metadata request in this probe
    bool pid_assigned = true;     // the idempotent producer has its producer ID
};

enum class stall_verdict {
    progressing,     // nothing to do
    no_deliveries,   // records pending, cluster answering, nothing persisted for the window
    no_producer_id,  // cluster answering, still no producer ID after the window
};

inline const char* to_string(stall_verdict v) noexcept;

class stall_detector {
public:
    using clock = std::chrono::steady_clock;

    // `window` <= 0 disables detection (observe always answers progressing).
    explicit stall_detector(std::chrono::milliseconds window) noexcept : window_(window) {}

    // One probe's view. A window starts when its condition begins to hold (records pending while
    // reachable; reachable without a producer ID) and restarts on progress: a persisted report,
    // nothing pending, or the cluster not answering (an outage is not a stall: the window counts
    // only time in which the cluster could have taken the records). Timed-out or failed reports
    // are not progress: a handle whose every record times out is the stall this detects.
    stall_verdict observe(clock::time_point now, const stall_observation& o) noexcept {
        if (window_.count() <= 0) return stall_verdict::progressing;
        const bool waiting_records = o.reachable && o.pending > 0;
        // A window starts at the first observation in which its condition holds.
        if (!waiting_records || !waiting_records_ || o.persisted != persisted_) records_since_ = now;
        persisted_ = o.persisted;
        waiting_records_ = waiting_records;
        const bool waiting_pid = o.reachable && !o.pid_assigned;
        if (!waiting_pid || !waiting_pid_) pid_since_ = now;
        waiting_pid_ = waiting_pid;
        if (waiting_records && now - records_since_ >= window_) return stall_verdict::no_deliveries;
        if (waiting_pid && now - pid_since_ >= window_) return stall_verdict::no_producer_id;
        return stall_verdict::progressing;
    }

    // After acting on a verdict (a new handle): every window starts again at the next observation.
    void reset() noexcept {
        waiting_records_ = false;
        waiting_pid_ = false;
    }

    std::chrono::milliseconds window() const noexcept { return window_; }

private:
    std::chrono::milliseconds window_;
    std::uint64_t persisted_ = 0;
    bool waiting_records_ = false;  // the condition held at the previous observation
    bool waiting_pid_ = false;
    clock::time_point records_since_{};
    clock::time_point pid_since_{};
};

inline const char* to_string(stall_verdict v) noexcept {
    switch (v) {
        case stall_verdict::progressing: return "progressing";
        case stall_verdict::no_deliveries: return "no_deliveries";
        case stall_verdict::no_producer_id: return "no_producer_id";
    }
    return "unknown";
}

}  // namespace handoff::adapters::kafka
