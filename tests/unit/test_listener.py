"""The listening socket: accepted connections come with the TCP options a relay needs, set once
on the listener rather than with two system calls per connection."""

from __future__ import annotations

import socket

from hypercorn.config import Config

from tallow.http.listener import bind


def test_accepted_sockets_inherit_nodelay_and_the_unsent_bytes_bound() -> None:
    config = Config()
    config.bind = ["127.0.0.1:0"]
    (listener,) = bind(config).insecure_sockets
    try:
        with socket.create_connection(listener.getsockname()[:2]):
            accepted, _ = listener.accept()
            with accepted:
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT) == 16384
    finally:
        listener.close()
