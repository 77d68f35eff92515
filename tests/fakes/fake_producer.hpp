// A producer whose delivery reports the test decides. Thread-safe: the server calls `produce`
// from its io_context thread while the test thread inspects what was produced.
//
// Reports are posted to the io_context given at construction, never run inside `produce`, as
// librdkafka's come later from its own thread. With `policy::hold` they wait for `release_held`.
#pragma once

#include "handoff/ports/producer.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <future>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace handoff::test {

class fake_producer final : public proxy::producer {
public:
    explicit fake_producer(boost::asio::io_context& ioc) : ioc_(ioc) {}

    // What the next delivery reports say: persisted, not persisted (safe to retry), possibly
    // persisted (outcome unknown), or nothing until release_held().
    enum class policy { persist, fail, possibly, hold };
    policy mode = policy::persist;
    // Anything but ok: produce() refuses with it and keeps nothing (a full queue, an unknown topic).
    proxy::produce_error refuse = proxy::produce_error::ok;

    proxy::produce_error produce(proxy::kafka_record& r, proxy::delivery_handler h) override {
        std::lock_guard lock(m_);
        if (refuse != proxy::produce_error::ok) return refuse;
        records_.push_back(r);
        proxy::delivery_report rep;
        rep.partition = 0;
        rep.offset = static_cast<std::int64_t>(records_.size() - 1);
        switch (mode) {
            case policy::persist: rep.status = proxy::delivery_status::persisted; break;
            case policy::fail:
                rep.status = proxy::delivery_status::not_persisted;
                rep.error = "Local: Message timed out";
                break;
            case policy::possibly:
                rep.status = proxy::delivery_status::possibly_persisted;
                rep.error = "Local: Message timed out";
                break;
            case policy::hold:
                held_.emplace_back(std::move(h), rep);
                produced_.notify_all();
                return proxy::produce_error::ok;
        }
        boost::asio::post(ioc_, [h = std::move(h), rep] { h(rep); });
        produced_.notify_all();
        return proxy::produce_error::ok;
    }

    // Reports every held record as persisted.
    void release_held() {
        std::lock_guard lock(m_);
        for (auto& [h, rep] : held_) {
            rep.status = proxy::delivery_status::persisted;
            boost::asio::post(ioc_, [h = std::move(h), rep] { h(rep); });
        }
        held_.clear();
    }

    // Returns once every report posted so far has run. Only for an io_context run by one other
    // thread (handlers then run in posting order); never call it from that thread.
    void settle() {
        std::promise<void> done;
        boost::asio::post(ioc_, [&done] { done.set_value(); });
        done.get_future().wait();
    }

    // Blocks until at least `n` records were produced, or `within` passed; true if they were.
    bool wait_for_count(std::size_t n, std::chrono::milliseconds within = std::chrono::seconds(10)) {
        std::unique_lock lock(m_);
        return produced_.wait_for(lock, within, [&] { return records_.size() >= n; });
    }

    std::size_t count() const {
        std::lock_guard lock(m_);
        return records_.size();
    }
    proxy::kafka_record record(std::size_t i) const {
        std::lock_guard lock(m_);
        return records_.at(i);
    }
    // A snapshot, in produce order.
    std::vector<proxy::kafka_record> records() const {
        std::lock_guard lock(m_);
        return records_;
    }

    proxy::producer_stats stats() const override { return {}; }
    bool ready() const override { return true; }
    std::vector<std::string> flush(std::chrono::milliseconds) override { return {}; }

private:
    boost::asio::io_context& ioc_;
    mutable std::mutex m_;
    std::condition_variable produced_;
    std::vector<proxy::kafka_record> records_;
    std::vector<std::pair<proxy::delivery_handler, proxy::delivery_report>> held_;
};

// The value of a record header, or "" when the record has none of that name.
inline std::string header_of(const proxy::kafka_record& r, std::string_view name) {
    for (const auto& h : r.headers) {
        if (h.name == name) return h.value;
    }
    return {};
}

}  // namespace handoff::test
