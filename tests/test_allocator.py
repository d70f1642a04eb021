"""saliencykit.allocator: large freed blocks kept for reuse, only where asked.

The setting is process-wide and cannot be undone, so each check of its effect
runs in a fresh Python process.
"""

from __future__ import annotations

import platform
import subprocess
import sys
import textwrap

import pytest

import saliencykit.cli as cli
from saliencykit import allocator

GLIBC_LINUX = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"

# Allocates a 64 MiB array (above glibc's largest dynamic mmap threshold, 32 MiB),
# frees it, and prints glibc's own account (mallinfo2) at both moments: bytes in
# blocks mapped on their own (``hblkhd``, given back to the system at ``free``)
# and free bytes kept in the heap (``fordblks``, reused by the next allocation).
MALLINFO_SCRIPT = textwrap.dedent(
    """
    import ctypes, sys
    import numpy as np
    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
            "uordblks", "fordblks", "keepcost")]
    mallinfo2 = ctypes.CDLL(None).mallinfo2
    mallinfo2.restype = MallInfo2
    if sys.argv[1] == "tuned":
        from saliencykit.allocator import reuse_freed_memory
        assert reuse_freed_memory() is True
        assert reuse_freed_memory() is True  # idempotent
    block = np.empty(64 << 20, dtype=np.uint8)
    block.fill(1)
    live = mallinfo2()
    del block
    freed = mallinfo2()
    print(live.hblkhd, freed.fordblks)
    """
)

BLOCK = 64 << 20


def _mallinfo(mode: str) -> tuple[int, int]:
    completed = subprocess.run(
        [sys.executable, "-c", MALLINFO_SCRIPT, mode], capture_output=True, text=True, timeout=120, check=True
    )
    mapped_while_live, kept_after_free = completed.stdout.split()
    return int(mapped_while_live), int(kept_after_free)


@pytest.mark.skipif(not GLIBC_LINUX, reason="mallopt and mallinfo2 are glibc's")
def test_freed_blocks_are_kept_for_reuse_instead_of_unmapped() -> None:
    mapped, kept = _mallinfo("default")
    # glibc's default: the block is mapped on its own and unmapped at free.
    assert mapped >= BLOCK and kept < BLOCK, (mapped, kept)
    mapped, kept = _mallinfo("tuned")
    # Kept blocks: it comes from the heap, and stays there free for the next call.
    assert mapped < BLOCK and kept >= BLOCK, (mapped, kept)


@pytest.mark.skipif(GLIBC_LINUX, reason="only where there is no glibc")
def test_other_platforms_are_left_alone() -> None:
    assert allocator.reuse_freed_memory() is False


def test_the_command_line_asks_for_it_and_the_library_does_not(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bool] = []
    monkeypatch.setattr(cli, "reuse_freed_memory", lambda: calls.append(True) or True)
    for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES"):
        monkeypatch.delenv(name, raising=False)
    cli._calm_libraries()
    assert calls == [True]
    # A user's own malloc settings are left as they are.
    for name, value in (
        ("MALLOC_MMAP_THRESHOLD_", "65536"),
        ("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=0"),
    ):
        with monkeypatch.context() as scoped:
            scoped.setenv(name, value)
            cli._calm_libraries()
    assert calls == [True]
    # The library never reaches for it: importing it and running a method does
    # not even load the module (the runs package loads it for its Ray workers only).
    code = textwrap.dedent(
        """
        import sys
        import numpy as np
        import saliencykit.core as saliency
        import saliencykit.metrics
        x = np.linspace(0, 1, 12, dtype=np.float32)
        def model(x_batch, call_model_args=None, expected_keys=None):
            return {saliency.INPUT_OUTPUT_GRADIENTS: np.ones_like(x_batch)}
        saliency.IntegratedGradients().GetMaskBatch(np.stack([x, x]), model, x_steps=5, batch_size=3)
        print("saliencykit.allocator" in sys.modules)
        """
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert completed.stdout.strip() == "False"
