"""The traceback kept with an unexpected exception in node code: node frames only, capped,
redacted."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import traceback
from pathlib import Path

from conveyor.nodes import base
from conveyor.redaction import Redactor

MAX_FRAMES = 20
MAX_CHARS = 4000
# The engine's own frames and the plumbing between it and node code (the sync adapter, the
# event loop, the thread pool) say nothing about the bug; they lead every traceback.
_PLUMBING = (
    str(Path(__file__).parent) + "/",
    base.__file__,
    str(Path(asyncio.__file__).parent) + "/",
    str(Path(concurrent.futures.__file__).parent) + "/",
    threading.__file__,
)


def node_traceback(exc: BaseException, redact: Redactor) -> str:
    """The frames from the first one in node code down to where ``exc`` was raised (all of
    them if none is node code: then it is the engine's own bug), and the exception line."""
    frames = traceback.extract_tb(exc.__traceback__)
    first = next(
        (i for i, f in enumerate(frames) if not f.filename.startswith(_PLUMBING)), len(frames)
    )
    kept = frames[first:] or frames
    lines = ["Traceback (most recent call last):\n"]
    if len(kept) > MAX_FRAMES:
        lines.append(f"  ... {len(kept) - MAX_FRAMES} frames omitted ...\n")
        kept = kept[-MAX_FRAMES:]
    lines += traceback.format_list(kept)
    lines += traceback.format_exception_only(type(exc), exc)
    text = redact("".join(lines))
    if len(text) > MAX_CHARS:
        # The end (the innermost frames and the exception) is what a developer reads first.
        text = lines[0] + "  ...\n" + text[-(MAX_CHARS - len(lines[0]) - 6) :]
    return text.rstrip("\n")
