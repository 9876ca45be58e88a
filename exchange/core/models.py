"""The hub's tables (SQLAlchemy 2). SQLite is the embedded default, PostgreSQL production."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """The moment in UTC; a naive one is taken as UTC, as the hub always meant it."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A moment, stored in UTC and read back aware (UTC) on both databases: SQLite keeps no
    zone and gave naive datetimes back, which every reader had to patch by hand. A naive
    datetime written is taken as UTC, as the hub always meant it."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else as_utc(value)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else as_utc(value)


# Folded keys (exchange.slides.search) compare byte by byte on PostgreSQL too, whatever the
# database's locale: prefix ranges and keyset pages then mean the same on both databases.
FoldedKey = String(100).with_variant(String(100, collation="C"), "postgresql")


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, list[Any]: JSON}


class Centre(Base):
    __tablename__ = "centres"

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    city: Mapped[str] = mapped_column(String(100))
    # How the centre's slides find their case at ingest (exchange.slides.linking): regular
    # expressions with named groups (case, and optionally part, block, level, stain) over
    # a label barcode's text and over the file name. None: that source is not used.
    barcode_rule: Mapped[str | None] = mapped_column(Text, default=None)
    file_name_rule: Mapped[str | None] = mapped_column(Text, default=None)


class Slide(Base):
    __tablename__ = "slides"
    # The worklist's pages (exchange.slides.listing): one index per sort, within a centre.
    __table_args__ = (
        Index("ix_slides_centre_created", "centre", "created_at", "id"),
        Index("ix_slides_centre_status", "centre", "status", "created_at", "id"),
        Index("ix_slides_case_block", "case_id", "block", "created_at"),
        # The cases with a slide of a stain (the stain filter).
        Index("ix_slides_stain_case", "stain_key", "case_id"),
        # The lab system's records find already scanned slides by barcode or file name.
        Index("ix_slides_centre_barcode", "centre", "barcode"),
        Index("ix_slides_centre_name", "centre", "name"),
    )

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
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # The de-identified view's address: random, unrelated to `id` (see tiles.deid).
    public_id: Mapped[str | None] = mapped_column(String(32), unique=True, index=True, default=None)
    # Allow-listed metadata for the de-identified view (tiles.deid.public_metadata).
    public_metadata: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    # The case (specimen) the slide belongs to, and its stain (H&E, an IHC marker...).
    case_id: Mapped[str | None] = mapped_column(
        ForeignKey("cases.id", ondelete="SET NULL"), index=True, default=None
    )
    stain: Mapped[str | None] = mapped_column(String(100), default=None)
    # The stain folded for filtering (exchange.slides.search.fold): "HER2", "her-2" alike.
    stain_key: Mapped[str | None] = mapped_column(String(100), default=None)
    # Where the slide was cut from: its case's part ("A"), block ("A1"), level ("2").
    part: Mapped[str | None] = mapped_column(String(20), default=None)
    block: Mapped[str | None] = mapped_column(String(20), default=None)
    level: Mapped[str | None] = mapped_column(String(20), default=None)
    # The label's barcode text, when one was read (what the lab system knows it by).
    barcode: Mapped[str | None] = mapped_column(String(256), default=None)
    # How its case was found: barcode, file_name, lis or manual (exchange.core.statuses).
    link_source: Mapped[str | None] = mapped_column(String(20), default=None)


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
    # A second opinion's layer (exchange.sharing): drawn by its participants, shown to both
    # sides and to no one else; None: the owner centre's own annotations.
    consultation_id: Mapped[str | None] = mapped_column(
        ForeignKey("consultations.id", ondelete="CASCADE"), index=True, default=None
    )
    author_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"), default=None)
    # Optimistic concurrency: every write bumps it; a write naming an older one is refused.
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Overlay(Base):
    """A layer computed over a slide (by an inference worker, say): a heatmap stored as a
    tiled pyramid, or a set of GeoJSON features in level-0 pixels. Immutable once written."""

    __tablename__ = "overlays"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    slide_id: Mapped[str] = mapped_column(ForeignKey("slides.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(20))  # heatmap, features
    name: Mapped[str] = mapped_column(String(200))
    # What the viewer shows as the legend: a colour ramp with its range, or class colours.
    legend: Mapped[dict[str, Any]] = mapped_column(JSON)
    # The object holding the pyramid (heatmap) or the FeatureCollection (features).
    storage_key: Mapped[str] = mapped_column(String(1000))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    # Heatmap: its own resolution and colour map; features: how many.
    width: Mapped[int | None] = mapped_column(Integer, default=None)
    height: Mapped[int | None] = mapped_column(Integer, default=None)
    colour_map: Mapped[str | None] = mapped_column(String(32), default=None)
    feature_count: Mapped[int | None] = mapped_column(Integer, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # A model's result: the job that made it, and where it came from (model digest and
    # version, slide content hash, code version, device, durations) with its summary.
    job_id: Mapped[str | None] = mapped_column(String(32), index=True, default=None)
    info: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)


class ModelVersion(Base):
    """A registered model version (exchange.jobs.registry): its artefact lies in storage by
    SHA-256, never opened by the hub; immutable once registered."""

    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("name", "version", name="uq_model_versions_name_version"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    version: Mapped[str] = mapped_column(String(50))
    task: Mapped[str] = mapped_column(String(30))  # exchange.jobs.manifest.Task
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    artefact_format: Mapped[str] = mapped_column(String(20))  # torchscript, export
    artefact_key: Mapped[str] = mapped_column(String(1000))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    manifest: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_by: Mapped[str | None] = mapped_column(String(32), default=None)
    centre: Mapped[str | None] = mapped_column(String(32), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class InferenceJob(Base):
    """One model version run over one slide (exchange.jobs.queue). Workers pull it with a
    lease: `lease_hash` is the hash of the running attempt's lease token, the
    compare-and-set key of every heartbeat and of the completion."""

    __tablename__ = "inference_jobs"
    __table_args__ = (
        Index("ix_inference_jobs_state_created", "state", "created_at"),
        Index("ix_inference_jobs_dedup", "model_id", "slide_id", "params_key", "state"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    # JobKind: a model run over the slide, or a model trained from its annotations.
    kind: Mapped[str] = mapped_column(String(20), default="inference")
    # The model run (inference), or None (training: `result_model_id` is what it made).
    model_id: Mapped[str | None] = mapped_column(
        ForeignKey("model_versions.id"), index=True, default=None
    )
    result_model_id: Mapped[str | None] = mapped_column(
        ForeignKey("model_versions.id"), default=None
    )
    slide_id: Mapped[str] = mapped_column(ForeignKey("slides.id", ondelete="CASCADE"), index=True)
    # The slide as the requester addressed it: its id (full view) or its opaque id
    # (a granted slide's de-identified view); the worker reads this view only.
    slide_address: Mapped[str] = mapped_column(String(64))
    requester_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    requester_centre: Mapped[str] = mapped_column(String(32), index=True)
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    params_key: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(20), default="queued")  # JobState
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    lost_leases: Mapped[int] = mapped_column(Integer, default=0)
    lease_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    worker: Mapped[str | None] = mapped_column(String(200), default=None)
    patches_done: Mapped[int] = mapped_column(Integer, default=0)
    patches_total: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    # The result, set by the winning attempt's completion in one update.
    overlay_ids: Mapped[list[Any]] = mapped_column(JSON, default=list)
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    provenance: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Upload(Base):
    """A resumable upload: its files arrive part by part; the slide `slide_id` is recorded
    only once every file is complete and verified."""

    __tablename__ = "uploads"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    slide_id: Mapped[str] = mapped_column(String(32), unique=True)
    centre: Mapped[str] = mapped_column(ForeignKey("centres.code"))
    name: Mapped[str] = mapped_column(String(500))
    part_size: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(20), default="open")  # open, complete, failed
    error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class UploadFile(Base):
    __tablename__ = "upload_files"

    upload_id: Mapped[str] = mapped_column(
        ForeignKey("uploads.id", ondelete="CASCADE"), primary_key=True
    )
    index: Mapped[int] = mapped_column(Integer, primary_key=True)
    path: Mapped[str] = mapped_column(String(1000))  # relative, '/'-separated
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(1000))
    multipart_id: Mapped[str] = mapped_column(String(1000))  # the storage's upload id
    assembled: Mapped[bool] = mapped_column(default=False)  # its object exists in storage


class UploadPart(Base):
    __tablename__ = "upload_parts"

    upload_id: Mapped[str] = mapped_column(
        ForeignKey("uploads.id", ondelete="CASCADE"), primary_key=True
    )
    file_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    number: Mapped[int] = mapped_column(Integer, primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    etag: Mapped[str] = mapped_column(String(200))
    sha256: Mapped[str] = mapped_column(String(64))


class Conversion(Base):
    """A slide's normalised pyramid (tiles.convert): the job that builds it, then where it is.

    status: queued, converting (with percent), ready (the pyramid serves the tiles),
    skipped (the original is as good: `note` says why) or failed (`error` says why; the
    original keeps serving)."""

    __tablename__ = "conversions"

    slide_id: Mapped[str] = mapped_column(
        ForeignKey("slides.id", ondelete="CASCADE"), primary_key=True
    )
    status: Mapped[str] = mapped_column(String(20), default="queued", index=True)
    percent: Mapped[float] = mapped_column(Float, default=0.0)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    note: Mapped[str | None] = mapped_column(Text, default=None)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # The worker process converting it now (a crash or kill is noticed by its supervisor).
    worker_pid: Mapped[int | None] = mapped_column(Integer, default=None)
    pyramid_key: Mapped[str | None] = mapped_column(String(1000), default=None)
    pyramid_size: Mapped[int | None] = mapped_column(BigInteger, default=None)
    pyramid_index_key: Mapped[str | None] = mapped_column(String(1000), default=None)
    pyramid_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    pyramid_levels: Mapped[list[Any] | None] = mapped_column(JSON, default=None)
    seconds: Mapped[float | None] = mapped_column(Float, default=None)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


# -- identity, access and audit (see exchange/core/principal.py, policy.py, audit.py) ---------


class User(Base):
    """A person (or a GPU worker's service account) of one centre."""

    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    username: Mapped[str] = mapped_column(String(150), unique=True, index=True)
    centre: Mapped[str] = mapped_column(ForeignKey("centres.code"), index=True)
    # exchange.core.principal.Role values.
    roles: Mapped[list[Any]] = mapped_column(JSON)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    # RPPS: the French national health-professional number, when known.
    rpps: Mapped[str | None] = mapped_column(String(11), default=None)
    # Where notifications are mailed ("" = in the app only).
    email: Mapped[str] = mapped_column(String(254), default="")
    # argon2 hash; None for accounts that log in only through OpenID Connect.
    password_hash: Mapped[str | None] = mapped_column(String(200), default=None)
    # "issuer|subject" of an OpenID Connect login linked to this account.
    oidc_subject: Mapped[str | None] = mapped_column(
        String(500), unique=True, index=True, default=None
    )
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ApiToken(Base):
    """A bearer token for scripts and workers: only its SHA-256 is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    # Empty: everything the user may do; else a subset, e.g. ["tiles:read"].
    scopes: Mapped[list[Any]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class LoginSession(Base):
    """A browser session: the cookie carries a random secret, only its SHA-256 is stored."""

    __tablename__ = "login_sessions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class LoginFailure(Base):
    """A failed login, kept for the throttle's window so that every hub process (and a
    restarted one) counts the same failures. `key` is a keyed hash of "user:NAME" or
    "addr:ADDRESS": what was typed as a username may be a password, never stored as such."""

    __tablename__ = "login_failures"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    key: Mapped[str] = mapped_column(String(64), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)


class Case(Base):
    """A specimen of one centre, known outside it only by its pseudonymous reference
    (accession-like, never a patient identity). Its parts and blocks are its slides'."""

    __tablename__ = "cases"
    __table_args__ = (
        UniqueConstraint("centre", "reference"),
        # One reference per centre however it is typed ("B26-0012", "b26 0012"); also the
        # reference sort's and prefix search's index.
        Index("uq_cases_centre_reference_key", "centre", "reference_key", unique=True),
        # The worklist's pages (exchange.slides.listing): one index per sort.
        Index("ix_cases_centre_received", "centre", "received_on", "id"),
        Index("ix_cases_centre_status", "centre", "status", "received_on", "id"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    centre: Mapped[str] = mapped_column(ForeignKey("centres.code"), index=True)
    reference: Mapped[str] = mapped_column(String(100))
    # The reference folded (exchange.slides.search.reference_key): sorting, prefix search.
    reference_key: Mapped[str] = mapped_column(FoldedKey)
    # The de-identified view's address of the case (as Slide.public_id): other centres
    # never learn its id.
    public_id: Mapped[str | None] = mapped_column(String(32), unique=True, default=None)
    organ: Mapped[str] = mapped_column(String(100), default="")
    specimen_type: Mapped[str] = mapped_column(String(100), default="")
    # When the lab received the specimen (the day the case was opened, if no one said).
    received_on: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(20), default="received")  # CaseStatus
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class SearchTerm(Base):
    """A word of a case or slide, folded (accents, case), for the worklist's search: one
    index range scan per word instead of a substring scan of every row. `public`: a word
    the de-identified view shows too (case reference, organ, stain); a file name's words
    match only for callers who see the full view."""

    __tablename__ = "search_terms"
    __table_args__ = (Index("ix_search_terms_centre_term", "centre", "term", "case_id"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    centre: Mapped[str] = mapped_column(String(32))
    term: Mapped[str] = mapped_column(FoldedKey)
    case_id: Mapped[str | None] = mapped_column(
        ForeignKey("cases.id", ondelete="CASCADE"), index=True, default=None
    )
    slide_id: Mapped[str | None] = mapped_column(
        ForeignKey("slides.id", ondelete="CASCADE"), index=True, default=None
    )
    public: Mapped[bool] = mapped_column(Boolean, default=True)


class ExpectedSlide(Base):
    """A slide the lab system announced (exchange.slides.lis) before it was scanned: when a
    slide whose label barcode or file name is `label` arrives, it joins this case."""

    __tablename__ = "expected_slides"

    centre: Mapped[str] = mapped_column(ForeignKey("centres.code"), primary_key=True)
    label: Mapped[str] = mapped_column(String(256), primary_key=True)
    case_reference: Mapped[str] = mapped_column(String(100))
    part: Mapped[str | None] = mapped_column(String(20), default=None)
    block: Mapped[str | None] = mapped_column(String(20), default=None)
    level: Mapped[str | None] = mapped_column(String(20), default=None)
    stain: Mapped[str | None] = mapped_column(String(100), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Grant(Base):
    """Who shares what (a slide or a whole case) with whom (a centre or one user), why,
    until when. A grant is live until it expires or is revoked; it shows only the
    de-identified view."""

    __tablename__ = "grants"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    slide_id: Mapped[str | None] = mapped_column(
        ForeignKey("slides.id", ondelete="CASCADE"), index=True, default=None
    )
    case_id: Mapped[str | None] = mapped_column(
        ForeignKey("cases.id", ondelete="CASCADE"), index=True, default=None
    )
    grantor_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    grantor_centre: Mapped[str] = mapped_column(ForeignKey("centres.code"), index=True)
    grantee_centre: Mapped[str | None] = mapped_column(
        ForeignKey("centres.code"), index=True, default=None
    )
    grantee_user_id: Mapped[str | None] = mapped_column(
        ForeignKey("users.id"), index=True, default=None
    )
    purpose: Mapped[str] = mapped_column(String(30))  # second_opinion, teaching, tumour_board
    legal_basis: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class AuditEvent(Base):
    """Append-only: each row carries the hash of the previous one (see exchange/audit/chain.py)."""

    __tablename__ = "audit_events"

    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
    actor_id: Mapped[str | None] = mapped_column(String(32), index=True, default=None)
    actor_centre: Mapped[str | None] = mapped_column(String(32), default=None)
    # login, login_failed, grant, revoke, view_shared_slide, view_label, annotation_*, export...
    action: Mapped[str] = mapped_column(String(50), index=True)
    target_type: Mapped[str] = mapped_column(String(30), default="")
    target_id: Mapped[str] = mapped_column(String(64), default="")
    # Never a patient identifier: ids, purposes, counts.
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class AuditHead(Base):
    """The end of the audit chain, in one row (id 1). Appending an event updates it first,
    which locks it (a row lock on PostgreSQL, the write lock on SQLite): concurrent
    transactions chain one after the other, never both to the same event. `verify` checks the
    last event against it (a deleted tail shows) and starts from its floor: after a prune,
    the seq and hash of the last removed event, to which the first kept one chains."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    last_hash: Mapped[str] = mapped_column(String(64))
    floor_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    floor_hash: Mapped[str] = mapped_column(String(64))
    pruned_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class AuditView(Base):
    """Views of shared slides already audited: one event per user x slide x viewing session
    (see exchange.audit.chain.viewing_session); the key makes a second hub process's insert fail."""

    __tablename__ = "audit_views"

    user_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    slide_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    viewing_session: Mapped[str] = mapped_column(String(100), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)


# --- second opinions (exchange.sharing) -------------------------------------------------------


class Pool(Base):
    """A centre's specialty pool: second-opinion requests addressed to the specialty rather
    than to one person; its managers triage them (assign) and its members may take one."""

    __tablename__ = "consultation_pools"
    __table_args__ = (UniqueConstraint("centre", "specialty"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    centre: Mapped[str] = mapped_column(ForeignKey("centres.code"), index=True)
    specialty: Mapped[str] = mapped_column(String(50))  # exchange.sharing.consultations
    name: Mapped[str] = mapped_column(String(200))


class PoolMember(Base):
    __tablename__ = "consultation_pool_members"

    pool_id: Mapped[str] = mapped_column(
        ForeignKey("consultation_pools.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), primary_key=True, index=True)
    manager: Mapped[bool] = mapped_column(Boolean, default=False)


class Consultation(Base):
    """A second-opinion request and its answer (exchange.sharing.consultations): the one
    row the state machine moves, compare-and-set on `version`. Nothing in it names the
    patient: the case is known by its centre's pseudonymous reference."""

    __tablename__ = "consultations"
    __table_args__ = (
        # The inbox, the outbox and the pool's queue: one index each, newest activity first.
        Index("ix_consultations_requester", "requester_id", "updated_at", "id"),
        Index("ix_consultations_addressee", "addressee_user_id", "updated_at", "id"),
        Index("ix_consultations_assignee", "assignee_id", "updated_at", "id"),
        Index("ix_consultations_pool", "pool_id", "updated_at", "id"),
        Index("ix_consultations_state_due", "state", "due_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    state: Mapped[str] = mapped_column(String(20), default="draft")  # ConsultationState
    version: Mapped[int] = mapped_column(Integer, default=1)
    requester_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    requester_centre: Mapped[str] = mapped_column(ForeignKey("centres.code"), index=True)
    case_id: Mapped[str | None] = mapped_column(
        ForeignKey("cases.id", ondelete="SET NULL"), index=True, default=None
    )
    case_reference: Mapped[str] = mapped_column(String(100), default="")
    # The request.
    question: Mapped[str] = mapped_column(Text, default="")
    clinical_context: Mapped[str] = mapped_column(Text, default="")
    specimen_site: Mapped[str] = mapped_column(String(200), default="")
    specimen_procedure: Mapped[str] = mapped_column(String(200), default="")
    stains: Mapped[str] = mapped_column(String(500), default="")
    initial_diagnosis: Mapped[str] = mapped_column(Text, default="")
    initial_status: Mapped[str] = mapped_column(String(20), default="provisional")
    initial_confidence: Mapped[str] = mapped_column(String(20), default="moderate")
    urgency: Mapped[str] = mapped_column(String(20), default="routine")
    network: Mapped[str] = mapped_column(String(50), default="")
    consent: Mapped[str] = mapped_column(String(30), default="")  # Consent
    # The addressee: one named pathologist, or a centre's specialty pool.
    addressee_user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"), default=None)
    pool_id: Mapped[str | None] = mapped_column(ForeignKey("consultation_pools.id"), default=None)
    addressee_centre: Mapped[str | None] = mapped_column(
        ForeignKey("centres.code"), index=True, default=None
    )
    # Who answers: the named addressee once accepted, or the pool member assigned / taking it.
    assignee_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"), default=None)
    decline_reason: Mapped[str] = mapped_column(Text, default="")
    # The answer.
    answer_diagnosis: Mapped[str] = mapped_column(Text, default="")
    answer_agreement: Mapped[str] = mapped_column(String(20), default="")  # Agreement
    answer_confidence: Mapped[str] = mapped_column(String(20), default="")
    answer_comments: Mapped[str] = mapped_column(Text, default="")
    # Turnaround (each set once, by the first event of its kind).
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    first_viewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    # Reminders sent (the hub's scheduled task claims each once, whatever the processes).
    reminded_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    reminded_overdue_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class ConsultationSlide(Base):
    __tablename__ = "consultation_slides"

    consultation_id: Mapped[str] = mapped_column(
        ForeignKey("consultations.id", ondelete="CASCADE"), primary_key=True
    )
    slide_id: Mapped[str] = mapped_column(
        ForeignKey("slides.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    position: Mapped[int] = mapped_column(Integer, default=0)


class ConsultationGrant(Base):
    """A grant the consultation made (revoked when it ends)."""

    __tablename__ = "consultation_grants"

    consultation_id: Mapped[str] = mapped_column(
        ForeignKey("consultations.id", ondelete="CASCADE"), primary_key=True
    )
    grant_id: Mapped[str] = mapped_column(
        ForeignKey("grants.id", ondelete="CASCADE"), primary_key=True
    )


class ConsultationMaterial(Base):
    """A block or glass slide posted with the request, and where it is."""

    __tablename__ = "consultation_material"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    consultation_id: Mapped[str] = mapped_column(
        ForeignKey("consultations.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(20))  # block, glass
    label: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(20), default="sent")  # sent, received, returned
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ConsultationEvent(Base):
    """The consultation's timeline: one row per transition (and per addendum, material
    update, first view), written with the transition and its audit event."""

    __tablename__ = "consultation_events"
    __table_args__ = (Index("ix_consultation_events_at", "consultation_id", "at", "id"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    consultation_id: Mapped[str] = mapped_column(ForeignKey("consultations.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    actor_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    action: Mapped[str] = mapped_column(String(30))
    from_state: Mapped[str] = mapped_column(String(20))
    to_state: Mapped[str] = mapped_column(String(20))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Message(Base):
    """A message of a discussion thread. A thread is attached to its subject by type and id
    (a consultation, an annotation), never by a foreign key to another feature's table;
    `consultation_id` says whose participants may read it."""

    __tablename__ = "messages"
    __table_args__ = (Index("ix_messages_subject", "subject_type", "subject_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    consultation_id: Mapped[str] = mapped_column(
        ForeignKey("consultations.id", ondelete="CASCADE"), index=True
    )
    subject_type: Mapped[str] = mapped_column(String(20))  # consultation, annotation
    subject_id: Mapped[str] = mapped_column(String(32))
    author_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    body: Mapped[str] = mapped_column(Text)
    # Usernames @mentioned, and view links ({"slide", "x", "y", "zoom"}: a viewport).
    mentions: Mapped[list[Any]] = mapped_column(JSON, default=list)
    links: Mapped[list[Any]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


# --- notifications (exchange.live) -------------------------------------------------------------


class Notification(Base):
    """Something awaits a user: shown in the app (the bell), mailed if the user chose so.
    The text names no patient and no slide: only what happened and a link."""

    __tablename__ = "notifications"
    __table_args__ = (
        Index("ix_notifications_user", "user_id", "read_at", "created_at"),
        Index("ix_notifications_created", "created_at"),
        Index("ix_notifications_mail", "mail_state", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"))
    event: Mapped[str] = mapped_column(String(30))  # exchange.live.notifications.Event
    subject_type: Mapped[str] = mapped_column(String(20))
    subject_id: Mapped[str] = mapped_column(String(32))
    text: Mapped[str] = mapped_column(String(500))
    link: Mapped[str] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    # "" (not mailed), "pending", "sending", "sent", "failed"
    mail_state: Mapped[str] = mapped_column(String(10), default="")
    mail_attempts: Mapped[int] = mapped_column(Integer, default=0)


class NotificationSettings(Base):
    """A user's choice of events and channels: {event: {"app": bool, "email": bool}}."""

    __tablename__ = "notification_settings"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), primary_key=True)
    choices: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
