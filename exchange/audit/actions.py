"""Every action the audit trail records: one list, so a reader (an auditor, the CLI, the
activity views to come) knows them all, and a typo is an error, not a new kind of event.

A StrEnum: a member is its string; events store and export the plain string."""

from __future__ import annotations

from enum import StrEnum


class AuditAction(StrEnum):
    # identity
    LOGIN = "login"
    LOGIN_FAILED = "login_failed"
    LOGOUT = "logout"
    SESSIONS_ENDED = "sessions_ended"  # an administrator ended a user's sessions
    USER_ENABLED = "user_enabled"
    USER_DISABLED = "user_disabled"
    # sharing
    GRANT = "grant"
    REVOKE = "revoke"
    # what may show a patient, or leave the hub
    VIEW_SHARED_SLIDE = "view_shared_slide"  # once per user x slide x viewing session
    VIEW_LABEL = "view_label"
    VIEW_MACRO = "view_macro"
    VIEW_ASSOCIATED = "view_associated"
    EXPORT_ANNOTATIONS = "export_annotations"
    # annotations (written in the same transaction as the change)
    ANNOTATION_CREATE = "annotation_create"
    ANNOTATION_UPDATE = "annotation_update"
    ANNOTATION_DELETE = "annotation_delete"
    # cases and what links slides to them (exchange.slides.cases, linking, lis)
    CASE_CREATE = "case_create"
    CASE_UPDATE = "case_update"
    SLIDE_PLACE = "slide_place"  # a slide put into a case (or out of one) by hand
    LIS_IMPORT = "lis_import"
    CENTRE_RULES = "centre_rules"
    # AI assistance (exchange.jobs): models registered, jobs asked for and ended
    MODEL_ADD = "model_add"
    JOB_CREATE = "job_create"
    JOB_CANCEL = "job_cancel"
    JOB_RESULT = "job_result"  # the winning attempt's result committed
    JOB_FAIL = "job_fail"
    # second opinions (exchange.sharing): every step of a consultation, with its timeline
    CONSULTATION = "consultation"
    # the trail itself
    AUDIT_EXPORT = "audit_export"
    AUDIT_PRUNE = "audit_prune"
