"""Keep the host memory a training step frees, instead of returning it to the OS every step.

A CPU training step allocates and frees the same few GiB each time. With glibc's default
malloc, freeing the top of the heap past ``M_TRIM_THRESHOLD`` (which glibc raises only as far
as twice the largest freed mmap chunk, 64 MiB at most) hands the pages back to the kernel, and
the next step faults every one of them in again, zeroed. Large tensors (above the mmap
threshold, which starts at 128 KiB and rises only as such chunks are freed) are mmap'd and
unmapped per call, with the same cost. On the 2-core CI machine a warm lite-mono 640x192
batch-2 float32 step took 10-27 thousand page faults and 0.78-0.86 s with the defaults, none
and 0.68 s with this setting (``docs/performance.md``).

:func:`retain_freed_memory` sets, once per process, the trim threshold to its maximum (freed
memory stays in the process, so the peak of one step is reused by the next) and the mmap
threshold to glibc's 64-bit maximum of 32 MiB (tensors below it come from the heap). The process
then holds its peak footprint, which a training loop reaches every step anyway. Forked data
loader workers inherit the setting.

It does nothing, and says why, where the C library is not glibc, where the user already chose
malloc settings (``MALLOC_TRIM_THRESHOLD_``, ``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TOP_PAD_`` or a
``glibc.malloc`` entry in ``GLIBC_TUNABLES``) or when ``LITEMONO_RETAIN_HOST_MEMORY=0``.
"""
from __future__ import annotations

import ctypes
import os
import platform
import sys
from typing import Optional, Tuple

M_TRIM_THRESHOLD = -1  # mallopt parameter numbers, from glibc's <malloc.h>
M_MMAP_THRESHOLD = -3
TRIM_THRESHOLD = 2 ** 31 - 1  # mallopt takes an int: the largest is "never trim"
MMAP_THRESHOLD = 32 << 20  # glibc's upper limit on 64-bit (HEAP_MAX_SIZE / 2)
OPT_OUT = "LITEMONO_RETAIN_HOST_MEMORY"
USER_MALLOC_ENV = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_")

_applied: Optional[Tuple[bool, str]] = None


def _reason_to_skip() -> Optional[str]:
    if os.environ.get(OPT_OUT, "1").strip().lower() in ("0", "false", "no", "off"):
        return f"{OPT_OUT}={os.environ[OPT_OUT]}"
    chosen = [name for name in USER_MALLOC_ENV if name in os.environ]
    if "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        chosen.append("GLIBC_TUNABLES")
    if chosen:
        return f"malloc settings chosen by the environment ({', '.join(chosen)})"
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return "the C library is not glibc"
    return None


def retain_freed_memory() -> Tuple[bool, str]:
    """Apply the settings of the module docstring; returns ``(applied, what was done or why
    not)``. Idempotent: later calls return the first call's answer."""
    global _applied
    if _applied is not None:
        return _applied
    reason = _reason_to_skip()
    if reason is None:
        try:
            libc = ctypes.CDLL("libc.so.6")  # glibc's soname on x86-64, aarch64 and most others
            ok = (libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
                  and libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1)
        except (OSError, AttributeError):
            ok = False
        _applied = ((True, "host memory: freed memory is kept (glibc trim threshold max, mmap "
                           f"threshold {MMAP_THRESHOLD >> 20} MiB; {OPT_OUT}=0 turns this off)")
                    if ok else (False, "host memory: glibc's mallopt failed; defaults kept"))
    else:
        _applied = (False, f"host memory: malloc defaults kept: {reason}")
    return _applied


def applied() -> bool:
    """Whether :func:`retain_freed_memory` changed this process's malloc settings."""
    return bool(_applied and _applied[0])
