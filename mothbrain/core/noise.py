"""The libraries' warnings: kept off the terminal unless `--verbose`.

torch, transformers, peft, bitsandbytes and friends warn about their own deprecations and defaults
("torch.jit.script_method is deprecated", "generation flags are not valid", tokenizer lengths): noise to
an operator reading a night's output. Every command runs inside `library_warnings(verbose)`, set up when
the command starts (not at import, so a library imported later is covered and tests see the defaults).
MothBrain itself never speaks through the `warnings` module (its warnings are in each report), so hiding
every Python warning hides only the libraries'.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator

# the loggers of the libraries we load; a child ("transformers.generation.utils") inherits the level
LIBRARY_LOGGERS = (
    "transformers",
    "torch",
    "peft",
    "bitsandbytes",
    "accelerate",
    "trl",
    "datasets",
    "huggingface_hub",
    "sentence_transformers",
    "httpx",
)

_verbose = False


def verbose() -> bool:
    """True inside `library_warnings(True)`: loaders must not silence the libraries then."""
    return _verbose


@contextlib.contextmanager
def library_warnings(show: bool) -> Iterator[None]:
    """Hide (show=False) or show (show=True) the libraries' warnings and warning-level log lines, until exit."""
    global _verbose
    saved_verbose, _verbose = _verbose, show
    levels = {name: logging.getLogger(name).level for name in LIBRARY_LOGGERS}
    # transformers sets its logger's level from this variable the first time it configures its logging,
    # which may happen inside the command (after our setLevel), so it is said there too
    saved_env = os.environ.get("TRANSFORMERS_VERBOSITY")
    os.environ["TRANSFORMERS_VERBOSITY"] = "warning" if show else "error"
    with warnings.catch_warnings():
        # "default": each warning once per place, deprecations included (Python hides those outside __main__)
        warnings.simplefilter("default" if show else "ignore")
        for name in LIBRARY_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING if show else logging.ERROR)
        try:
            yield
        finally:
            _verbose = saved_verbose
            for name, level in levels.items():
                logging.getLogger(name).setLevel(level)
            if saved_env is None:
                os.environ.pop("TRANSFORMERS_VERBOSITY", None)
            else:
                os.environ["TRANSFORMERS_VERBOSITY"] = saved_env
