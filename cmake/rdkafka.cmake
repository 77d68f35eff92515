# Finds librdkafka >= 2.3 (older ones, such as Debian 12's 2.0.2, have idempotent-producer bugs).
# Prefers the pinned build that scripts/setup.sh leaves in ${HANDOFF_CACHE}; accepts a system
# librdkafka only when it is new enough. Defines the imported target handoff::rdkafka.
set(HANDOFF_RDKAFKA_MIN_VERSION 2.3.0)
file(GLOB _handoff_rdkafka_prefixes "${HANDOFF_CACHE}/librdkafka-*")
list(SORT _handoff_rdkafka_prefixes COMPARE NATURAL ORDER DESCENDING)
foreach(_prefix IN LISTS _handoff_rdkafka_prefixes)
  list(APPEND CMAKE_PREFIX_PATH "${_prefix}")
endforeach()
find_package(PkgConfig REQUIRED)
pkg_check_modules(RDKAFKA REQUIRED IMPORTED_TARGET "rdkafka>=${HANDOFF_RDKAFKA_MIN_VERSION}")
message(STATUS "librdkafka ${RDKAFKA_VERSION} from ${RDKAFKA_LIBDIR}")
add_library(handoff::rdkafka ALIAS PkgConfig::RDKAFKA)
# The pinned build lives outside the system library path: find it at run time without LD_LIBRARY_PATH.
set(CMAKE_BUILD_RPATH "${RDKAFKA_LIBDIR}")
set(CMAKE_INSTALL_RPATH "${RDKAFKA_LIBDIR}")
