"""Tallow: the rendezvous server for private, post-quantum peer-to-peer file transfer."""

__version__ = "0.1.0"
