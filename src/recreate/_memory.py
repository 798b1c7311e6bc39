"""Hand memory that conversion freed back to the operating system.

Conversion makes many short-lived buffers: the activations of the shape passes (torch) and,
per weight tensor, its transposed copy (numpy) and TensorFlow's copy of that (assign). glibc
keeps freed blocks below its mmap threshold, which rises to the largest block freed so far, in
the heap for reuse; freed blocks scattered between live ones (Keras weights, Python objects)
and in the allocator's per-thread arenas are rarely reused in full. Measured on ResNet-50
(bench_models): the weight transfer grew the resident set by 42-58 MB although it holds one
tensor's temporaries at a time; `malloc_trim` after each step brings that to about 2 MB.

`malloc_trim(0)` only returns free memory (the next allocation of those pages faults them in
again), so calling it is safe at any point; it is a no-op where glibc is not the allocator
(macOS, musl, Windows). A call costs about 1 ms on a fragmented heap, so long loops use
`Releaser`, which calls it once per `every` bytes of temporaries.
"""

from __future__ import annotations

import ctypes
import ctypes.util

_trim = None
try:
    _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    _trim = _libc.malloc_trim
    _trim.argtypes = [ctypes.c_size_t]
    _trim.restype = ctypes.c_int
except (OSError, AttributeError):  # not glibc
    _trim = None


def release_free_memory() -> None:
    """Return the allocator's free pages to the OS (glibc `malloc_trim(0)`; no-op elsewhere)."""
    if _trim is not None:
        _trim(0)


class Releaser:
    """Calls `release_free_memory` each time `every` bytes of temporaries have been made."""

    def __init__(self, every: int = 4 << 20):
        self.every = every
        self.pending = 0

    def add(self, nbytes: int) -> None:
        self.pending += nbytes
        if self.pending >= self.every:
            self.pending = 0
            release_free_memory()
