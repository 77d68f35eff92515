// An upstream service (the port proxy::upstream_client) whose answers a script decides, and which
// remembers every request it got. The default script echoes: 200, "<method> <target> <body>",
// with a hop-by-hop header the proxy must drop (`X-Drop-Me`, named by Connection).
//
// Thread-safe for one writer (the io_context thread running `send`) and readers on the test
// thread; `calls` itself may be read directly only when the test runs the io_context itself.
#pragma once

#include "handoff/common/http_rules.hpp"
#include "handoff/ports/upstream.hpp"

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include <algorithm>
#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace handoff::test {

namespace http = boost::beast::http;

struct upstream_call {
    std::string target;
    std::string body;
    http::request<http::string_body> request;
    std::chrono::steady_clock::time_point at;
};

// One scripted answer: the result, after `delay` (a timer on the caller's executor).
struct scripted_reply {
    std::chrono::milliseconds delay{0};
    proxy::upstream_result result;
};

inline scripted_reply status(int code, std::vector<std::pair<std::string, std::string>> headers = {},
                             std::string body = "") {
    scripted_reply r;
    r.result.response.result(code);
    for (auto& [k, v] : headers) r.result.response.set(k, v);
    r.result.response.body() = std::move(body);
    return r;
}

inline scripted_reply failure(proxy::upstream_error e) {
    scripted_reply r;
    r.result.error = e;
    return r;
}

inline scripted_reply echo(const http::request<http::string_body>& req) {
    scripted_reply r;
    auto& res = r.result.response;
    res = http::response<http::string_body>{http::status::ok, 11};
    res.set("X-Upstream", "yes");
    res.set(http::field::connection, "keep-alive, X-Drop-Me");
    res.set("X-Drop-Me", "1");
    res.body() = std::string(req.method_string()) + " " + std::string(req.target()) + " " + req.body();
    res.prepare_payload();
    return r;
}

class fake_upstream final : public proxy::upstream_client {
public:
    // `nth_for_body`: 1 for the first request with this body, 2 for its first retry, ...
    using script_fn = std::function<scripted_reply(const http::request<http::string_body>&, int nth_for_body)>;
    script_fn script = [](const http::request<http::string_body>& req, int) { return echo(req); };

    std::vector<upstream_call> calls;
    int active = 0, max_active = 0;

    boost::asio::awaitable<proxy::upstream_result> send(http::request<http::string_body> req, std::chrono::milliseconds,
                                                        proxy::response_fields form) override {
        scripted_reply r;
        {
            std::lock_guard lock(m_);
            calls.push_back({std::string(req.target()), req.body(), req, std::chrono::steady_clock::now()});
            r = script(req, ++per_body_[req.body()]);
            max_active = std::max(max_active, ++active);
        }
        if (r.delay.count() > 0) {
            boost::asio::steady_timer t(co_await boost::asio::this_coro::executor, r.delay);
            co_await t.async_wait(boost::asio::use_awaitable);
        }
        {
            std::lock_guard lock(m_);
            --active;
        }
        if (form == proxy::response_fields::forwarded && r.result.error == proxy::upstream_error::ok) {
            // As the real client returns it: the fields serialized, the response without them.
            proxy::end_to_end_fields fields;
            for (const auto& f : r.result.response) fields.add(f.name(), f.name_string(), f.value());
            if (auto it = r.result.response.find(http::field::content_length); it != r.result.response.end())
                r.result.content_length = std::stoull(std::string(it->value()));
            r.result.fields = fields.take();
            r.result.response.clear();
        }
        co_return r.result;
    }

    // The serialized form is parsed back (as the service would) and answered by the same script.
    boost::asio::awaitable<proxy::upstream_result> send(proxy::serialized_request req,
                                                        std::chrono::milliseconds timeout,
                                                        proxy::response_fields form) override {
        http::request_parser<http::string_body> p;
        p.eager(true);
        boost::system::error_code ec;
        const std::string wire = req.head + req.body;
        p.put(boost::asio::buffer(wire), ec);
        if (ec || !p.is_done()) {
            proxy::upstream_result bad;
            bad.error = proxy::upstream_error::bad_response;  // the sidecar sent what no service could parse
            co_return bad;
        }
        co_return co_await send(p.release(), timeout, form);
    }

    std::size_t count() const {
        std::lock_guard lock(m_);
        return calls.size();
    }
    int count(const std::string& body) const {
        std::lock_guard lock(m_);
        return static_cast<int>(
            std::count_if(calls.begin(), calls.end(), [&](const upstream_call& c) { return c.body == body; }));
    }
    http::request<http::string_body> request(std::size_t i) const {
        std::lock_guard lock(m_);
        return calls.at(i).request;
    }
    std::vector<std::string> bodies() const {
        std::lock_guard lock(m_);
        std::vector<std::string> out;
        for (const auto& c : calls) out.push_back(c.body);
        return out;
    }

private:
    mutable std::mutex m_;
    std::map<std::string, int> per_body_;
};

}  // namespace handoff::test
