"""Errors become HTTP answers here, and only here: every error class of the hub, the tile
layer and storage says its own status (`http_status`), and may say headers (`headers`), so a
feature's new error needs no edit of this module or of the composition root."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from exchange.core.errors import ExchangeError
from storage import StorageError
from tiles.deid import View, public_message
from tiles.errors import TilesError


def status_of(exc: Exception) -> int:
    status: int = getattr(exc, "http_status", 500)
    return status


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(TilesError)
    @app.exception_handler(ExchangeError)
    @app.exception_handler(StorageError)
    async def _domain_error(request: Request, exc: Exception) -> JSONResponse:
        status = status_of(exc)
        message = getattr(exc, "message", None) or str(exc)
        # Set by the routes once they know the view; a storage or parser message may quote
        # the slide id or its file name, which a de-identified view must not show.
        if getattr(request.state, "slide_view", View.FULL) is not View.FULL:
            message = public_message(exc, status)
        # An error may say headers of its own (Retry-After on a throttled login).
        headers: dict[str, str] | None = getattr(exc, "headers", None)
        return JSONResponse({"detail": message}, status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # Only the plain fields: a pydantic error's input and context may not be JSON-able.
        errors = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type")}
            for e in exc.errors()
        ]
        return JSONResponse({"detail": "invalid request", "errors": errors}, 400)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)
