"""The centres of the C³ cooperation, seeded in every new database."""

from __future__ import annotations

SEED_CENTRES = (
    ("caen", "Centre François Baclesse", "Caen"),
    ("lille", "Centre Oscar Lambret", "Lille"),
    ("rouen", "Centre Henri Becquerel", "Rouen"),
)
