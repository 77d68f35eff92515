#include "handoff/proxy/dispatch/shared_registry.hpp"

#include "handoff/common/log.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace handoff::proxy {
namespace asio = boost::asio;
using namespace std::chrono_literals;

namespace {

shared::key_view::limits view_limits(const config::state_config& s, const config::idempotency_config& k) {
    shared::key_view::limits l;
    l.max_entries = k.max_entries;
    l.max_bytes = k.max_bytes;
    l.ttl = k.ttl;
    l.claim_timeout = s.claim_timeout;
    return l;
}

const char* verdict_name(shared::key_view::verdict v) noexcept {
    using k = shared::key_view::verdict;
    switch (v) {
        case k::fresh: return "won";
        case k::in_flight: return "in_flight";
        case k::mismatch: return "mismatch";
        case k::replay: return "replayed";
        case k::evicted: return "evicted";
        case k::abandoned: return "abandoned";
        case k::lost: return "lost";
    }
    return "?";
}

// One claim's wait on the requesting session's executor: woken by the claim's delivery report
// (when the broker refused it) or by the reader having applied it, or by the deadline.
struct claim_wait {
    explicit claim_wait(asio::any_io_executor ex) : timer(std::move(ex)) {}
    asio::steady_timer timer;
    bool applied = false;
    std::string failed;  // the broker did not persist the claim
    bool done = false;   // the session stopped waiting
};

static_assert(static_cast<std::size_t>(shared::key_view::verdict::lost) == 6, "verdict_counters_ has one per verdict");

}  // namespace

shared_registry::shared_registry(const config::state_config& state, const config::idempotency_config& keys,
                                 std::shared_ptr<producer> kafka, std::shared_ptr<status_store> statuses,
                                 std::shared_ptr<metrics> stats, std::string replica)
    : cfg_(state),
      key_ttl_(keys.ttl),
      kafka_(std::move(kafka)),
      statuses_(std::move(statuses)),
      stats_(std::move(stats)),
      replica_(std::move(replica)),
      view_(view_limits(state, keys)),
      claim_latency_(&stats_->state_claim_latency()) {
    // Resolved once: a claim takes no metrics lock or lookup.
    using k = shared::key_view::verdict;
    for (auto v : {k::fresh, k::in_flight, k::mismatch, k::replay, k::evicted, k::abandoned, k::lost}) {
        verdict_counters_[static_cast<std::size_t>(v)] = &stats_->state_claim(verdict_name(v));
    }
    full_counter_ = &stats_->state_claim("full");
    unavailable_counter_ = &stats_->state_claim("unavailable");
}

asio::awaitable<shared_registry::claim_result> shared_registry::claim(std::string scope, std::string key,
                                                                      request_fingerprint fp, std::string request_id,
                                                                      std::string correlation_id) {
    const auto started = std::chrono::steady_clock::now();
    const auto ex = co_await asio::this_coro::executor;
    claim_result out;
    const auto decided = [&](const shared::key_view::answer& a) {
        out.result = claim_result::kind::decided;
        out.answer = a;
        verdict_counters_[static_cast<std::size_t>(a.kind)]->Increment();
        claim_latency_->observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
    };
    // A claim loses only to an entry; when that entry is gone by the time ours is read back (its
    // request released it), the key is free again: claim once more, a bounded number of times.
    for (int attempt = 0; attempt < 3; ++attempt) {
        if (!reading()) {
            out.result = claim_result::kind::unavailable;
            out.reason = "the state topic '" + cfg_.topic +
                         "' is not being read (it is missing, or read again from its beginning after it was replaced)";
            unavailable_counter_->Increment();
            co_return out;
        }
        if (auto a = view_.peek(scope, key, fp, shared::clock::now())) {
            decided(*a);
            co_return out;
        }
        if (view_.full()) {
            out.result = claim_result::kind::full;
            full_counter_->Increment();
            co_return out;
        }
        shared::record r;
        r.kind = shared::record_kind::claim;
        r.request_id = request_id;
        r.scope = scope;
        r.key = key;
        r.fp = fp;
        r.correlation_id = correlation_id;
        r.owner = replica_;
        auto rec = to_kafka(r);
        auto wait = std::make_shared<claim_wait>(ex);
        wait->timer.expires_after(cfg_.claim_wait);
        const std::weak_ptr<shared_registry> self = weak_from_this();
        const auto err = kafka_->produce(rec, [wait, self](const delivery_report& d) {
            const auto wake = [wait](std::string failed) {
                asio::post(wait->timer.get_executor(), [wait, failed = std::move(failed)] {
                    if (wait->done) return;
                    if (failed.empty()) {
                        wait->applied = true;
                    } else {
                        wait->failed = failed;
                    }
                    wait->timer.cancel();
                });
            };
            if (d.status != delivery_status::persisted) {
                wake(d.error.empty() ? std::string("not persisted") : d.error);
                return;
            }
            if (auto s = self.lock()) {
                s->when_applied(d.partition, d.offset, [wake](bool applied) {
                    // Revoked before it was read: the log it was written to is gone.
                    wake(applied ? std::string()
                                 : std::string("the state topic was replaced before the claim was read"));
                });
            }
        });
        if (err != produce_error::ok) {
            out.result = claim_result::kind::unavailable;
            out.reason = std::string("the claim was refused before it was produced: ") + to_string(err);
            unavailable_counter_->Increment();
            co_return out;
        }
        co_await wait->timer.async_wait(asio::as_tuple(asio::use_awaitable));
        wait->done = true;
        if (!wait->applied) {
            // Not read back in time, or not persisted. A claim that may be in the log would hold the
            // key for nothing: release it (a release only touches an entry this request won).
            write_release(request_id, scope, key);
            out.result = claim_result::kind::unavailable;
            out.reason = wait->failed.empty()
                             ? "the claim was not read back from the state topic within state.claim_wait"
                             : "the broker did not persist the claim (" + wait->failed + ")";
            unavailable_counter_->Increment();
            co_return out;
        }
        const auto a = view_.decide(scope, key, fp, request_id, shared::clock::now());
        if (a.kind == shared::key_view::verdict::lost) {
            verdict_counters_[static_cast<std::size_t>(shared::key_view::verdict::lost)]->Increment();
            continue;
        }
        if (a.kind == shared::key_view::verdict::fresh) remember(request_id, scope, key);
        decided(a);
        co_return out;
    }
    out.result = claim_result::kind::unavailable;
    out.reason = "the key was taken and freed again three times while this request claimed it";
    unavailable_counter_->Increment();
    co_return out;
}

