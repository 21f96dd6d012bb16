"""One other peer: an aiortc RTCPeerConnection, the handshake, and the one encrypted channel.

Same rules as the web app's peer.js: the peer that joined later is the initiator; it opens the
only data channel (`tallow`, ordered), makes the SDP offer and sends hs1. The responder takes the
first such channel and no other; any other channel, or any channel opened towards the initiator,
can only come from someone inside DTLS, so it is closed and the link fails. aiortc gathers its
candidates before the description is sent, so they travel inside the SDP; the browser's trickled
`ice` signals are added as they come.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiortc import (
    RTCConfiguration,
    RTCDataChannel,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.sdp import candidate_from_sdp

from tallow.peer.crypto import CHANNEL_LABEL, Chunk, Handshake, SecureFrames, SecurityError, Session
from tallow.peer.errors import PeerError, Refused, SecurityFailure
from tallow.peer.protocol import safe_name

# Back-pressure: stop queueing above HIGH_WATER, resume once aiortc's buffer falls below LOW_WATER.
HIGH_WATER = 8 * 1024 * 1024
LOW_WATER = 2 * 1024 * 1024
# Frames the peer may send before this side's handshake finished (confirm, name, offers).
MAX_EARLY_FRAMES = 64

Message = dict[str, Any] | Chunk
_ENDED: Any = object()  # queued after the last message once the link is over
Signal = Callable[[dict[str, Any]], Awaitable[None]]


def ice_configuration(ice_servers: list[dict[str, Any]], relay_only: bool) -> RTCConfiguration:
    """RTCConfiguration from /api/ice-servers' `iceServers` (RTCIceServer dictionaries)."""
    servers = [
        RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential"))
        for s in ice_servers
    ]
    policy = RTCIceTransportPolicy.RELAY if relay_only else RTCIceTransportPolicy.ALL
    return RTCConfiguration(iceServers=servers, iceTransportPolicy=policy)


