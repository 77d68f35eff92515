#include "handoff/proxy/ops/readiness.hpp"

#include "handoff/proxy/server/server.hpp"

namespace handoff::proxy {

readiness::readiness(const server& front, std::shared_ptr<const producer> kafka, bool replies_configured)
    : server_(front), kafka_(std::move(kafka)), replies_configured_(replies_configured) {}

bool readiness::check(std::string& reason) const {
    if (server_.draining()) {
        reason = "draining";
        return false;
    }
    if (auto why = kafka_->not_ready_reason(); !why.empty()) {
        reason = std::move(why);
        return false;
    }
    if (state_ && !state_->ready(reason)) return false;
    if (!replies_configured_) return true;
    if (!replies_) {
        reason = "the reply consumer is not started yet";
        return false;
    }
    if (!replies_->ready(reason)) return false;
    if (!server_.replies_ready()) {
        reason = "the reply topic is not assigned yet";
        return false;
    }
    return true;
}

}  // namespace handoff::proxy
