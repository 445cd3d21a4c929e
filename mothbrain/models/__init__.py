"""Base-model location and loading, the tiny demo/test builder, the memory estimate."""
