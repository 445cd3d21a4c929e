"""The proposals queue (queue.py): dreams and the wiki-worker's proposals, two kinds in one staging queue that
the dream stage and the wiki-worker write and the review commands read. It imports no stage."""
