"""Which source frames are the user's: everything outside the installed torch and recreate
packages. Compared by real path, never by folder name, so a user's project that lives in a
folder named `recreate` or `torch` (a fresh clone of this repository) still counts as theirs."""

from __future__ import annotations

import functools
import os
import re


@functools.cache
def _library_dirs() -> tuple[str, ...]:
    import importlib.util

    dirs = []
    for name in ("torch", "recreate"):
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin:
            dirs.append(os.path.realpath(os.path.dirname(spec.origin)) + os.sep)
    return tuple(dirs)


def is_user_file(filename: str) -> bool:
    if not filename or filename.startswith("<"):
        return False
    return not os.path.realpath(filename).startswith(_library_dirs())


_FRAME = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+)')


def user_line(stack_trace: str | None) -> str:
    """The innermost user frame line ('File "...", line N, in f') of a formatted stack trace."""
    if not stack_trace:
        return ""
    lines = [ln.strip() for ln in stack_trace.strip().splitlines() if ln.strip().startswith("File")]
    mine = [ln for ln in lines if (m := _FRAME.search(ln)) and is_user_file(m.group("file"))]
    return mine[-1] if mine else ""
