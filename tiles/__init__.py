"""Slide reading and tile serving: readers over storage, DeepZoom and IIIF, tile cache."""
