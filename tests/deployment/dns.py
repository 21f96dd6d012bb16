"""A DNS server on loopback that answers A queries from a table the test changes, standing in
for Docker's embedded DNS (127.0.0.11) in front of the shipped nginx.conf."""

from __future__ import annotations

import socket
import struct
import threading
from types import TracebackType

TTL = 1
_A, _IN = 1, 1
_NO_ERROR, _NAME_ERROR = 0, 3


def _question(packet: bytes) -> tuple[str, int, int]:
    """(name, query type, end offset of the question) of a query."""
    labels, offset = [], 12
    while packet[offset]:
        length = packet[offset]
        labels.append(packet[offset + 1 : offset + 1 + length].decode().lower())
        offset += 1 + length
    qtype = struct.unpack_from("!H", packet, offset + 1)[0]
    return ".".join(labels), qtype, offset + 5


class DnsServer:
    """``records[name] = [addresses]``; other names get NXDOMAIN, other types no answer."""

    def __init__(self) -> None:
        self.records: dict[str, list[str]] = {}
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.settimeout(0.2)
        self.port: int = self._socket.getsockname()[1]
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> DnsServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._stopping.set()
        self._thread.join()
        self._socket.close()

    def _answer(self, query: bytes) -> bytes:
        name, qtype, end = _question(query)
        addresses = self.records.get(name)
        answers = addresses if addresses is not None and qtype == _A else []
        rcode = _NO_ERROR if addresses is not None else _NAME_ERROR
        (query_id,) = struct.unpack_from("!H", query)
        header = struct.pack("!HHHHHH", query_id, 0x8180 | rcode, 1, len(answers), 0, 0)
        records = b"".join(
            struct.pack("!HHHIH", 0xC00C, _A, _IN, TTL, 4) + socket.inet_aton(address)
            for address in answers
        )
        return header + query[12:end] + records

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                query, client = self._socket.recvfrom(512)
            except TimeoutError:
                continue
            self._socket.sendto(self._answer(query), client)
