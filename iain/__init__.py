"""Composition root: settings, the `iain` CLI, the ASGI app factory and the demo."""
