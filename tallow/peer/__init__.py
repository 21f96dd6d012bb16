"""The command-line peer: `tallow send` and `tallow receive` (docs/cli.md).

A separate program from the server: it runs its own asyncio loop for aiortc (WebRTC) and needs
the `peer` extra. The server never imports this package.
"""
