"""Inference: model registry, job protocol and GPU workers.

Not built yet. It will depend on tiles and storage only (never on exchange), and it is the
only package that imports torch; see ../shared/DESIGN.md, "Inference"."""
