"""Who may see and do what: the policy, the per-caller slide locators, and the tile fast
path's memory of callers."""
