"""The wiki-worker: scan a markdown wiki for typed proposals, review them, merge the accepted ones."""
