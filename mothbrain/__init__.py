"""MothBrain: a nightly QLoRA 'System 1' adapter grown on an AI system's own lived material."""

import logging as _logging

__version__ = "0.1.0"

# bitsandbytes warns on every import on CPUs with AVX512-BF16 that an optional hub-downloaded kernel
# is missing; we never download at run time, so the fallback it takes is the intended path.
_logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(_logging.ERROR)
