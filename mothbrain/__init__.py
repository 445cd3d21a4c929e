"""MothBrain: a nightly QLoRA 'System 1' adapter grown on an AI system's own lived material."""

__version__ = "0.1.0"
