"""`tallow send` and `tallow receive` end to end: server, room, one peer, verification, files.

Each command is one asyncio task group: the signaling reader, the pump that hands the room's
events to the link, and the work itself. Leaving (success, failure or Ctrl-C) tells the other side
what happened, leaves the room and closes the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from tallow.peer.errors import Declined, PeerError, Refused
from tallow.peer.link import PeerLink, ice_configuration
from tallow.peer.signaling import Signaling
from tallow.peer.terminal import Terminal, human_size
from tallow.peer.transfer import Offer, Receiver, Sender, plan_offers

LINGER_SECONDS = 3.0  # after a received file: how long to wait for the sender's next offer
FLUSH_SECONDS = 2.0  # at the end: how long the last messages get to leave
LEAVE_GRACE_SECONDS = 1.0  # after peer-left: how long its last data-channel messages may take


def parse_target(target: str, server: str | None) -> tuple[str, str]:
    """CODE or a join link (https://host/#room=CODE) -> (server, code)."""
    parts = urlsplit(target)
    if parts.scheme in ("http", "https") and parts.fragment.startswith("room="):
        code = unquote(parts.fragment.removeprefix("room="))
        return server or f"{parts.scheme}://{parts.netloc}", code
    if server is None:
        raise PeerError("give the join link, or the code with --server URL")
    return server, target


def join_link(server: str, code: str) -> str:
    return f"{server.rstrip('/')}/#room={quote(code)}"


def fetch_ice_servers(server: str) -> list[dict[str, Any]]:
    url = f"{server.rstrip('/')}/api/ice-servers"
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            servers = json.loads(answer.read()).get("iceServers", [])
    except (OSError, ValueError) as error:
        raise PeerError(f"cannot load the connection settings from {url}: {error}") from None
    return servers if isinstance(servers, list) else []


def has_relay(ice_servers: list[dict[str, Any]]) -> bool:
    urls = [
        u for s in ice_servers for u in ([s["urls"]] if isinstance(s["urls"], str) else s["urls"])
    ]
    return any(u.startswith(("turn:", "turns:")) for u in urls)


class Room:
    """This peer in one room, with at most one link (the first other peer)."""

    def __init__(self, signaling: Signaling, ice: list[dict[str, Any]], relay: bool, name: str):
        self.signaling, self.name = signaling, name
        self.config = ice_configuration(ice, relay)
        self.link: PeerLink | None = None
        self._linked = asyncio.Event()

    async def join(self, code: str) -> list[dict[str, Any]]:
        # No name at join: names go end to end (`name` on the data channel), never to the server.
        reply = await self.signaling.request({"type": "join", "room": code})
        peers: list[dict[str, Any]] = reply["peers"]
        return peers

    async def connect(self, peer: dict[str, Any], initiator: bool) -> PeerLink:
        link = PeerLink(
            self.signaling.peer_id, peer["peer"], peer.get("name"),
            initiator, lambda data: self.signaling.signal(peer["peer"], data), self.config,
        )  # fmt: skip
        self.link = link
        self._linked.set()
        if initiator:
            await link.start()
        return link

    async def pump(self) -> None:
        """Hand the server's events to the link, in order, until the server connection ends."""
        while (event := await self.signaling.events.get()) is not None:
            kind, link = event.get("type"), self.link
            if kind == "peer-joined" and link is None:
                await self.connect(event, initiator=False)
            elif link is None:
                continue
            elif kind == "signal" and event.get("from") == link.peer_id:
                await link.on_signal(event["data"])
            elif kind == "peer-left" and event.get("peer") == link.peer_id:
                # What they sent just before leaving (a cancel) may still be on its way over the
                # data channel, which is not ordered with the server: give it a moment.
                left = Refused(f"{link.name} left the room")
                asyncio.get_running_loop().call_later(LEAVE_GRACE_SECONDS, link.fail, left)

    async def wait_link(self) -> PeerLink:
        await self._linked.wait()
        assert self.link is not None
        return self.link

    async def secure(self, link: PeerLink, seconds: float) -> list[str]:
        try:
            async with asyncio.timeout(seconds):
                words = await link.secure()
        except TimeoutError:
            raise PeerError(
                f"could not connect to {link.name} within {seconds:g} s: your networks may block a "
                "direct connection (is TURN configured on the server?)"
            ) from None
        link.control({"t": "name", "name": self.name})
        return words


@contextlib.asynccontextmanager
async def open_room(server: str, relay: bool, name: str) -> AsyncIterator[Room]:
    ice = await asyncio.to_thread(fetch_ice_servers, server)
    if relay and not has_relay(ice):
        raise PeerError(
            "--relay is on, but this Tallow server offers no TURN relay; leave out --relay, "
            "or ask the server's operator to configure TURN"
        )
    signaling = await Signaling.connect(server)
    room = Room(signaling, ice, relay, name)
    try:
        async with asyncio.TaskGroup() as group:
            reader = group.create_task(signaling.run())
            pump = group.create_task(room.pump())
            try:
                yield room
            finally:
                await _goodbye(room)
                pump.cancel()
                reader.cancel()
    except BaseExceptionGroup as group_error:  # the work's own error, out of the task group
        raise group_error.exceptions[0] from None


async def _goodbye(room: Room) -> None:
    """Let the last messages leave, leave the room, close the connection; bounded, never raises."""
    with contextlib.suppress(Exception, asyncio.CancelledError):
        async with asyncio.timeout(FLUSH_SECONDS):
            if room.link is not None and room.link.problem is None:
                await room.link.flush()
            await room.signaling.request({"type": "leave"})
    with contextlib.suppress(Exception):
        if room.link is not None:
            await room.link.close()
        await room.signaling.close()


async def run_send(
    ui: Terminal, paths: list[Path], text: str | None, server: str, *, relay: bool,
    assume_yes: bool, name: str, connect_timeout: float,
) -> None:  # fmt: skip
    offers = plan_offers(paths, text)
    async with open_room(server, relay, name) as room:
        code = (await room.signaling.request({"type": "create"}))["room"]
        await room.join(code)
        link_url = join_link(server, code)
        ui.result("code", code)
        ui.result("link", link_url)
        ui.qr(link_url)
        ui.say(f"Waiting for the receiver: `tallow receive {code}` or the link above.")
        link = await room.wait_link()
        words = await room.secure(link, connect_timeout)
        ui.result("words", " ".join(words))
        if assume_yes:
            ui.say("--yes: not asking whether the words match; anyone who had the code could be "
                   "on the other end.")  # fmt: skip
        elif not await ui.ask(f"Does {link.name} see exactly these words: {' '.join(words)}?"):
            raise Declined("the words were not confirmed, so nothing was sent")
        sender = Sender(link, ui.progress, ui.result)
        for offer in offers:
            ui.say(f"Offering {offer.label}; waiting for {link.name} to accept.")
            await sender.send(offer)


async def run_receive(
    ui: Terminal, target: str, server: str | None, directory: Path, *, relay: bool, accept: bool,
    name: str, connect_timeout: float,
) -> None:  # fmt: skip
    server, code = parse_target(target, server)
    async with open_room(server, relay, name) as room:
        peers = await room.join(code)
        if peers:
            link = await room.connect(peers[0], initiator=True)
        else:
            ui.say(f"Room {code} is empty; waiting for the sender.")
            link = await room.wait_link()
        words = await room.secure(link, connect_timeout)
        ui.result("words", " ".join(words))
        ui.say(f"Connected to {link.name}. Compare these words with theirs: {' '.join(words)}")

        async def decide(offer: Offer) -> bool:
            about = f"{offer.summary} from {offer.sender}"
            if offer.resume_at is not None:
                about = f"the rest of {about} (interrupted at byte {offer.resume_at})"
            if accept:
                ui.say(f"--accept: taking {about} without asking.")
                return True
            return await ui.ask(f"Accept {about} ({human_size(offer.size)})?")

        receiver = Receiver(link, directory, decide, ui.progress, ui.result, ui.text)
        await receiver.run(linger=LINGER_SECONDS)
