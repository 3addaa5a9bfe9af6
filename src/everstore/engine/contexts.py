"""Code locations: which line of the user's program made a write.

A fact's context is ``module.function:line`` of the first frame outside everstore
(the CLI, whose demo writes like a user, counts as one). Looking one up is a
dictionary hit after the first time a given instruction writes.
"""

from __future__ import annotations

import sys
from types import CodeType, FrameType

__all__ = ["caller_context", "frame_context"]

#: (id of a code object, instruction offset) -> "module.function:line". Keyed by id
#: because hashing a code object costs more than the rest of the look-up; the code
#: objects are kept alive in _context_codes, so an id is never reused.
_contexts: dict[tuple[int, int], str] = {}
_context_codes: dict[int, CodeType] = {}
_internal_code: dict[CodeType, bool] = {}


def _is_internal(frame: FrameType) -> bool:
    code = frame.f_code
    internal = _internal_code.get(code)
    if internal is None:
        module = frame.f_globals.get("__name__", "")
        internal = module.startswith("everstore.") and not (
            module == "everstore.cli" or module.startswith("everstore.cli.")
        )
        _internal_code[code] = internal
    return internal


def frame_context(frame: FrameType | None) -> str:
    """``module.function:line`` of ``frame``, or of its first caller outside everstore.

    O(1) after the first call from a given instruction.

    :param frame: a frame, as ``sys._getframe(1)`` gives a function its caller's
    :return: the code location, or ``"<unknown>"`` if every frame is everstore's
    """
    if frame is None:
        return "<unknown>"
    text = _contexts.get((id(frame.f_code), frame.f_lasti))
    if text is not None:
        return text
    found: FrameType | None = frame
    while found is not None and _is_internal(found):
        found = found.f_back
    if found is None:
        return "<unknown>"
    module = found.f_globals.get("__name__", "?")
    text = f"{module}.{found.f_code.co_name}:{found.f_lineno}"
    # Only locations outside everstore are cached: an internal frame's answer
    # depends on its caller.
    _context_codes[id(found.f_code)] = found.f_code
    _contexts[(id(found.f_code), found.f_lasti)] = text
    return text


def caller_context() -> str:
    """The code location of whoever called the function that calls this (skipping
    everstore's own frames): what a layer's public method records as its context."""
    return frame_context(sys._getframe(2))
