"""The listening socket: accepted connections come with the TCP options a relay needs, set once
on the listener rather than with system calls per connection, and only once the client has
sent something (its request head is there to read)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from hypercorn.config import Config

from tallow.http.listener import bind


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    config = Config()
    config.bind = ["127.0.0.1:0"]
    (sock,) = bind(config).insecure_sockets
    sock.settimeout(2)
    yield sock
    sock.close()


def test_accepted_sockets_inherit_nodelay_and_the_unsent_bytes_bound(listener) -> None:
    with socket.create_connection(listener.getsockname()[:2]) as client:
        client.sendall(b"GET / HTTP/1.1\r\n")
        accepted, _ = listener.accept()
        with accepted:
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT) == 16384


def test_a_connection_is_accepted_once_its_first_bytes_are_there(listener) -> None:
    with socket.create_connection(listener.getsockname()[:2]) as client:
        listener.settimeout(0.3)  # well inside the deferral: nothing to accept yet
        with pytest.raises(TimeoutError):
            listener.accept()
        client.sendall(b"GET / HTTP/1.1\r\n")
        listener.settimeout(2)
        accepted, _ = listener.accept()
        with accepted:
            assert accepted.recv(100) == b"GET / HTTP/1.1\r\n"
