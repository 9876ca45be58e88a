"""The hub over HTTP, and the only part of it that imports FastAPI or Starlette: one routes
module per feature, the authentication and access dependencies, the audit hooks the tile
routes call."""
