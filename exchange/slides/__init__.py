"""The slide catalogue and how slides arrive: cases, ingest, resumable uploads, the drop
folder watched for scanners' files, the conversion worker that builds normalised pyramids."""
