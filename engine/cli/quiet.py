"""A quiet headless CLI: library chatter (progress bars of weight loading, deprecation
and future warnings, optional-kernel notices) never reaches the user's terminal; ftwb's
own messages and errors do. Set before the libraries import, so nothing heavy loads here.
FTWB_VERBOSE=1 leaves the libraries as they are (for debugging)."""
from __future__ import annotations

import logging
import os
import warnings


def quiet_libraries() -> None:
    if os.environ.get("FTWB_VERBOSE") == "1":
        return
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers' tqdm follows it
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    for category in (FutureWarning, DeprecationWarning, UserWarning):
        warnings.filterwarnings("ignore", category=category)
    for name in ("bitsandbytes", "peft", "accelerate", "torch", "datasets"):
        logging.getLogger(name).setLevel(logging.ERROR)
