// Two connected TCP sockets over loopback, for the tests of reads and writes made directly on a
// socket (write_now_test.cpp, drain_aware_read_test.cpp).
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

namespace handoff::test {

struct loopback_pair {
    boost::asio::io_context ioc{1};
    boost::asio::ip::tcp::socket writer{ioc};
    boost::asio::ip::tcp::socket reader{ioc};
    loopback_pair() {
        boost::asio::ip::tcp::acceptor acceptor(ioc, {boost::asio::ip::make_address("127.0.0.1"), 0});
        writer.connect(acceptor.local_endpoint());
        acceptor.accept(reader);
    }
};

}  // namespace handoff::test
