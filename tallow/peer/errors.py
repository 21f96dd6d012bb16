"""How the peer fails, each with the exit code a script sees (docs/cli.md, "Exit codes")."""

from __future__ import annotations

EXIT_OK = 0
EXIT_INTERRUPTED = 130  # Ctrl-C or SIGTERM: the other side was told


class PeerError(Exception):
    """Could not connect or the transfer failed (server, room, network, file)."""

    exit_code = 1


class Declined(PeerError):
    """This side said no: the words did not match, or the file was declined."""

    exit_code = 3


class Refused(PeerError):
    """The other side declined or cancelled, or left before the transfer finished."""

    exit_code = 4


class SecurityFailure(PeerError):
    """A security check failed: handshake, key confirmation, a frame, a channel, a checksum."""

    exit_code = 5
