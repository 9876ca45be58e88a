"""Layers computed over a slide: heatmap pyramids and GeoJSON feature sets."""