void shared_registry::complete(const std::string& request_id, stored_response response, bool final) {
    auto own = forget(request_id, final);
    if (!own) return;  // not a request this process claimed (or its entry expired)
    shared::record r;
    r.kind = shared::record_kind::complete;
    r.request_id = request_id;
    r.scope = std::move(own->scope);
    r.key = std::move(own->key);
    r.response = std::make_shared<const stored_response>(std::move(response));
    r.final = final;
    r.owner = replica_;
    write(r, "complete");
}

void shared_registry::release(const std::string& request_id) {
    if (auto own = forget(request_id, /*final=*/true)) write_release(request_id, own->scope, own->key);
}

void shared_registry::write_release(const std::string& request_id, const std::string& scope, const std::string& key) {
    shared::record r;
    r.kind = shared::record_kind::release;
    r.request_id = request_id;
    r.scope = scope;
    r.key = key;
    r.owner = replica_;
    write(r, "release");
}

void shared_registry::sweep(shared::clock::time_point now) {
    for (const auto& e : view_.expire(now)) {
        if (e.owner == replica_) write_tombstone(e);
    }
}

void shared_registry::write_tombstone(const shared::key_view::expired& e) {
    kafka_record rec;
    rec.topic = cfg_.topic;
    rec.key = e.record_key;
    rec.tombstone = true;
    rec.headers.push_back({std::string(shared::expired_header), e.request_id});
    rec.correlation_id = e.request_id;
    // Not written: the key's records leave with the retention instead.
    if (produce(std::move(rec), "tombstone", e.request_id)) stats_->state_tombstones().Increment();
}

kafka_record shared_registry::to_kafka(const shared::record& r) const {
    kafka_record rec;
    rec.topic = cfg_.topic;
    rec.key = shared::record_key(r);
    rec.value = shared::encode(r);
    rec.correlation_id = r.correlation_id.empty() ? r.request_id : r.correlation_id;
    return rec;
}

void shared_registry::publish_status(const std::string& request_id, const request_status& status) {
    shared::record r;
    r.kind = shared::record_kind::status;
    r.request_id = request_id;
    r.status = status;
    r.owner = replica_;
    write(r, "status");
}

void shared_registry::write(const shared::record& r, const char* kind) { produce(to_kafka(r), kind, r.request_id); }

bool shared_registry::produce(kafka_record rec, const char* kind, const std::string& request_id) {
    if (!reading()) {
        // Produced now, the record would wait for a topic that is missing (or recreate it with the
        // broker's defaults, where the broker creates topics on first use); and the log it belongs
        // to is gone.
        stats_->state_write_failed(kind).Increment();
        if (unwritten_logged_.fetch_add(1) < 10) {
            log::warn("state record not written: the state topic is not being read",
                      {{"kind", kind}, {"request_id", request_id}, {"topic", cfg_.topic}});
        }
        return false;
    }
    const auto stats = stats_;
    const auto err = kafka_->produce(rec, [stats, kind, id = request_id](const delivery_report& d) {
        if (d.status == delivery_status::persisted) return;
        stats->state_write_failed(kind).Increment();
        log::warn("state record not persisted", {{"kind", kind}, {"request_id", id}, {"error", d.error}});
    });
    if (err != produce_error::ok) {
        stats_->state_write_failed(kind).Increment();
        log::warn("state record refused before produce",
                  {{"kind", kind}, {"request_id", request_id}, {"error", to_string(err)}});
        return false;
    }
    return true;
}

