"""Keep freed CPU memory in the process's heap (glibc), as a steady training loop wants.

torch's CPU tensors come from plain ``malloc``. With glibc's defaults, large freed blocks go
back to the OS (heap trimming, and blocks above a dynamic threshold served by ``mmap``), so
a step that frees its activations and gradients page-faults them in again in the next step.
:func:`keep_heap` turns that off for the process (``mallopt``: no trimming, blocks up to
32 MiB from the heap). Numbers are unchanged; only where memory comes from changes, and the
process keeps its peak heap.
"""
import ctypes
import ctypes.util
import functools
import platform

#: glibc ``mallopt`` parameters (malloc.h) and the values :func:`keep_heap` sets.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
TRIM_THRESHOLD = 2 ** 31 - 1           # never trim (mallopt takes an int)
MMAP_THRESHOLD = 32 * 2 ** 20          # glibc's largest allowed threshold on 64-bit


@functools.cache
def keep_heap() -> str:
    """Apply the setting once per process; returns what was done (for logs and records).

    It stays on for the rest of the process: glibc cannot go back to its dynamic threshold.
    Elsewhere than on glibc (macOS, musl) nothing is changed."""
    if platform.system() != 'Linux' or platform.libc_ver()[0] != 'glibc':
        return 'default (not glibc: malloc left as it is)'
    libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
    ok = (libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
          and libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1)
    return ('kept (glibc mallopt: no trim, mmap threshold 32 MiB)' if ok
            else 'default (mallopt refused)')
