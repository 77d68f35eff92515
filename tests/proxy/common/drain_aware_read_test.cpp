// drain_aware reads over a real loopback TCP connection.
//
// The system calls are counted: this executable defines recv(2) itself (the definition in the
// executable is the one Asio's socket_ops::recv1 calls), counts it and makes the system call. So
// the test can see that a read started after a short read makes no recv that finds nothing, and
// that a read after a full one still tries at once. The rest checks that nothing is lost or
// stuck: bytes that arrive after a short read (before or after the next read starts), end of
// stream, and a megabyte in random pieces read into random buffer sizes, against the same test
// with Asio's own buffers.
#include "handoff/common/drain_aware_read.hpp"

#include "loopback_pair.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <doctest/doctest.h>

#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <optional>
#include <random>
#include <string>
#include <thread>

namespace {
std::atomic<int> recv_calls{0};
}

extern "C" ssize_t recv(int fd, void* buf, size_t n, int flags) {
    recv_calls.fetch_add(1);
    return ::syscall(SYS_recvfrom, fd, buf, n, flags, nullptr, nullptr);
}

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using handoff::proxy::drain_aware;

namespace {

// Asio's epoll reactor, where the specialized operation is used (not the io_uring backend).
#if defined(BOOST_ASIO_HAS_EPOLL) && !defined(BOOST_ASIO_HAS_IO_URING_AS_DEFAULT)
constexpr bool epoll_reactor = true;
#else
constexpr bool epoll_reactor = false;
#endif

struct connected_pair : handoff::test::loopback_pair {
    connected_pair() { writer.set_option(tcp::no_delay(true)); }
    void send(const std::string& s) { asio::write(writer, asio::buffer(s)); }
};

struct read_result {
    boost::system::error_code ec;
    std::size_t n = 0;
};

// Starts a drain_aware read into `buf` (or an ordinary one); the result once it completes.
template <bool DrainAware>
void start_read(tcp::socket& s, std::string& buf, std::optional<read_result>& out) {
    out.reset();
    auto done = [&out](boost::system::error_code ec, std::size_t n) { out = read_result{ec, n}; };
    if constexpr (DrainAware) {
        s.async_read_some(drain_aware(asio::buffer(buf)), done);
    } else {
        s.async_read_some(asio::buffer(buf), done);
    }
}

// Runs the io_context until `out` is set, for at most 10 s.
void run_until(asio::io_context& ioc, const std::optional<read_result>& out) {
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!out && std::chrono::steady_clock::now() < give_up) {
        ioc.restart();
        ioc.run_one_for(std::chrono::milliseconds(100));
    }
}

// Writes `total` bytes in random pieces from another thread, then closes, while reading them with
// random buffer sizes the way the upstream client reads an answer: the first read asynchronous,
// each later one tried at once (read_now) and asynchronous only when the socket is empty. True
// when every byte arrived once, in order, and then the end of stream.
template <bool DrainAware>
bool random_pieces(std::size_t total, unsigned seed) {
    connected_pair p;
    std::string sent(total, '\0');
    std::mt19937 rng(seed);
    for (auto& c : sent) c = static_cast<char>('a' + rng() % 26);
    std::thread writer([&] {
        std::mt19937 wrng(seed + 1);
        std::size_t at = 0;
        while (at < total) {
            const std::size_t k = std::min<std::size_t>(total - at, 1 + wrng() % 3000);
            asio::write(p.writer, asio::buffer(sent.data() + at, k));
            at += k;
            if (wrng() % 4 == 0) std::this_thread::yield();
        }
        p.writer.shutdown(tcp::socket::shutdown_send);
    });
    p.reader.non_blocking(true);
    std::string got;
    std::string buf;
    std::optional<read_result> r;
    for (bool first = true;; first = false) {
        buf.assign(1 + rng() % 5000, '\0');
        r.reset();
        if (!first) {
            read_result now;
            now.n = handoff::proxy::read_now(p.reader, asio::buffer(buf), now.ec);
            if (now.ec != asio::error::would_block) r = now;
        }
        if (!r) {
            start_read<DrainAware>(p.reader, buf, r);
            run_until(p.ioc, r);
        }
        if (!r || r->ec) break;
        got.append(buf.data(), r->n);
    }
    writer.join();
    if (!(r && r->ec == asio::error::eof && got == sent)) {
        MESSAGE("r=" << (r ? r->ec.message() : std::string("pending")) << " got=" << got.size()
                     << " sent=" << sent.size() << " prefix_equal=" << (sent.compare(0, got.size(), got) == 0));
    }
    return r && r->ec == asio::error::eof && got == sent;
}

}  // namespace

TEST_CASE("drain_aware: a read after a short read waits for readiness, and makes one recv when bytes come") {
    connected_pair p;
    std::string buf(64, '\0');
    std::optional<read_result> r;
    p.send("abc");
    recv_calls = 0;
    start_read<true>(p.reader, buf, r);  // bytes are there: read at once
    run_until(p.ioc, r);
    REQUIRE(r);
    CHECK_FALSE(r->ec);
    CHECK(r->n == 3);
    CHECK(buf.substr(0, 3) == "abc");
    CHECK(recv_calls == 1);

    // Short (3 of 64): the socket is drained, so the next read makes no attempt before readiness.
    recv_calls = 0;
    start_read<true>(p.reader, buf, r);
    p.ioc.restart();
    p.ioc.poll();
    CHECK_FALSE(r);
    if (epoll_reactor) CHECK(recv_calls == 0);
    p.send("defg");
    run_until(p.ioc, r);
    REQUIRE(r);
    CHECK_FALSE(r->ec);
    CHECK(r->n == 4);
    CHECK(buf.substr(0, 4) == "defg");
    if (epoll_reactor) CHECK(recv_calls == 1);
}

