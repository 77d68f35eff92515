// When a manually assigned partition (the reply topic's, the state topic's) stops being read while
// its log has records past the point read (adapters/kafka/README.md, "Fetch stalls"). librdkafka's
// consumer can stay stuck on a partition after a broker restart until the consumer is restarted
// (seen here about once in 25 restarts: every keyed commit of that replica 503 for ever, /readyz
// 200). Pure logic: fed the offset read up to, a clock, and the partition's offsets on demand by the
// consumer's control thread; tested in memory (tests/adapters/kafka/fetch_watch_test.cpp). Not
// thread-safe; one owner.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>

namespace handoff::adapters::kafka {

class fetch_watch {
public:
    using clock = std::chrono::steady_clock;
    struct offsets {
        std::int64_t low = 0;   // the log's first offset
        std::int64_t high = 0;  // its end (the next offset to be written)
    };
    // The partition's offsets, asked of its leader; nullopt when they cannot be read now (the broker
    // is down: an outage, not a stall of this consumer).
    using offsets_fn = std::function<std::optional<offsets>()>;

    // `after`: how long a partition may read nothing while records wait before its fetch is
    // restarted. Restarts that do not help are retried after twice the time, up to `max_backoff`.
    explicit fetch_watch(std::chrono::milliseconds after,
                         std::chrono::milliseconds max_backoff = std::chrono::minutes(5)) noexcept
        : after_(after), max_backoff_(max_backoff) {}

    // One control round for one partition. `reached`: the next offset to read (the last record's
    // offset + 1, or the end offset an end-of-partition event reported; at assignment, the offset it
    // started from). Asks `ends` only when nothing was read for `after` since the last change (or the
    // last ask). Returns the offset to restart the partition's fetch at when records wait past
    // `reached` (or past the log's start, when retention removed them) and none was read.
    std::optional<std::int64_t> observe(std::int32_t partition, std::int64_t reached, clock::time_point now,
                                        const offsets_fn& ends) {
        auto [it, added] = parts_.try_emplace(partition);
        auto& s = it->second;
        if (added || reached != s.reached) {
            s.reached = reached;
            s.next_look = now + after_;
            if (!added) s.restarts = 0;  // reading again: a later stall waits `after` only
            return std::nullopt;
        }
        if (now < s.next_look) return std::nullopt;
        s.next_look = now + after_;
        const auto o = ends();
        if (!o) return std::nullopt;
        const auto from = std::max(reached, o->low);
        if (o->high <= from) return std::nullopt;  // nothing to read: idle, not stalled
        ++s.restarts;
        s.next_look = now + backoff(s.restarts);
        return from;
    }

    // Restarts of `partition` since it last read something (0 when it is not watched).
    int restarts(std::int32_t partition) const {
        const auto it = parts_.find(partition);
        return it == parts_.end() ? 0 : it->second.restarts;
    }

    void clear() { parts_.clear(); }  // every partition dropped (the topic replaced or gone)

private:
    struct state {
        std::int64_t reached = -1;
        clock::time_point next_look{};
        int restarts = 0;
    };

    // `after` for the first restart, then doubled for each one that did not help.
    std::chrono::milliseconds backoff(int restarts) const {
        auto d = after_;
        for (int i = 1; i < restarts && d < max_backoff_; ++i) d *= 2;
        return std::min(d, max_backoff_);
    }

    std::chrono::milliseconds after_;
    std::chrono::milliseconds max_backoff_;
    std::map<std::int32_t, state> parts_;
};

}  // namespace handoff::adapters::kafka
