#include "handoff/proxy/delivery/replies.hpp"

#include "handoff/proxy/http/errors.hpp"
#include "handoff/common/http_rules.hpp"
#include "handoff/common/log.hpp"

#include <charconv>

namespace handoff::proxy {

namespace {

constexpr std::string_view header_prefix = "handoff_reply_header_";

bool framing_or_hop(std::string_view name) noexcept {
    return is_hop_by_hop(name) || iequals(name, "content-length") || iequals(name, "transfer-encoding") ||
           iequals(name, "trailer") || iequals(name, "x-correlation-id");
}

}  // namespace

std::optional<reply_record> parse_reply(const consumed_record& r, std::string& why) {
    reply_record out;
    const std::string* status = nullptr;
    for (const auto& h : r.headers) {
        if (h.name == "handoff_request_id") {
            out.request_id = h.value;
        } else if (h.name == "handoff_reply_status") {
            status = &h.value;
        } else if (h.name == "content-type") {
            if (safe_header_value(h.value)) out.response.headers.emplace_back("Content-Type", h.value);
        } else if (h.name.starts_with(header_prefix)) {
            const std::string_view name = std::string_view(h.name).substr(header_prefix.size());
            if (is_token(name) && !framing_or_hop(name) && !iequals(name, "content-type") &&
                safe_header_value(h.value)) {
                out.response.headers.emplace_back(std::string(name), h.value);
            }
        }
    }
    if (out.request_id.empty()) {
        why = "no handoff_request_id header";
        return std::nullopt;
    }
    unsigned code = 0;
    if (!status || status->size() != 3 ||
        std::from_chars(status->data(), status->data() + status->size(), code).ec != std::errc{} || code < 200 ||
        code > 599) {
        why = "handoff_reply_status is missing or not a final HTTP status (200-599)";
        return std::nullopt;
    }
    out.response.status = code;
    out.response.body = r.value;
    return out;
}

void reply_registry::add(const std::string& id, waiter w) {
    std::lock_guard lock(mutex_);
    waiters_[id] = std::move(w);
}

void reply_registry::remove(const std::string& id) {
    std::lock_guard lock(mutex_);
    waiters_.erase(id);
}

bool reply_registry::deliver(const std::string& id, const std::shared_ptr<const stored_response>& response) {
    waiter w;
    {
        std::lock_guard lock(mutex_);
        const auto it = waiters_.find(id);
        if (it == waiters_.end()) return false;
        w = std::move(it->second);
        waiters_.erase(it);
    }
    w(response);
    return true;
}

std::size_t reply_registry::size() const {
    std::lock_guard lock(mutex_);
    return waiters_.size();
}

reply_dispatcher::reply_dispatcher(std::shared_ptr<reply_registry> registry, std::shared_ptr<status_store> statuses,
                                   std::shared_ptr<key_settlement> keys, std::shared_ptr<metrics> stats)
    : registry_(std::move(registry)),
      statuses_(std::move(statuses)),
      keys_(std::move(keys)),
      stats_(std::move(stats)) {}

void reply_dispatcher::on_assigned(const std::vector<topic_partition>& partitions) {
    log::info("reply topic assigned", {{"partitions", partitions.size()}});
    assigned_.store(true);
}

void reply_dispatcher::on_revoked(const std::vector<topic_partition>&, bool lost) {
    log::warn("reply topic revoked", {{"lost", lost}});
    assigned_.store(false);
}

void reply_dispatcher::on_record(consumed_record record) {
    std::string why;
    auto reply = parse_reply(record, why);
    const auto count = [this](const char* outcome) { stats_->reply_record(outcome).Increment(); };
    if (!reply) {
        count("invalid");
        log::warn(
            "reply record ignored",
            {{"topic", record.topic}, {"partition", record.partition}, {"offset", record.offset}, {"reason", why}});
        // A request waiting for it gets 502 bad_reply at once rather than its route timeout. Its
        // Idempotency-Key is not settled for good: a usable reply that comes later replaces it.
        const std::string* id = nullptr;
        for (const auto& h : record.headers) {
            if (h.name == "handoff_request_id") id = &h.value;
        }
        if (id != nullptr && !id->empty()) {
            auto bad = std::make_shared<stored_response>();
            bad->status = describe(error::bad_reply).status;
            bad->headers.emplace_back("Content-Type", "application/json");
            bad->body = error_body(error::bad_reply, "the reply record is not a usable HTTP response: " + why, {}, *id);
            const std::shared_ptr<const stored_response> answer = std::move(bad);
            if (registry_->deliver(*id, answer)) {
                keys_->complete(*id, *answer, /*final=*/false);
                count("bad_reply");
            }
        }
        return;
    }
    auto response = std::make_shared<const stored_response>(std::move(reply->response));
    const bool waited = registry_->deliver(reply->request_id, response);
    const bool known = statuses_->put_reply(reply->request_id, response);
    keys_->complete(reply->request_id, *response, /*final=*/true);
    count(waited ? "completed" : known ? "late" : "unknown");
    if (!waited && known) {
        log::info("late reply recorded", {{"request_id", reply->request_id}, {"status", response->status}});
    }
}

}  // namespace handoff::proxy
