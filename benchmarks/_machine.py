"""The machine a benchmark ran on: float32 and bfloat16 matmul GFLOP/s, CPU flags.

Every benchmark prints :func:`machine_line` next to its figures, so that figures from
different machines (an AVX-512 + BF16 host at ~470 float32 GFLOP/s, an AVX2 host at
~90) can be compared: time targets stated for the fast kind scale by the ratio of the
measured float32 peaks.
"""

from __future__ import annotations

import os
import time
from statistics import median
from typing import Any

#: The peak the issues' time targets are stated for (float32 GFLOP/s).
REFERENCE_GFLOPS = 470.0


def cpu_flags() -> dict[str, bool]:
    """AVX2 / AVX-512 / AVX-512 BF16 / AMX, from /proc/cpuinfo (Linux)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            flags = next((line.split(":", 1)[1].split() for line in fh
                          if line.startswith("flags")), [])
    except OSError:
        flags = []
    have = set(flags)
    return {"avx2": "avx2" in have, "avx512f": "avx512f" in have,
            "avx512_bf16": "avx512_bf16" in have, "amx": "amx_tile" in have}


def matmul_gflops(dtype: str = "float32", n: int = 2048, repeats: int = 5) -> float | None:
    """Median GFLOP/s of an ``n`` x ``n`` matmul in a ``tf.function`` (None if unsupported)."""
    import tensorflow as tf

    try:
        a = tf.random.stateless_normal((n, n), seed=(1, 2), dtype=tf.float32)
        a = tf.cast(a, dtype)
        f = tf.function(lambda x, y: tf.matmul(x, y)[:1, :1])
        f(a, a).numpy()
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            f(a, a).numpy()
            times.append(time.perf_counter() - t)
    except Exception:  # noqa: BLE001 - e.g. no bfloat16 kernels under an ISA cap
        return None
    return 2 * n**3 / median(times) / 1e9


def machine_report() -> dict[str, Any]:
    """Cores, CPU flags and matmul peaks (float32, bfloat16) of this machine, now."""
    return {"cpus": os.cpu_count(), **cpu_flags(),
            "float32_gflops": matmul_gflops("float32"),
            "bfloat16_gflops": matmul_gflops("bfloat16"),
            "onednn_cap": os.environ.get("ONEDNN_MAX_CPU_ISA")}


def machine_line(report: dict[str, Any] | None = None) -> str:
    """One line for a benchmark's header."""
    r = report or machine_report()
    flags = ", ".join(k for k in ("avx2", "avx512f", "avx512_bf16", "amx") if r.get(k))
    bf16 = r.get("bfloat16_gflops")
    scale = REFERENCE_GFLOPS / r["float32_gflops"] if r.get("float32_gflops") else None
    return (f"machine: {r['cpus']} CPUs [{flags or 'no AVX2'}]; 2048^2 matmul float32 "
            f"{r['float32_gflops']:.0f} GFLOP/s, bfloat16 "
            f"{'n/a' if bf16 is None else f'{bf16:.0f}'} GFLOP/s"
            + (f"; time targets stated for {REFERENCE_GFLOPS:.0f} GFLOP/s scale by "
               f"{scale:.2f}x here" if scale else ""))
