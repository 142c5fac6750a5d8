"""The pipelined extraction path: inputs read ahead, features written behind.

Extraction runs three stages at once, each on its own thread, joined by bounded
queues so memory stays flat however many images there are::

    reader thread             calling thread              writer thread (cache only)
    read / decode / check  -> backbone (compiled, TF   -> HDF5 rows + progress + flush
    batch k+1                 releases the GIL) batch k    batch k-1

* :func:`prefetch` runs an iterator on a background thread, at most ``depth``
  items ahead of its consumer. :meth:`BaseExtractor.iter_features` uses it to read,
  decode and check the next uint8 batch while the current one computes.
* :class:`BackgroundWriter` hands items to a writer thread through a bounded queue
  and writes them in order. :class:`~transferkit.cache.FeatureCache` uses it so the
  HDF5 writes of batch ``k`` overlap the computation of batch ``k + 1``.
* :func:`keras_dtype_policy` builds Keras models in bfloat16 (``dtype="bfloat16"`` or
  ``"mixed_bfloat16"`` on the extractors).

Nothing here imports TensorFlow at import time: extractors that are not compiled
(``compiled = False``) use the threads without it.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ._validation import check_positive_int

__all__ = [
    "COMPUTE_DTYPES",
    "BackgroundWriter",
    "cpu_has_bf16_flags",
    "cpu_supports_bf16",
    "onednn_cap_forbids_bf16",
    "onednn_isa_cap",
    "keras_dtype_policy",
    "prefetch",
]

#: Compute dtypes the Keras extractors accept. Features are float32 in every case.
#: ``"bfloat16"``: weights and activations in bfloat16; ``"mixed_bfloat16"``: float32
#: weights, bfloat16 activations (Keras' mixed precision).
COMPUTE_DTYPES = ("float32", "bfloat16", "mixed_bfloat16")

_POLL_SECONDS = 0.05


# ====================================================================================
# Reading ahead
# ====================================================================================
def prefetch(
    items: Iterable[Any], *, depth: int = 1, name: str = "transferkit-reader"
) -> Iterator[Any]:
    """Iterate ``items`` on a background thread, at most ``depth`` items ahead.

    The producer thread holds at most one item it is making plus ``depth`` finished
    ones in the queue, so at most ``depth + 1`` items exist beyond the one the
    consumer works on. Exceptions raised by ``items`` are re-raised in the consumer,
    at the position they occurred, with their traceback. Closing the returned
    generator (or dropping it) stops the thread after the item it is making.

    Parameters
    ----------
    items : iterable
        Iterated on the background thread only.
    depth : int, default=1
        Finished items waiting in the queue.
    name : str
        Thread name (shows in debuggers and ``threading.enumerate()``).

    Yields
    ------
    The items of ``items``, in order.
    """
    depth = int(check_positive_int("depth", depth))  # type: ignore[arg-type]
    q: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(kind: str, value: Any) -> bool:
        while not stop.is_set():
            try:
                q.put((kind, value), timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        iterator = iter(items)
        try:
            for item in iterator:
                if not put("item", item):
                    break
            else:
                put("done", None)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            put("error", exc)
        finally:
            close = getattr(iterator, "close", None)
            if callable(close):
                with contextlib.suppress(Exception):
                    close()  # a generator is closed on the thread that ran it

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            kind, value = q.get()
            if kind == "done":
                return
            if kind == "error":
                raise value
            yield value
            value = None  # drop the reference before waiting for the next item
    finally:
        stop.set()
        with contextlib.suppress(queue.Empty):
            while True:
                q.get_nowait()  # wake a producer blocked on a full queue
        thread.join()


# ====================================================================================
# Writing behind
# ====================================================================================
class BackgroundWriter:
    """Apply ``write(item)`` to items in order on a writer thread.

    :meth:`put` blocks while ``maxsize`` items wait, so a slow writer slows the
    producer instead of piling up memory. The first exception raised by ``write``
    stops the writer: later items are dropped, and :meth:`put` and :meth:`close`
    re-raise it (with :attr:`failed_item` telling which item failed).

    Parameters
    ----------
    write : callable
        Called once per item, on the writer thread, in ``put`` order.
    maxsize : int, default=2
        Items waiting to be written.
    name : str
        Thread name.
    """

    def __init__(
        self, write: Callable[[Any], None], *, maxsize: int = 2, name: str = "transferkit-writer"
    ) -> None:
        self._write = write
        self._queue: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=maxsize)
        self.error: BaseException | None = None
        self.failed_item: Any = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            last, item = self._queue.get()
            if last:
                return
            if self.error is not None:
                continue  # failed: drop the rest, keep draining so put() never blocks
            try:
                self._write(item)
            except BaseException as exc:  # noqa: BLE001 - handed to the producer
                self.error, self.failed_item = exc, item

    def put(self, item: Any) -> None:
        """Queue ``item`` for writing; raise the writer's error if it has failed."""
        if self.error is not None:
            raise self.error
        self._queue.put((False, item))

    def close(self) -> None:
        """Write every queued item, stop the thread; raise the writer's error if any."""
        if not self._closed:
            self._closed = True
            self._queue.put((True, None))
            self._thread.join()
        if self.error is not None:
            raise self.error

    @property
    def failed(self) -> bool:
        """Whether a write raised."""
        return self.error is not None


# ====================================================================================
# bfloat16
# ====================================================================================
def cpu_has_bf16_flags() -> bool:
    """Whether the CPU reports native bfloat16 (AVX-512 BF16 or AMX) in ``/proc/cpuinfo``."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def onednn_isa_cap() -> str | None:
    """The instruction-set cap set for oneDNN (``ONEDNN_MAX_CPU_ISA``), upper-case, or None."""
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")
    return cap.strip().upper() if cap and cap.strip() else None


def onednn_cap_forbids_bf16() -> bool:
    """Whether ``ONEDNN_MAX_CPU_ISA`` caps oneDNN below the ISAs with native bfloat16.

    ``AVX2``, ``AVX512_CORE``, ``AVX512_CORE_VNNI``... (used to see a slower CPU's kernels
    on a fast one) leave oneDNN without bfloat16 kernels even on a CPU that has them.
    """
    cap = onednn_isa_cap()
    if cap is None or cap in ("ALL", "DEFAULT"):
        return False
    return not any(part in cap for part in ("BF16", "FP16", "AMX", "AVX10"))


def cpu_supports_bf16() -> bool:
    """Whether bfloat16 runs natively here: a CPU with AVX-512 BF16 or AMX, on Linux.

    ``False`` elsewhere (or if ``/proc/cpuinfo`` is unreadable), and also when
    ``ONEDNN_MAX_CPU_ISA`` caps oneDNN below those instructions; bfloat16 then works
    emulated, usually slower than float32 (but see :func:`onednn_cap_forbids_bf16`).
    """
    return cpu_has_bf16_flags() and not onednn_cap_forbids_bf16()


@contextlib.contextmanager
def keras_dtype_policy(dtype: str) -> Iterator[None]:
    """Build Keras layers under the policy for ``dtype`` (one of :data:`COMPUTE_DTYPES`).

    Layers created inside the block compute in ``dtype`` (``"mixed_bfloat16"``: float32
    variables, bfloat16 computation); the previous global policy is restored on exit.
    """
    if dtype == "float32":
        yield
        return
    from ._lazy import import_keras

    keras = import_keras()
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(dtype)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
