"""The ingest stage: read new or changed material from the sources into the document store."""
