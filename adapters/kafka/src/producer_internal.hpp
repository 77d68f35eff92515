// Private to adapters/kafka: what the producer's files share (one librdkafka handle per
// generation, the C callbacks served by rd_kafka_poll, the configuration template).
#pragma once

#include <handoff/config/config.hpp>
#include <handoff/ports/producer.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/strand.hpp>

#include <librdkafka/rdkafka.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace handoff::adapters::kafka::producer_detail {

namespace asio = boost::asio;

// Counters shared by the producer and all its handles; outlive both (held by every generation).
struct counters {
    std::atomic<std::uint64_t> in_flight{0};
    std::atomic<std::uint64_t> bytes{0};
    std::atomic<std::uint64_t> recreated_fatal{0};
    std::atomic<std::uint64_t> recreated_stalled{0};
};

struct generation;

// One accepted record, owned by librdkafka (as msg_opaque) from produce to its delivery report.
// RD_KAFKA_V_VALUE points into `record.value`: the body is never copied.
struct pending_message {
    proxy::kafka_record record;
    proxy::delivery_handler handler;
    std::size_t bytes = 0;
};

// Called by the wake-up handler when the generation saw a fatal error; implemented by
// producer_impl. Held weakly: a generation can outlive its producer.
class fatal_listener {
public:
    virtual void on_fatal(const std::shared_ptr<generation>& g) = 0;

protected:
    ~fatal_listener() = default;
};

// One librdkafka handle with its wake-up eventfd. A fatal error or a stall retires a generation:
// it is purged, served until every handler ran, then destroyed on its own thread, while a new
// generation takes over. Its queue is served on `strand` only (wake-ups and stall handling), so
// retiring never races with serving.
struct generation {
    generation(asio::io_context& ioc, std::shared_ptr<counters> c)
        : strand(asio::make_strand(ioc)), wake(ioc), stats(std::move(c)) {}
    ~generation() { destroy_handle(); }

    rd_kafka_t* rk = nullptr;
    rd_kafka_queue_t* main_queue = nullptr;
    asio::strand<asio::io_context::executor_type> strand;
    asio::posix::stream_descriptor wake;  // owns the eventfd until released
    std::shared_ptr<counters> stats;
    std::weak_ptr<fatal_listener> owner;
    std::atomic<std::int64_t> pending{0};     // accepted, handler not yet run
    std::atomic<std::uint64_t> persisted{0};  // reports with status persisted (stall detection)
    std::atomic<bool> pid_assigned{false};    // statistics: eos.idemp_state == "Assigned"
    std::atomic<bool> fatal{false};           // set by error_cb (ERR__FATAL)
    bool fatal_handled = false;               // strand only: retirement started (fatal or stall)
    bool retired = false;                     // strand only: retire() ran; the fd is released
    std::atomic<bool> retiring{false};
    std::atomic<bool> destroyed{false};
    std::atomic<bool> collect_purged{false};  // flush: remember purged correlation IDs
    std::mutex purged_mu;
    std::vector<std::string> purged;
    std::mutex handle_mu;  // metadata thread vs. destruction

    // Serves the main queue (delivery reports, errors) from the calling thread.
    // Returns false when it stopped at `budget` with events possibly left.
    bool serve(int budget) {
        while (budget-- > 0) {
            if (rd_kafka_poll(rk, 0) == 0) return true;
        }
        return false;
    }

    void destroy_handle() noexcept {
        std::lock_guard lk(handle_mu);
        if (rk == nullptr) return;
        destroyed = true;
        if (main_queue != nullptr) {
            rd_kafka_queue_io_event_enable(main_queue, -1, nullptr, 0);
            rd_kafka_queue_destroy(main_queue);
            main_queue = nullptr;
        }
        rd_kafka_destroy(rk);
        rk = nullptr;
    }
};

struct conf_deleter {
    void operator()(rd_kafka_conf_t* c) const noexcept { rd_kafka_conf_destroy(c); }
};
using conf_ptr = std::unique_ptr<rd_kafka_conf_t, conf_deleter>;

// producer_callbacks.cpp: librdkafka outcomes as proxy values, and the callbacks (never throw).
proxy::produce_error map_produce_error(rd_kafka_resp_err_t err) noexcept;
proxy::delivery_report make_report(const rd_kafka_message_t* m) noexcept;
void on_delivery(rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) noexcept;
void on_error(rd_kafka_t* rk, int err, const char* reason, void* opaque) noexcept;
int on_stats(rd_kafka_t*, char* json, size_t len, void* opaque) noexcept;
void on_log(const rd_kafka_t*, int level, const char* fac, const char* buf) noexcept;

// producer_conf.cpp: the librdkafka configuration (without callbacks/opaque, which are per generation).
conf_ptr build_conf(const config::kafka_config& cfg, const std::string& bootstrap, std::string& error);

}  // namespace handoff::adapters::kafka::producer_detail
