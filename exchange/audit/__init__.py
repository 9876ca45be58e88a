"""The audit trail: a hash chain of events, and what is recorded of views of shared slides."""
