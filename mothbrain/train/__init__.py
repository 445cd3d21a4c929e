"""The train stage: QLoRA through trl, and the good-neighbour yielding."""
