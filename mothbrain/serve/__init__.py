"""The OpenAI-compatible endpoint that serves the current adapter."""
