// A consumer-group member (the port proxy::consumer) driven by the test: it assigns and revokes
// partitions when told, remembers pauses, resumes and stored offsets, and hands records to the
// listener only when the test feeds them. Not thread-safe: for tests that run the io_context on
// their own thread.
#pragma once

#include "handoff/ports/consumer.hpp"

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace handoff::test {

struct fake_consumer final : proxy::consumer {
    proxy::consumer_listener* listener = nullptr;
    std::set<proxy::topic_partition> assigned, paused;
    std::map<proxy::topic_partition, std::int64_t> stored;
    std::vector<std::pair<proxy::topic_partition, std::int64_t>> stores;
    int resumes_of_unpaused = 0;  // resume() of a partition that was not paused: a caller bug
    int pauses = 0, resumes = 0;
    bool closed = false;

    void start(proxy::consumer_listener& l) override { listener = &l; }
    void pause(const std::vector<proxy::topic_partition>& ps) override {
        for (const auto& p : ps) paused.insert(p), ++pauses;
    }
    void resume(const std::vector<proxy::topic_partition>& ps) override {
        for (const auto& p : ps) {
            if (!paused.erase(p)) ++resumes_of_unpaused;
            ++resumes;
        }
    }
    proxy::store_result store_offset(const proxy::topic_partition& tp, std::int64_t next) override {
        if (!assigned.count(tp)) return proxy::store_result::not_assigned;
        stored[tp] = next;
        stores.emplace_back(tp, next);
        return proxy::store_result::ok;
    }
    void close() override { closed = true; }
    std::string member_id() const override { return "member-1"; }
    std::vector<proxy::partition_lag> lag() const override { return {}; }

    void assign(const std::vector<proxy::topic_partition>& ps) {
        for (const auto& p : ps) assigned.insert(p);
        listener->on_assigned(ps);
    }
    void revoke(const std::vector<proxy::topic_partition>& ps) {
        listener->on_revoked(ps, false);
        for (const auto& p : ps) assigned.erase(p);
    }
    // The next offset stored for `tp`, or -1 when none was.
    std::int64_t stored_at(const proxy::topic_partition& tp) const {
        const auto it = stored.find(tp);
        return it == stored.end() ? -1 : it->second;
    }
};

}  // namespace handoff::test
