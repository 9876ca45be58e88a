"""Pathologists' annotations on a slide, with measurements and QuPath import/export."""
