"""A TCP proxy on a free loopback port that a test can cut, to drop a page's WebSocket for real."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class CuttableProxy:
    """Forwards every connection to `target_port`. `cut()` resets all open connections; while
    `refusing` is set, new ones are reset right after they are accepted (a server that is gone)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.refusing = threading.Event()
        self.lock = threading.Lock()
        self.open: set[socket.socket] = set()
        self.accepted = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def serve(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # listener closed: the proxy is done
            if self.refusing.is_set():
                reset(client)
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self.lock:
                self.open.update((client, upstream))
                self.accepted += 1
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self.pump, args=(source, sink), daemon=True).start()

    def pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                self.forget(sock)

    def forget(self, sock: socket.socket) -> None:
        with self.lock:
            self.open.discard(sock)
        reset(sock)

    def cut(self) -> None:
        with self.lock:
            victims = list(self.open)
        for sock in victims:
            self.forget(sock)

    def close(self) -> None:
        self.listener.close()
        self.cut()


def reset(sock: socket.socket) -> None:
    """Drop a connection abruptly: shutdown wakes the pump blocked on it, linger 0 sends RST."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


@contextmanager
def cuttable_proxy(target_port: int) -> Iterator[CuttableProxy]:
    proxy = CuttableProxy(target_port)
    thread = threading.Thread(target=proxy.serve, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy.close()
        thread.join(5)
