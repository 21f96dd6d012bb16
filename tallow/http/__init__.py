"""HTTP side of Tallow: the ASGI app hypercorn serves (probes, metrics, ICE, UI, WebSocket)."""
