"""The audit trail: a hash chain of events, the list of actions it records, and what is
recorded of views of shared slides."""
