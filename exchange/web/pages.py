"""The browser viewer (`cd viewer && npm ci && npm run build`): a single-page app whose
index.html answers "/" and each page's URL; its other files are static. Mounted last, so it
never shadows /api, /slides or /iiif. Without a build, the API still serves."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

# The viewer's pages (viewer/src/pages): each URL gets index.html, the app routes it.
PAGES = ("/", "/viewer/{_path:path}", "/compare", "/login")


def mount_viewer(app: FastAPI, dist: Path) -> None:
    index_html = dist / "index.html"
    if not index_html.is_file():
        return

    def viewer_page() -> Response:
        # Read per request: a rebuild takes effect without a restart. `no-cache` makes
        # browsers revalidate it, so they never keep an index naming deleted assets.
        return Response(
            index_html.read_bytes(),
            media_type="text/html; charset=utf-8",
            headers={"Cache-Control": "no-cache"},
        )

    for path in PAGES:
        app.add_api_route(path, viewer_page, methods=["GET"], include_in_schema=False)
    app.mount("/", StaticFiles(directory=dist), name="viewer")
