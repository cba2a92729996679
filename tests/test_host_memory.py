"""litemono.host_memory: freed memory stays in the process (counted as page faults), opt-outs."""
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"

# Rounds of malloc, touch, free of ~300 MiB in 1-24 MiB blocks (a training step's pattern in
# miniature); prints the first call's answer and the minor page faults of every round.
PROBE = r"""
import ctypes, json, resource, sys
sys.path.insert(0, sys.argv[1])
from litemono import host_memory
applied, message = host_memory.retain_freed_memory()
again = host_memory.retain_freed_memory()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
sizes = [(1 + (i * 7) % 24) << 20 for i in range(24)]
faults = []
for _ in range(6):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    blocks = [libc.malloc(size) for size in sizes]
    for block, size in zip(blocks, sizes):
        ctypes.memset(block, 1, size)
    for block in reversed(blocks):
        libc.free(block)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"applied": applied, "message": message, "same_again": again == (applied, message),
                  "reported": host_memory.applied(), "faults": faults}))
"""
PAGES_PER_ROUND = sum((1 + (i * 7) % 24) << 20 for i in range(24)) // 4096


def probe(**env):
    environ = {k: v for k, v in os.environ.items()
               if k not in ("LITEMONO_RETAIN_HOST_MEMORY", "GLIBC_TUNABLES")
               and not k.startswith("MALLOC_")}
    environ.update(env)
    done = subprocess.run([sys.executable, "-c", PROBE, str(ROOT)], capture_output=True,
                          text=True, env=environ, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not GLIBC, reason="glibc's mallopt only")
def test_freed_memory_is_reused_without_page_faults():
    out = probe()
    assert out["applied"] and out["reported"] and out["same_again"]
    assert "freed memory is kept" in out["message"]
    assert out["faults"][0] > PAGES_PER_ROUND // 2  # the first round touches new pages
    assert max(out["faults"][1:]) < PAGES_PER_ROUND // 100  # later rounds reuse them


@pytest.mark.skipif(not GLIBC, reason="glibc's mallopt only")
def test_opt_out_keeps_glibc_defaults_which_fault_every_round():
    out = probe(LITEMONO_RETAIN_HOST_MEMORY="0")
    assert not out["applied"] and not out["reported"] and out["same_again"]
    assert "LITEMONO_RETAIN_HOST_MEMORY=0" in out["message"]
    # the control: with glibc's defaults the memory goes back to the OS and faults in again
    assert min(out["faults"][1:]) > PAGES_PER_ROUND // 2


@pytest.mark.parametrize("env", [{"MALLOC_TRIM_THRESHOLD_": "1000000"},
                                 {"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=65536"}])
def test_the_users_own_malloc_settings_win(env):
    out = probe(**env)
    assert not out["applied"]
    assert "chosen by the environment" in out["message"]
    assert next(iter(env)) in out["message"]


def test_benchmarks_report_the_setting():
    import torch

    from litemono import benchmark, host_memory

    applied, message = host_memory.retain_freed_memory()
    assert benchmark.environment(torch.device("cpu"))["host_memory_retained"] is applied
    assert message.startswith("host memory: ")
