"""The slide catalogue: what slides exist, whose they are, where their bytes are.

Implements tiles.location.SlideLocator, so the tile routes find slides without knowing
about the database."""

from __future__ import annotations

import dataclasses
import threading
import time
import weakref
from collections.abc import Sequence

from sqlalchemy import Engine, event, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from exchange.core.db import Database
from exchange.core.ids import new_public_id
from exchange.core.models import Conversion, Slide
from exchange.core.statuses import ConversionStatus, SlideStatus, is_viewable
from exchange.slides.linking import link_new_slide
from tiles.deid import View, public_metadata
from tiles.formats import ReaderKind
from tiles.geometry import Size
from tiles.ingest import Inspection
from tiles.location import SlideLocation


class Catalogue:
    """The slides: what exists, whose, where their bytes are. Its database is `db`."""

    def __init__(self, database: Database) -> None:
        self.db = database
        # Locations for the tile hot path: id -> (expiry, location). Ready slides keep
        # theirs LOCATION_TTL_S, slides still served from their original (ids in _pending)
        # PENDING_TTL_S.
        self._locations: dict[str, tuple[float, SlideLocation]] = {}
        self._pending: set[str] = set()
        # Ids whose expired location one thread is looking up again (the others go on
        # with the expired one meanwhile, rather than all querying the database at once).
        self._refreshing: set[str] = set()
        self._lock = threading.Lock()
        # A write through this database (a conversion the hub's own worker ends) may make
        # a pending slide ready: its tiles switch to the pyramid at once, not a TTL later.
        # The listener holds the catalogue weakly: SQLAlchemy's event registry is global,
        # and a strong reference would keep every catalogue (and its pool's open database
        # connections) alive for the life of the process.
        drop_pending = weakref.WeakMethod(self._drop_pending)

        def after_commit(session: Session) -> None:
            method = drop_pending()
            if method is not None:
                method(session)

        event.listen(database.sessions, "after_commit", after_commit)
        with database.sessions.begin() as session:
            # Slides ingested before de-identified views existed get their opaque id now.
            for slide in session.scalars(select(Slide).where(Slide.public_id.is_(None))):
                slide.public_id = new_public_id()

    @classmethod
    def open(cls, url: str) -> Catalogue:
        """The catalogue of the database at `url` (migrated, seeded: Database.open)."""
        return cls(Database.open(url))

    @property
    def engine(self) -> Engine:
        return self.db.engine

    def session(self) -> Session:
        """A session of the catalogue's database, for the slide features' own queries."""
        return self.db.session()

    def add_slide(
        self,
        name: str,
        centre: str,
        loc: SlideLocation,
        inspection: Inspection,
        *,
        convert: bool = False,
    ) -> Slide:
        """Records a stored slide; with `convert`, queues its normalised pyramid too."""
        props = inspection.properties
        slide = Slide(
            id=loc.slide_id,
            name=name,
            centre=centre,
            status=SlideStatus.QUEUED if convert else SlideStatus.READY,
            vendor=props.vendor,
            reader=loc.kind.value,
            width=props.l0_size.width,
            height=props.l0_size.height,
            mpp_x=props.mpp_x,
            mpp_y=props.mpp_y,
            objective_power=props.objective_power,
            levels=[[s.width, s.height] for s in props.l_sizes],
            associated=list(props.associated),
            main_key=loc.main_key,
            main_size=loc.main_size,
            keys=list(loc.keys),
            index_key=loc.index_key,
            content_hash=loc.content_hash,
            size_bytes=inspection.total_bytes,
            public_id=new_public_id(),
            public_metadata=public_metadata(props),
        )
        with self.db.sessions.begin() as session:
            session.add(slide)
            session.flush()  # its search terms refer to it
            link_new_slide(session, slide, tuple(code.text for code in inspection.barcodes))
            if convert:
                session.flush()  # the job refers to the slide
                session.add(Conversion(slide_id=slide.id, status=ConversionStatus.QUEUED))
        return slide

    def get(self, slide_id: str) -> Slide | None:
        with self.session() as session:
            return session.get(Slide, slide_id)

    def resolve(self, any_id: str) -> tuple[Slide, View] | None:
        """The slide a request names, and the view that name gives: its id gives the full
        view, its opaque public id the de-identified one."""
        if len(any_id) > 64:
            return None
        with self.session() as session:
            slide = session.get(Slide, any_id)
            if slide is not None:
                return slide, View.FULL
            slide = session.scalars(select(Slide).where(Slide.public_id == any_id)).first()
            return None if slide is None else (slide, View.DEIDENTIFIED)

    def list_slides(self) -> Sequence[Slide]:
        with self.session() as session:
            return session.scalars(select(Slide).order_by(Slide.created_at, Slide.id)).all()

    def locate(self, slide_id: str) -> SlideLocation | None:
        cached = self._locations.get(slide_id)
        if cached is not None:
            expiry, loc = cached
            if expiry > time.monotonic():
                return loc
            with self._lock:
                if slide_id in self._refreshing:
                    return loc
                self._refreshing.add(slide_id)
            try:
                return self._look_up(slide_id)
            except SQLAlchemyError:
                # The database is busy or gone for a moment: tiles go on from where the
                # slide was, and it is asked again a period later, not on every tile.
                with self._lock:
                    ttl = PENDING_TTL_S if slide_id in self._pending else LOCATION_TTL_S
                    self._locations[slide_id] = (time.monotonic() + ttl, loc)
                return loc
            finally:
                with self._lock:
                    self._refreshing.discard(slide_id)
        return self._look_up(slide_id)

    def _look_up(self, slide_id: str) -> SlideLocation | None:
        found = self.resolve(slide_id)
        if found is None or not is_viewable(found[0].status):
            self._drop(slide_id)
            return None
        slide, view = found
        loc = location_of(slide)
        if view is not View.FULL:
            loc = dataclasses.replace(loc, view=view)
        with self.session() as session:
            conversion = session.get(Conversion, slide.id)
        if conversion is not None and conversion.status == ConversionStatus.READY:
            loc = pyramid_location(conversion, loc)
        # A ready slide's location is reused for LOCATION_TTL_S: a pyramid built (or a
        # slide removed) by another process sharing the database shows within that time.
        # Until its conversion ends (queued, converting, failed), a slide is served from
        # its original, looked up again after PENDING_TTL_S, so the pyramid takes over
        # soon after it is ready, without three queries per tile meanwhile.
        ready = slide.status == SlideStatus.READY
        with self._lock:
            ttl = LOCATION_TTL_S if ready else PENDING_TTL_S
            self._locations[slide_id] = (time.monotonic() + ttl, loc)
            if ready:
                self._pending.discard(slide_id)
            else:
                self._pending.add(slide_id)
        return loc

    def _drop(self, slide_id: str) -> None:
        with self._lock:
            self._locations.pop(slide_id, None)
            self._pending.discard(slide_id)

    def _drop_pending(self, _session: Session) -> None:
        if not self._pending:  # the common case, without the lock
            return
        with self._lock:
            for slide_id in self._pending:
                self._locations.pop(slide_id, None)
            self._pending.clear()

    def forget(self, slide_id: str) -> None:
        """Drops cached locations of a slide whose tiles move (a conversion rerun)."""
        with self._lock:
            for key in [k for k, (_, v) in self._locations.items() if v.slide_id == slide_id]:
                del self._locations[key]
                self._pending.discard(key)


