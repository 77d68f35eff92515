// A read on a stream socket that tells Asio's epoll reactor when it drained the socket, so that
// the next read waits for the reactor's readiness event instead of trying a `recv` that finds
// nothing.
//
// Asio 1.81's epoll reactor starts every asynchronous read with a read attempt, unless it knows
// the socket is drained; it only learns that at end of stream. So the read of a service's answer,
// started right after its request is written, and a keep-alive connection's idle read, started
// right after its answer is written, each cost an empty `recv` (EAGAIN) before the reactor waits:
// two system calls of the seven that a forwarded request makes. A read on a stream socket that
// returned less than its buffer held did empty the socket's receive queue, and the epoll
// registration is edge-triggered: bytes that arrive afterwards raise a new event, which makes the
// reactor try again. So a short read can say "drained" as end of stream does, and that is what
// the read operation specialized below reports, for reads given a `drain_aware_buffer`.
//
// What a short read cannot know is an end of stream, or a reset, that arrived with the bytes it
// took: that readiness was already reported, and no new event follows. The drained state lasts
// until the socket's next event, for every read on the socket (Asio keeps it per descriptor), so
// a read after a drain_aware one that must see such an end tries the socket first (`read_now`, or
// a wait that re-arms the registration: the session's ready_to_read); nginx, in the same place,
// reads the pending close from EPOLLRDHUP, which Asio does not register.
//
// With the io_uring backend (BOOST_ASIO_HAS_IO_URING, BOOST_ASIO_DISABLE_EPOLL) the reactor's
// operation is not used, and a `drain_aware_buffer` is an ordinary one-buffer sequence.
#pragma once

#include <boost/asio/buffer.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/socket_base.hpp>  // before the operation's header, which needs it

#include <boost/asio/detail/reactive_socket_recv_op.hpp>
#include <boost/version.hpp>

#include <cstddef>

// The specialization below reproduces the base of Asio's reactive socket receive operation
// (boost/asio/detail/reactive_socket_recv_op.hpp), which is not a public interface: check it
// again when Boost changes.
static_assert(BOOST_VERSION / 100 == 1081, "drain_aware_read.hpp: re-check Asio's reactive_socket_recv_op_base");

namespace handoff::proxy {

// One buffer to read into (a MutableBufferSequence), for a read that reports a short read as a
// drained socket.
struct drain_aware_buffer {
    using value_type = boost::asio::mutable_buffer;
    using const_iterator = const boost::asio::mutable_buffer*;

    boost::asio::mutable_buffer buffer;

    const_iterator begin() const noexcept { return &buffer; }
    const_iterator end() const noexcept { return &buffer + 1; }
};

inline drain_aware_buffer drain_aware(boost::asio::mutable_buffer b) noexcept { return {b}; }

// One read made on the spot: what the socket (in non-blocking mode) holds now, into `b`. After a
// drain_aware read that came back short, an end of stream or a reset that arrived with the bytes
// it took raises no new readiness event, so an asynchronous read would wait for the deadline; a
// read that tries first sees it. `ec` is would_block when the socket is empty and open: only then
// is an asynchronous read to wait.
inline std::size_t read_now(boost::asio::ip::tcp::socket& socket, boost::asio::mutable_buffer b,
                            boost::system::error_code& ec) {
    const std::size_t n = socket.read_some(b, ec);
    if (ec == boost::asio::error::try_again) ec = boost::asio::error::would_block;
    return n;
}

}  // namespace handoff::proxy

namespace boost::asio::detail {

// The epoll reactor's receive operation for a drain_aware_buffer: one `recv` into the buffer,
// `done_and_exhausted` (the reactor stops trying the socket until its next readiness event) when
// a stream socket gave less than the buffer holds, an error or end of stream included.
template <>
class reactive_socket_recv_op_base<handoff::proxy::drain_aware_buffer> : public reactor_op {
public:
    reactive_socket_recv_op_base(const boost::system::error_code& success_ec, socket_type socket,
                                 socket_ops::state_type state, const handoff::proxy::drain_aware_buffer& buffers,
                                 socket_base::message_flags flags, func_type complete_func)
        : reactor_op(success_ec, &reactive_socket_recv_op_base::do_perform, complete_func),
          socket_(socket),
          state_(state),
          buffer_(buffers.buffer),
          flags_(flags) {}

    static status do_perform(reactor_op* base) {
        auto* o = static_cast<reactive_socket_recv_op_base*>(base);
        const bool stream = (o->state_ & socket_ops::stream_oriented) != 0;
        const std::size_t size = o->buffer_.size();
        if (!socket_ops::non_blocking_recv1(o->socket_, o->buffer_.data(), size, o->flags_, stream, o->ec_,
                                            o->bytes_transferred_)) {
            return not_done;
        }
        return stream && o->bytes_transferred_ < size ? done_and_exhausted : done;
    }

private:
    socket_type socket_;
    socket_ops::state_type state_;
    boost::asio::mutable_buffer buffer_;
    socket_base::message_flags flags_;
};

}  // namespace boost::asio::detail
