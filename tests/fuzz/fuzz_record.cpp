// libFuzzer target: building the Kafka record (CloudEvents binary mode) from an arbitrary request
// (tests/CATALOGUE.md, L-9, B-17). Input layout: 1 byte selects the route's key source, then the
// parts "method\npath\nquery\nName: value\n...\n\nbody". Invariants: a record, or an error with a
// message; a record's value is the body byte for byte; only allow-listed headers are copied.
#include "handoff/config/kafka_rules.hpp"
#include "handoff/proxy/modes/record.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

using namespace handoff;
namespace http = boost::beast::http;

namespace {

std::string_view next_line(std::string_view& in) {
    const auto nl = in.find('\n');
    const auto line = in.substr(0, nl);
    in.remove_prefix(nl == std::string_view::npos ? in.size() : nl + 1);
    return line;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* bytes, std::size_t size) {
    if (size == 0) return 0;
    const unsigned sel = bytes[0];
    std::string_view in(reinterpret_cast<const char*>(bytes) + 1, size - 1);

    config::route route;
    route.name = "fuzz";
    route.mode = (sel & 0x10) ? config::mode::commit : config::mode::event;
    route.topic = (sel & 0x20) ? "orders.{region}" : "fuzz.events";
    route.headers = {"X-Tenant", "traceparent"};
    if (sel & 0x40) route.headers.push_back("Authorization");
    switch (sel % 5) {
        case 0: route.key = {config::key_kind::none, {}}; break;
        case 1: route.key = {config::key_kind::path, "region"}; break;
        case 2: route.key = {config::key_kind::header, "X-Key"}; break;
        case 3: route.key = {config::key_kind::body, (sel & 0x80) ? "/customer/id" : "/a/0/b"}; break;
        default: route.key = {config::key_kind::correlation, {}}; break;
    }
    config::defaults_config defaults;

    const auto method = next_line(in);
    const auto path = next_line(in);
    const auto query = next_line(in);
    http::fields headers;
    for (;;) {
        const auto line = next_line(in);
        if (line.empty()) break;
        const auto colon = line.find(':');
        if (colon == std::string_view::npos || colon == 0) continue;
        try {
            headers.insert(line.substr(0, colon), line.substr(colon + 1));
        } catch (const std::exception&) {
            // Beast refuses some names/values; the server never hands those over.
        }
    }
    std::string body(in);
    const std::string original = body;
    proxy::path_params params{{"region", std::string(path.substr(0, std::min<std::size_t>(path.size(), 40)))}};
    const proxy::request_view view{method, path, query, headers};
    auto r = proxy::build_record(route, defaults, view, body, params, proxy::request_ids{"rid-fuzz", "cid-fuzz"},
                                 std::chrono::system_clock::time_point{std::chrono::milliseconds{1'700'000'000'000}});
    if (r.record) {
        if (r.record->value != original) std::abort();
        for (const auto& h : r.record->headers) {
            if (h.name == "authorization" && !(sel & 0x40)) std::abort();
        }
        if (!handoff::config::valid_topic_name(r.record->topic)) std::abort();
    } else if (r.message.empty()) {
        std::abort();
    }
    return 0;
}
