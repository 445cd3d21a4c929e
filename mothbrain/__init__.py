"""MothBrain: a nightly QLoRA 'System 1' adapter grown on an AI system's own lived material.

Importing the package changes nothing in the process: settings for libraries are made where those
libraries are used (preprocess's allocator in mothbrain/data/dedup.py, the model libraries' logging
in mothbrain/models/loading.py).
"""

__version__ = "0.1.0"
