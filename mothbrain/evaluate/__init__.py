"""The eval stage: how a new adapter compares with the base and the current one."""
