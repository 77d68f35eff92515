// What the config loader tests share: every error of a load, formatted, and a check that a load
// succeeded (printing every error when it did not).
#pragma once

#include "handoff/config/load.hpp"

#include <doctest/doctest.h>

#include <string>

namespace handoff::config::testing {

inline std::string all(const load_result& r) {
    std::string out;
    for (const auto& e : r.errors) out += format(e) + "\n";
    return out;
}

}  // namespace handoff::config::testing

#define REQUIRE_OK(r)                             \
    do {                                          \
        INFO(::handoff::config::testing::all(r)); \
        REQUIRE((r).errors.empty());              \
        REQUIRE((r).value.has_value());           \
    } while (0)