void shared_registry::remember(const std::string& request_id, const std::string& scope, const std::string& key) {
    const auto now = std::chrono::steady_clock::now();
    std::lock_guard lock(own_mutex_);
    // Entries whose key expired are dropped: a completion after that has nothing to complete.
    while (!own_order_.empty() && own_order_.front().first <= now) {
        const auto it = own_.find(own_order_.front().second);
        if (it != own_.end() && it->second.expires <= now) own_.erase(it);
        own_order_.pop_front();
    }
    const auto expires = now + key_ttl_;
    own_.insert_or_assign(request_id, own_request{scope, key, expires});
    own_order_.emplace_back(expires, request_id);
}

std::optional<shared_registry::own_request> shared_registry::forget(const std::string& request_id, bool final) {
    std::lock_guard lock(own_mutex_);
    const auto it = own_.find(request_id);
    if (it == own_.end()) return std::nullopt;
    auto out = it->second;
    if (final) own_.erase(it);
    return out;
}

void shared_registry::when_applied(std::int32_t partition, std::int64_t offset, std::function<void(bool)> fn) {
    bool applied = false;
    {
        std::lock_guard lock(applied_mutex_);
        const auto it = applied_.find(partition);
        if (assigned_.contains(partition) && (it == applied_.end() || it->second < offset)) {
            waiters_[partition].emplace(offset, std::move(fn));
            return;
        }
        applied = assigned_.contains(partition);
    }
    fn(applied);
}

void shared_registry::on_assigned(const std::vector<topic_partition>& parts) {
    std::lock_guard lock(applied_mutex_);
    for (const auto& tp : parts) {
        if (tp.topic == cfg_.topic) assigned_.insert(tp.partition);
    }
    reading_.store(!assigned_.empty(), std::memory_order_release);
}

void shared_registry::on_revoked(const std::vector<topic_partition>& parts, bool lost) {
    std::vector<std::function<void(bool)>> failed;
    bool none_left = false;
    {
        std::lock_guard lock(applied_mutex_);
        for (const auto& tp : parts) {
            if (tp.topic != cfg_.topic) continue;
            assigned_.erase(tp.partition);
            applied_.erase(tp.partition);
            if (auto w = waiters_.find(tp.partition); w != waiters_.end()) {
                for (auto& [offset, fn] : w->second) failed.push_back(std::move(fn));
                waiters_.erase(w);
            }
        }
        none_left = assigned_.empty();
        reading_.store(!none_left, std::memory_order_release);
    }
    if (none_left) {
        // Keys and their partitions are not tracked apart: the topic is read again from its
        // beginning (and this happens only when the whole topic is gone or replaced).
        const auto dropped = view_.size();
        view_.clear();
        log::warn("state view cleared: the state topic is read again from its beginning",
                  {{"topic", cfg_.topic}, {"entries_dropped", dropped}, {"lost", lost}});
    }
    for (auto& fn : failed) fn(false);
}

void shared_registry::on_record(consumed_record c) {
    const auto key = c.key.value_or(std::string());
    const auto written = c.timestamp_ms >= 0 ? shared::clock::time_point(std::chrono::milliseconds(c.timestamp_ms))
                                             : shared::clock::now();
    if (c.null_value) {
        // A tombstone (only Idempotency-Key entries are kept in the view): an expiry tombstone names
        // the request whose entry it ends; an operator's names none.
        std::string_view ends;
        for (const auto& h : c.headers) {
            if (h.name == shared::expired_header) ends = h.value;
        }
        view_.forget(key, ends);
    } else {
        auto d = shared::decode(key, c.value, written);
        if (!d.rec) {
            stats_->state_records_skipped().Increment();
            // The first few are logged; a topic full of foreign records would flood the log.
            if (skipped_logged_.fetch_add(1) < 10) {
                log::warn("state record skipped",
                          {{"partition", c.partition}, {"offset", c.offset}, {"reason", d.error}});
            }
        } else if (d.rec->kind == shared::record_kind::status) {
            // This process's own statuses are in its store already, and may be newer there.
            if (d.rec->owner != replica_) statuses_->put_remote(d.rec->request_id, std::move(d.rec->status), written);
        } else {
            view_.apply(*d.rec);
        }
    }
    sweep(shared::clock::now());
    std::vector<std::function<void(bool)>> ready;
    {
        std::lock_guard lock(applied_mutex_);
        auto& applied = applied_[c.partition];
        applied = std::max(applied, c.offset);
        auto w = waiters_.find(c.partition);
        if (w != waiters_.end()) {
            auto& m = w->second;
            const auto end = m.upper_bound(applied);
            for (auto it = m.begin(); it != end; ++it) ready.push_back(std::move(it->second));
            m.erase(m.begin(), end);
        }
    }
    for (auto& fn : ready) fn(true);
}

}  // namespace handoff::proxy
