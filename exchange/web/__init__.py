"""The hub over HTTP, and the only part of it that imports FastAPI or Starlette: the typed
`Hub` of services (hub.py), one routes module per feature, the authentication and access
dependencies, error mapping, the audit hooks the tile routes call, the viewer's pages."""
