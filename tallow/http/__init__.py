"""HTTP side of Tallow: the listener, /signaling upgrades, and the ASGI app hypercorn serves
(probes, metrics, ICE servers, the static UI)."""
