"""MothBrain: a nightly QLoRA 'System 1' adapter grown on an AI system's own lived material."""

import logging as _logging
import os as _os

__version__ = "0.1.0"

# bitsandbytes warns on every import on CPUs with AVX512-BF16 that an optional hub-downloaded kernel
# is missing; we never download at run time, so the fallback it takes is the intended path.
_logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(_logging.ERROR)

# rensa (the dedup index) and pyarrow allocate through mimalloc, which by default hands freed pages
# back to the system only on a later allocation in the same heap. The dedup index (~200 MB on a
# 100 MB archive) is freed once, at the end of preprocess's document pass, with no allocation after
# it, so the process kept it to the end and concept mining stacked on top (peak 600 -> 420 MB there).
# Read when each library's mimalloc starts, i.e. when it is first imported: before any of ours.
_os.environ.setdefault("MIMALLOC_PURGE_DELAY", "0")
