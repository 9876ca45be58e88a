"""The slide catalogue and how slides arrive: ingest, resumable uploads, the conversion
worker that builds normalised pyramids."""
