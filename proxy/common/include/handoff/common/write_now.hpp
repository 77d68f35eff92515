// A write made on the spot: what a socket in non-blocking mode takes right now, with no
// asynchronous operation. A response or a forwarded request usually fits the socket's send buffer
// whole, and then the write needs no reactor operation, no deadline and no suspension of the
// coroutine; an asynchronous write is only needed for what is left.
#pragma once

#include <boost/asio/buffer.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <algorithm>
#include <array>
#include <cstddef>

namespace handoff::proxy {

// Writes what `socket` takes now of `bufs` (one sendmsg) and advances `bufs` past it. The socket
// must be in non-blocking mode (`non_blocking(true)`): a full send buffer is not an error, it
// leaves bytes to write. Returns the bytes still to write; `ec` is set on any other error.
inline std::size_t write_now(boost::asio::ip::tcp::socket& socket, std::array<boost::asio::const_buffer, 2>& bufs,
                             boost::system::error_code& ec) {
    std::size_t written = socket.write_some(bufs, ec);
    if (ec == boost::asio::error::would_block || ec == boost::asio::error::try_again) {
        ec = {};
        written = 0;
    }
    for (auto& b : bufs) {
        const auto k = std::min(written, b.size());
        b += k;
        written -= k;
    }
    return bufs[0].size() + bufs[1].size();
}

}  // namespace handoff::proxy
