"""The one lock every model or adapter construction holds.

peft's and accelerate's empty-weight contexts swap `nn.Module.register_parameter` for the whole
process; two threads building models at once (ask's System 1 and wiki layers, serve's reload) can
interleave the swap and leave every later model on the meta device. A module of its own, so the
tiny-model builder and the loader share it without importing each other.
"""

from __future__ import annotations

import threading

MODEL_BUILD_LOCK = threading.RLock()
