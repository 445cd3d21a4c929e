"""The document store (documents.py): ingest writes it, preprocess, dream, ask, the wiki-worker and the tiny
base read it. It imports no stage."""
