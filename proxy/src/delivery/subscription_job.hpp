// A subscription's private state, shared by subscription.cpp (consuming, scheduling, circuit,
// resolution) and subscription_outputs.cpp (dead letters and replies).
#pragma once

#include "handoff/proxy/delivery/subscription.hpp"

#include <boost/asio/steady_timer.hpp>

#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>

namespace handoff::proxy {

struct subscription::job {
    consumed_record record;
    topic_partition tp;
    std::uint64_t epoch = 0;
    std::optional<std::string> order_key;  // nullopt: not held behind anything
    int attempts = 0;                      // counted HTTP attempts (responses and timeouts)
    int connection_failures = 0;
    int dead_letter_writes = 0;
    int reply_writes = 0;
    int last_status = 0;
    std::string last_error;
    std::string dead_letter_reason;
    http::response<http::string_body> response;        // kept for the reply
    bool dead_letter_after_reply = false;              // a final non-2xx answer: replied, then dead-lettered
    std::shared_ptr<boost::asio::steady_timer> timer;  // while waiting for a retry
    bool active = false;                               // an HTTP attempt or a produce is in progress
    bool done = false;                                 // resolved or abandoned: nothing more happens
};

struct subscription::partition_state {
    std::uint64_t epoch = 0;
    offset_tracker offsets;
    std::map<std::int64_t, job_ptr> jobs;             // unresolved, by offset
    std::map<std::string, std::deque<job_ptr>> keys;  // per ordering key; the head is active
    bool paused = false;                              // paused by us
};

}  // namespace handoff::proxy
