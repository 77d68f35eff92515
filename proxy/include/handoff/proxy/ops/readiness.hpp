// /readyz: the process is ready when it is not draining, the producer has a producer ID from
// the cluster, with state.shared the state topic has been read up to its end offsets at start,
// and, with replies.topic set, the reply consumer has read its topic's end offsets and the server
// holds the assignment. The reason for "not ready" is the first that applies.
#pragma once

#include "handoff/ports/consumer.hpp"
#include "handoff/ports/producer.hpp"

#include <memory>
#include <string>

namespace handoff::proxy {

class server;

class readiness {
public:
    readiness(const server& front, std::shared_ptr<const producer> kafka, bool replies_configured);

    // Before the io_context runs: the reply consumer, created after the admin listener.
    void set_reply_consumer(std::shared_ptr<const consumer> replies) { replies_ = std::move(replies); }
    // state.shared: the state consumer, ready once it has read the state topic up to its end
    // offsets at start (this replica then decides claims as the others do).
    void set_state_consumer(std::shared_ptr<const consumer> state) { state_ = std::move(state); }

    // Any io thread. False, with the reason, while not ready.
    bool check(std::string& reason) const;

private:
    const server& server_;
    std::shared_ptr<const producer> kafka_;
    std::shared_ptr<const consumer> replies_;
    std::shared_ptr<const consumer> state_;
    bool replies_configured_;
};

}  // namespace handoff::proxy
