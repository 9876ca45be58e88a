"""Who may see and do what: the policy and its per-caller slide locators, grants (a
service other features call in their own transaction), and the tile fast path's memory of
callers."""
