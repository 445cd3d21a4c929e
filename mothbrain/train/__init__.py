"""The train stage: QLoRA through trl (the good-neighbour yielding it uses is core/neighbour.py)."""
