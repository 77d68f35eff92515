// write_now over a real loopback TCP connection: a write the socket takes whole, one it takes in
// part (a peer that does not read), the buffers advanced exactly past what was written, and an
// error from a reset connection.
#include "handoff/common/write_now.hpp"

#include "loopback_pair.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <doctest/doctest.h>

#include <array>
#include <string>
#include <thread>

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using handoff::proxy::write_now;

namespace {

// The writer in non-blocking mode, as write_now needs.
struct connected_pair : handoff::test::loopback_pair {
    connected_pair() { writer.non_blocking(true); }
};

std::array<asio::const_buffer, 2> buffers(const std::string& head, const std::string& body) {
    return {asio::buffer(head), asio::buffer(body)};
}

}  // namespace

TEST_CASE("write_now: a write the socket takes whole leaves nothing, and the peer reads head then body") {
    connected_pair p;
    const std::string head = "HTTP/1.1 202 Accepted\r\nContent-Length: 4\r\n\r\n", body = "abcd";
    auto bufs = buffers(head, body);
    boost::system::error_code ec;
    CHECK(write_now(p.writer, bufs, ec) == 0);
    CHECK_FALSE(ec);
    CHECK(bufs[0].size() + bufs[1].size() == 0);
    std::string got(head.size() + body.size(), '\0');
    asio::read(p.reader, asio::buffer(got));
    CHECK(got == head + body);
}

TEST_CASE("write_now: a peer that does not read gets what fits, the rest is left in the buffers, byte-exact") {
    connected_pair p;
    p.writer.set_option(asio::socket_base::send_buffer_size(16 * 1024));
    const std::string head(100, 'h');
    std::string body(8 * 1024 * 1024, '\0');
    for (std::size_t i = 0; i < body.size(); ++i) body[i] = static_cast<char>('a' + i % 26);
    auto bufs = buffers(head, body);
    boost::system::error_code ec;
    const auto left = write_now(p.writer, bufs, ec);  // returns at once: the socket is non-blocking
    CHECK_FALSE(ec);
    REQUIRE(left > 0);
    REQUIRE(left < head.size() + body.size());
    CHECK(bufs[0].size() + bufs[1].size() == left);
    CHECK(bufs[0].size() == 0);  // the head (100 bytes) always fits
    // A second call on a full socket writes nothing and is not an error.
    const auto again = write_now(p.writer, bufs, ec);
    CHECK_FALSE(ec);
    CHECK(again <= left);
    // The rest, written while the peer reads: the peer sees every byte once, in order.
    p.writer.non_blocking(false);
    std::string got(head.size() + body.size(), '\0');
    std::thread rest([&] { asio::write(p.writer, bufs); });
    asio::read(p.reader, asio::buffer(got));
    rest.join();
    CHECK(got == head + body);
}

TEST_CASE("write_now: a reset connection is an error, not bytes left") {
    connected_pair p;
    p.reader.set_option(asio::socket_base::linger(true, 0));
    p.reader.close();  // RST
    const std::string head = "x", body(64 * 1024, 'y');
    boost::system::error_code ec;
    // The first write may still be taken before the reset arrives; one after it fails.
    for (int i = 0; i < 10 && !ec; ++i) {
        auto bufs = buffers(head, body);
        write_now(p.writer, bufs, ec);
    }
    CHECK(ec);
    CHECK(ec != asio::error::would_block);
}