TEST_CASE("drain_aware: Asio's own buffer tries a recv that finds nothing first (what drain_aware saves)") {
    connected_pair p;
    std::string buf(64, '\0');
    std::optional<read_result> r;
    p.send("abc");
    start_read<false>(p.reader, buf, r);
    run_until(p.ioc, r);
    REQUIRE(r);
    recv_calls = 0;
    start_read<false>(p.reader, buf, r);
    p.ioc.restart();
    p.ioc.poll();
    CHECK_FALSE(r);
    p.send("defg");
    run_until(p.ioc, r);
    REQUIRE(r);
    CHECK(r->n == 4);
    if (epoll_reactor) CHECK(recv_calls == 2);
}

TEST_CASE("drain_aware: a read that fills its buffer is not short, so the next read tries at once") {
    connected_pair p;
    std::string buf(8, '\0');
    std::optional<read_result> r;
    p.send("0123456789AB");
    start_read<true>(p.reader, buf, r);
    run_until(p.ioc, r);
    REQUIRE(r);
    // Loopback delivers the 12 bytes as one segment before the write returns: 8 fill the buffer.
    REQUIRE(r->n == 8);
    CHECK(buf == "01234567");
    recv_calls = 0;
    start_read<true>(p.reader, buf, r);
    p.ioc.restart();
    p.ioc.poll();  // no new readiness event: only the immediate attempt can complete it
    REQUIRE(r);
    CHECK(r->n == 4);
    CHECK(buf.substr(0, 4) == "89AB");
    if (epoll_reactor) CHECK(recv_calls == 1);
}

TEST_CASE("drain_aware: bytes that arrive between a short read and the next read are still read") {
    connected_pair p;
    std::string buf(64, '\0');
    std::optional<read_result> r;
    p.send("one");
    start_read<true>(p.reader, buf, r);
    run_until(p.ioc, r);
    REQUIRE(r);
    REQUIRE(r->n == 3);
    // The readiness event for "two" is raised before the read exists; the reactor keeps it.
    p.send("two");
    start_read<true>(p.reader, buf, r);
    run_until(p.ioc, r);
    REQUIRE(r);
    CHECK_FALSE(r->ec);
    CHECK(r->n == 3);
    CHECK(buf.substr(0, 3) == "two");
}

TEST_CASE("drain_aware: end of stream after a short read completes the waiting read") {
    connected_pair p;
    std::string buf(64, '\0');
    std::optional<read_result> r;
    p.send("last");
    start_read<true>(p.reader, buf, r);
    run_until(p.ioc, r);
    REQUIRE(r);
    REQUIRE(r->n == 4);
    start_read<true>(p.reader, buf, r);
    p.writer.shutdown(tcp::socket::shutdown_send);
    run_until(p.ioc, r);
    REQUIRE(r);
    CHECK(r->ec == asio::error::eof);
}

TEST_CASE("drain_aware: an end of stream that came with the bytes of a short read is seen by read_now") {
    connected_pair p;
    p.reader.non_blocking(true);
    std::string buf(64, '\0');
    std::optional<read_result> r;
    p.send("bye");
    p.writer.shutdown(tcp::socket::shutdown_send);
    start_read<true>(p.reader, buf, r);
    run_until(p.ioc, r);
    REQUIRE(r);
    CHECK_FALSE(r->ec);
    CHECK(r->n == 3);  // the bytes first; the end of stream raises no new readiness event after them
    boost::system::error_code ec;
    CHECK(handoff::proxy::read_now(p.reader, asio::buffer(buf), ec) == 0);
    CHECK(ec == asio::error::eof);
}

TEST_CASE("drain_aware: read_now on an empty open socket says would_block and reads nothing") {
    connected_pair p;
    p.reader.non_blocking(true);
    std::string buf(64, '\0');
    boost::system::error_code ec;
    recv_calls = 0;
    CHECK(handoff::proxy::read_now(p.reader, asio::buffer(buf), ec) == 0);
    CHECK(ec == asio::error::would_block);
    CHECK(recv_calls == 1);
    p.send("hi");
    CHECK(handoff::proxy::read_now(p.reader, asio::buffer(buf), ec) == 2);
    CHECK_FALSE(ec);
    CHECK(buf.substr(0, 2) == "hi");
}

TEST_CASE("drain_aware: a reset connection completes a waiting read with an error") {
    connected_pair p;
    std::string buf(64, '\0');
    std::optional<read_result> r;
    p.send("x");
    start_read<true>(p.reader, buf, r);
    run_until(p.ioc, r);
    REQUIRE(r);
    start_read<true>(p.reader, buf, r);
    p.ioc.restart();
    p.ioc.poll();
    REQUIRE_FALSE(r);
    p.writer.set_option(asio::socket_base::linger(true, 0));  // close sends a reset
    p.writer.close();
    run_until(p.ioc, r);
    REQUIRE(r);
    CHECK(r->ec == asio::error::connection_reset);
}

TEST_CASE("drain_aware: a megabyte in random pieces, read into random buffer sizes, arrives whole and in order") {
    for (unsigned seed = 1; seed <= 4; ++seed) {
        CAPTURE(seed);
        CHECK(random_pieces<true>(1 << 20, seed));
    }
    CHECK(random_pieces<false>(1 << 20, 9));  // the same test holds Asio's own buffers
}