# How long a ready slide's location is reused before the catalogue is read again: the
# delay before a hub serves a pyramid built by another process (`iain convert`, another
# hub). One lookup per slide and period, next to a dictionary lookup per tile.
LOCATION_TTL_S = 2.0
# The same for a slide whose pyramid is queued, being built or failed: short, so the switch
# to a pyramid built by another process stays quick.
PENDING_TTL_S = 1.0


def pyramid_location(conversion: Conversion, original: SlideLocation) -> SlideLocation:
    """The slide's normalised pyramid, a tiled JPEG TIFF (tiles.convert)."""
    assert conversion.pyramid_key is not None and conversion.pyramid_levels is not None
    return dataclasses.replace(
        original,
        kind=ReaderKind.TIFF,
        main_key=conversion.pyramid_key,
        main_size=conversion.pyramid_size or 0,
        keys=(conversion.pyramid_key,),
        index_key=conversion.pyramid_index_key,
        content_hash=conversion.pyramid_hash or "",
        l_sizes=tuple(Size(int(w), int(h)) for w, h in conversion.pyramid_levels),
        original=original,
    )


def location_of(slide: Slide) -> SlideLocation:
    return SlideLocation(
        slide_id=slide.id,
        kind=ReaderKind(slide.reader),
        main_key=slide.main_key,
        main_size=slide.main_size,
        keys=tuple(slide.keys),
        index_key=slide.index_key,
        content_hash=slide.content_hash,
        l_sizes=tuple(Size(int(w), int(h)) for w, h in slide.levels),
    )
