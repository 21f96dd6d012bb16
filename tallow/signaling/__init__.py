"""The signaling service of PROTOCOL.md: sessions, rooms and the messages between peers."""
