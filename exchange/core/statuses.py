"""The states a slide and its pyramid conversion go through: one list each, for the hub,
its API (`viewable`) and the viewer, which reads them from the API instead of copying them.

StrEnums: a member is its string, so columns, JSON and comparisons with stored values need
no conversion (the database keeps the plain strings)."""

from __future__ import annotations

from enum import StrEnum


class SlideStatus(StrEnum):
    READY = "ready"  # served from its pyramid, or from its original when that is as good
    QUEUED = "queued"  # its pyramid is waiting for a conversion worker
    CONVERTING = "converting"  # its pyramid is being built
    FAILED = "failed"  # its pyramid could not be built: the original keeps serving

    @property
    def viewable(self) -> bool:
        return self in VIEWABLE


# Every slide status can be shown today (a slide is validated at ingest: while its pyramid
# is queued, built or failed, the original serves); a status that cannot is added here.
VIEWABLE = frozenset(SlideStatus)


def is_viewable(status: str) -> bool:
    """For a status as stored (a plain string): unknown ones are not viewable."""
    return status in VIEWABLE


class ConversionStatus(StrEnum):
    QUEUED = "queued"
    CONVERTING = "converting"  # with percent
    READY = "ready"  # the pyramid serves the tiles
    SKIPPED = "skipped"  # the original is as good: `note` says why
    FAILED = "failed"  # `error` says why; the original keeps serving

    @property
    def finished(self) -> bool:
        return self in FINISHED


# A conversion in one of these ran to its end (a retry is queued again).
FINISHED = frozenset({ConversionStatus.READY, ConversionStatus.SKIPPED, ConversionStatus.FAILED})


class UploadStatus(StrEnum):
    OPEN = "open"  # parts are coming
    COMPLETE = "complete"  # assembled and ingested
    FAILED = "failed"


class CaseStatus(StrEnum):
    RECEIVED = "received"  # the lab has the specimen; slides may still be coming
    IN_PROGRESS = "in_progress"  # a pathologist is reading it
    SIGNED_OUT = "signed_out"  # the report is out


class LinkSource(StrEnum):
    """How a slide found its case (exchange.slides.linking)."""

    BARCODE = "barcode"  # its label's barcode, through the centre's barcode rule
    FILE_NAME = "file_name"  # its file name, through the centre's file-name rule
    LIS = "lis"  # the lab system announced it (exchange.slides.lis)
    MANUAL = "manual"  # someone linked it by hand


class JobKind(StrEnum):
    INFERENCE = "inference"  # a registered model run over a slide: overlays
    TRAINING = "training"  # a patch classifier trained from a slide's annotations: a model


class JobState(StrEnum):
    """An inference job's states (exchange.jobs.queue): queued -> running -> one of the ends."""

    QUEUED = "queued"  # waiting for a worker (again, after a lost lease)
    RUNNING = "running"  # a worker holds its lease: progress, ETA
    SUCCEEDED = "succeeded"  # its result is committed: overlays, summary, provenance
    FAILED = "failed"  # `error` says why
    CANCELLED = "cancelled"  # asked for by a user; a running worker stops within seconds

    @property
    def ended(self) -> bool:
        return self in JOB_ENDS


JOB_ENDS = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})
