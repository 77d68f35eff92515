// libFuzzer target: loading a config from arbitrary YAML text (tests/CATALOGUE.md, L-9). Invariant:
// a value or at least one error, never both and never neither; no crash, no exception.
#include "handoff/config/load.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* bytes, std::size_t size) {
    const std::string_view yaml(reinterpret_cast<const char*>(bytes), size);
    // ${NAME} resolves only for FUZZ_SET, so both branches of the expansion are explored.
    auto env = [](const std::string& name) -> std::optional<std::string> {
        if (name == "FUZZ_SET") return std::string("value");
        return std::nullopt;
    };
    const auto r = handoff::config::load_string(yaml, "fuzz.yaml", env);
    if (r.value.has_value() == !r.errors.empty()) std::abort();
    for (const auto& e : r.errors) (void)handoff::config::format(e);
    return 0;
}