class PeerLink:
    """Call `start()` (initiator) and feed the peer's signals to `on_signal()`; then wait for
    `secure()`, exchange messages with `control()`, `chunk()` and `next_message()`."""

    def __init__(
        self, self_id: str, peer_id: str, name: Any, initiator: bool, signal: Signal,
        config: RTCConfiguration,
    ) -> None:  # fmt: skip
        self.peer_id = peer_id
        self.name = safe_name(name)
        self.initiator = initiator
        self._signal = signal
        self._handshake = Handshake(initiator, self_id, peer_id)
        self._session: Session | None = None
        self._frames: SecureFrames | None = None
        self._dc: RTCDataChannel | None = None
        self._pending: list[bytes] = []  # frames that came before the handshake finished
        self._remote_candidates: list[dict[str, Any]] = []
        self._messages: asyncio.Queue[Message] = asyncio.Queue()
        self._confirmed = asyncio.Event()
        self._drained = asyncio.Event()
        self._ended = asyncio.Event()
        self.problem: PeerError | None = None
        self.pc = RTCPeerConnection(config)
        self.pc.on("datachannel", self._on_remote_channel)
        self.pc.on("connectionstatechange", self._on_connection_state)

    async def start(self) -> None:
        """Initiator: open the data channel, send the offer and hs1."""
        self._attach(self.pc.createDataChannel(CHANNEL_LABEL, ordered=True))
        await self.pc.setLocalDescription(await self.pc.createOffer())
        await self._send_description()
        await self._signal(self._handshake.start())

    async def on_signal(self, data: dict[str, Any]) -> None:
        try:
            kind = data.get("t")
            if kind == "sdp":
                await self._on_description(data["sdp"])
            elif kind == "ice":
                await self._on_candidate(data["c"])
            elif kind in ("hs1", "hs2", "hs3"):
                reply, session = self._handshake.receive(data)
                if reply:
                    await self._signal(reply)
                if session:
                    self._session = session
                    self._maybe_start()
            elif kind == "restart":
                pass  # the browser asks for an ICE restart, which aiortc cannot do (docs/cli.md)
            else:
                raise PeerError(f"unknown signal {kind!r}")
        except SecurityError as error:
            self.fail(SecurityFailure(f"the handshake with {self.name} failed: {error}"))
        except (PeerError, KeyError, TypeError, ValueError) as error:
            self.fail(PeerError(f"setting up the connection with {self.name} failed: {error}"))

    async def _send_description(self) -> None:
        local = self.pc.localDescription
        await self._signal({"t": "sdp", "sdp": {"type": local.type, "sdp": local.sdp}})

    async def _on_description(self, sdp: dict[str, Any]) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp["sdp"], type=sdp["type"]))
        if sdp["type"] == "offer":
            await self.pc.setLocalDescription(await self.pc.createAnswer())
            await self._send_description()
        for candidate in self._remote_candidates:
            await self._add_candidate(candidate)
        self._remote_candidates.clear()

    async def _on_candidate(self, candidate: dict[str, Any]) -> None:
        # aiortc annotates remoteDescription as always set; it is None until the offer/answer.
        remote: object = self.pc.remoteDescription
        if remote is None:
            self._remote_candidates.append(candidate)
        else:
            await self._add_candidate(candidate)

    async def _add_candidate(self, candidate: dict[str, Any]) -> None:
        text = candidate.get("candidate") or ""
        if not text:  # end of candidates
            return
        parsed = candidate_from_sdp(
            text.split(":", 1)[1] if text.startswith("candidate:") else text
        )
        parsed.sdpMid = candidate.get("sdpMid")
        parsed.sdpMLineIndex = candidate.get("sdpMLineIndex")
        await self.pc.addIceCandidate(parsed)

    def _on_remote_channel(self, channel: RTCDataChannel) -> None:
        if self.initiator or self._dc is not None or channel.label != CHANNEL_LABEL:
            channel.close()
            self.fail(SecurityFailure(
                f"{self.name} (or someone between you) opened an unexpected extra connection, "
                "which Tallow refuses"
            ))  # fmt: skip
            return
        if not channel.ordered:
            channel.close()
            self.fail(SecurityFailure(f"{self.name} opened an unordered channel"))
            return
        self._attach(channel)
        if channel.readyState == "open":
            self._maybe_start()

    def _attach(self, dc: RTCDataChannel) -> None:
        self._dc = dc
        dc.bufferedAmountLowThreshold = LOW_WATER
        dc.on("open", self._maybe_start)
        dc.on("message", self._on_frame)
        dc.on("bufferedamountlow", self._drained.set)
        dc.on("close", lambda: self.fail(Refused(f"{self.name} closed the connection")))

    def _maybe_start(self) -> None:
        dc = self._dc
        if self._session is None or dc is None or dc.readyState != "open" or self._frames:
            return
        if dc.id is None:  # an open channel always has its stream id
            return
        try:
            self._frames = SecureFrames(self._session, dc.label, dc.id)
        except SecurityError as error:
            self.fail(SecurityFailure(str(error)))
            return
        dc.send(self._frames.confirmation())
        for frame in self._pending:
            self._on_frame(frame)
        self._pending.clear()

    def _on_frame(self, frame: bytes | str) -> None:
        if self.problem is not None:
            return
        if isinstance(frame, str):
            self.fail(SecurityFailure("the peer sent a text message on the encrypted channel"))
            return
        if self._frames is None:
            if len(self._pending) >= MAX_EARLY_FRAMES:
                self.fail(SecurityFailure(
                    f"more than {MAX_EARLY_FRAMES} messages arrived before the keys were agreed"
                ))  # fmt: skip
            else:
                self._pending.append(frame)
            return
        try:
            message = self._frames.open(frame)
        except SecurityError as error:
            self.fail(SecurityFailure(f"the secure connection with {self.name} failed: {error}"))
            return
        if message is None:
            self._confirmed.set()
        elif isinstance(message, dict) and message.get("t") == "name":
            self.name = safe_name(message.get("name"))
        else:
            self._messages.put_nowait(message)

    def _on_connection_state(self) -> None:
        if self.pc.connectionState == "failed":
            self.fail(PeerError(f"could not connect to {self.name}"))

    def fail(self, problem: PeerError) -> None:
        """The link is over: the first problem is kept, and every waiter wakes up with it."""
        if self.problem is None:
            self.problem = problem
            self._messages.put_nowait(_ENDED)
        self._ended.set()

    async def _until(self, event: asyncio.Event) -> None:
        """Wait for `event`, raising the link's problem if it ends first."""
        ended = asyncio.ensure_future(self._ended.wait())
        wanted = asyncio.ensure_future(event.wait())
        try:
            await asyncio.wait([ended, wanted], return_when=asyncio.FIRST_COMPLETED)
        finally:
            ended.cancel()
            wanted.cancel()
        if not event.is_set() and self.problem is not None:
            raise self.problem

    async def secure(self) -> list[str]:
        """Wait until both key confirmations verified; the verification words."""
        await self._until(self._confirmed)
        assert self._session is not None
        return self._session.words

    def _sealer(self) -> tuple[SecureFrames, RTCDataChannel]:
        if self.problem is not None:
            raise self.problem
        assert self._frames is not None and self._dc is not None
        return self._frames, self._dc

    def control(self, message: dict[str, Any]) -> None:
        frames, dc = self._sealer()
        dc.send(frames.control(message))

    async def chunk(self, file_id: int, data: bytes) -> None:
        frames, dc = self._sealer()
        dc.send(frames.chunk(file_id, data))
        if dc.bufferedAmount > HIGH_WATER:
            self._drained.clear()
            await self._until(self._drained)

    async def flush(self) -> None:
        """Wait until aiortc has handed everything queued to the network (callers bound it)."""
        _, dc = self._sealer()
        if dc.bufferedAmount == 0:
            return
        dc.bufferedAmountLowThreshold = 0
        self._drained.clear()
        await self._until(self._drained)

    def poll(self) -> Message | None:
        """A message that has already arrived, if any (raises the problem of an ended link)."""
        if self._messages.empty():
            return None
        message = self._messages.get_nowait()
        if message is _ENDED:
            self._messages.put_nowait(_ENDED)
            raise self.problem or PeerError("the connection closed")
        return message

    async def next_message(self) -> Message:
        message = await self._messages.get()
        if message is _ENDED:
            self._messages.put_nowait(_ENDED)  # for the next caller too
            raise self.problem or PeerError("the connection closed")
        return message

    async def close(self) -> None:
        self.fail(PeerError("closed"))
        await self.pc.close()
