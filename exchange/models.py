"""The hub's tables (SQLAlchemy 2). SQLite is the embedded default, PostgreSQL production."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import JSON, BigInteger, DateTime, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, list[Any]: JSON}


class Centre(Base):
    __tablename__ = "centres"

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    city: Mapped[str] = mapped_column(String(100))


class Slide(Base):
    __tablename__ = "slides"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    # Original file name: may carry identifiers, never shown on a de-identified view.
    name: Mapped[str] = mapped_column(String(500))
    centre: Mapped[str] = mapped_column(ForeignKey("centres.code"), index=True)
    status: Mapped[str] = mapped_column(String(20), default="ready")
    error: Mapped[str | None] = mapped_column(Text, default=None)
    vendor: Mapped[str] = mapped_column(String(50))
    reader: Mapped[str] = mapped_column(String(20))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    mpp_x: Mapped[float | None] = mapped_column(Float, default=None)
    mpp_y: Mapped[float | None] = mapped_column(Float, default=None)
    objective_power: Mapped[float | None] = mapped_column(Float, default=None)
    levels: Mapped[list[Any]] = mapped_column(JSON)  # [[width, height], ...]
    associated: Mapped[list[Any]] = mapped_column(JSON)
    main_key: Mapped[str] = mapped_column(String(1000))
    main_size: Mapped[int] = mapped_column(BigInteger)
    keys: Mapped[list[Any]] = mapped_column(JSON)
    index_key: Mapped[str | None] = mapped_column(String(1000), default=None)
    content_hash: Mapped[str] = mapped_column(String(64), index=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Annotation(Base):
    """A shape drawn on a slide: GeoJSON geometry in level-0 pixel coordinates."""

    __tablename__ = "annotations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    slide_id: Mapped[str] = mapped_column(ForeignKey("slides.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(20))  # point, rectangle, ellipse, polygon, ...
    geometry: Mapped[dict[str, Any]] = mapped_column(JSON)
    label: Mapped[str] = mapped_column(String(200), default="")
    colour: Mapped[str] = mapped_column(String(7))  # #rrggbb
    comment: Mapped[str] = mapped_column(Text, default="")
    # Optimistic concurrency: every write bumps it; a write naming an older one is refused.
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
