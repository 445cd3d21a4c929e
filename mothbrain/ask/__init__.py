"""The coordinator: System 1 (the adapter), System 2 and the wiki asked together."""
