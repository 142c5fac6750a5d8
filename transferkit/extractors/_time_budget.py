"""A time budget for Keras training: plan the epochs from timed batches, re-plan as it runs.

:class:`TimeBudget` is a Keras callback factory for :class:`~transferkit.extractors.CifarCNN`'s
``max_minutes`` (and any trainer with a one-cycle schedule whose ``total_steps`` is a
variable). Invariants: the budget counts everything from the trainer's start (imports,
building, tracing, validation); 95% of it is planned (:data:`BUDGET_USE`); the schedule
always ends at the last planned step; training stops mid-epoch only when the next batch
would end past the whole budget.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from .._lazy import import_keras

__all__ = ["BUDGET_USE", "TimeBudget"]

#: Fraction of a time budget planned for training; the rest absorbs a slower machine.
BUDGET_USE = 0.95


class TimeBudget:
    """Keras callback: time the first batches, then fit the epochs into the budget.

    The budget counts everything from the start of ``fit``: importing TensorFlow,
    building the model, tracing it (the first batch) and any validation. Tracing is a
    one-off cost, large on a slow CPU, so epoch times are planned from steady batches
    only: the first epoch counts without its first batch's excess, later epochs are
    measured whole. Plans are re-made at every epoch's end (shorter if the
    machine slowed down, longer if it sped up; the schedule always ends at the last
    step), and training stops mid-epoch only as a last resort, when the next batch
    would end past the budget.
    """

    _CALIBRATION_BATCHES = 6
    #: Shuffling, callbacks and validation on top of the batches of an epoch.
    _EPOCH_OVERHEAD = 1.08

    def __init__(
        self, budget_s: float, t_start: float, steps: int, epochs: int, schedule: Any,
        *, min_epochs: int | None = None, verbose: int = 0, initial_epoch: int = 0,
    ) -> None:
        keras = import_keras()

        parent = self

        class _Callback(keras.callbacks.Callback):
            def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
                parent._batch_begin(batch)

            def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
                parent._batch_end(batch, self.model)

            def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
                parent._epoch_end(epoch, self.model)

        self.callback = _Callback()
        self.budget_s = budget_s
        self.t_start = t_start
        self.steps = steps
        self.epochs = epochs
        self.max_epochs = epochs
        self.schedule = schedule
        self.min_epochs = min_epochs
        #: Set when fewer than ``min_epochs`` fit: training stopped after calibration.
        self.too_slow = False
        #: Set when training was stopped mid-epoch to keep within the budget.
        self.cut_short = False
        self.verbose = verbose
        #: Epochs done before this fit (a resumed run): plans count from there.
        self.initial_epoch = int(initial_epoch)
        self._times: list[float] = []  # steady batch times (the first batch is tracing)
        self._t_batch = 0.0
        self._global_batch = 0
        self._decided = False
        self._epoch_times: list[float] = []  # steady epoch times (the first one corrected)
        self._first_batch_end: float | None = None
        self._last_epoch_end: float | None = None

    def _batch_s(self) -> float:
        recent = self._times[-4 * self._CALIBRATION_BATCHES:]
        return float(np.median(recent)) if recent else 0.0

    def _steady_epoch_s(self) -> float:
        """Expected time of one more epoch, without the one-off tracing."""
        estimate = self._batch_s() * self.steps * self._EPOCH_OVERHEAD
        if not self._epoch_times:
            return estimate
        # A machine's speed may switch between levels (other jobs, shared cores):
        # expect the mean epoch so far, or the last one if that was slower.
        return max(float(np.mean(self._epoch_times)), self._epoch_times[-1])

    def _set_epochs(self, epochs: int) -> None:
        self.epochs = epochs
        if self.schedule is not None:  # the schedule always ends at the last step
            self.schedule.total_steps.assign(float(epochs * self.steps))

    def _epoch_end(self, epoch: int, model: Any) -> None:
        """Re-plan with the measured epoch time, so the budget holds under load too."""
        now = time.perf_counter()
        done = epoch + 1
        if self._last_epoch_end is not None:
            self._epoch_times.append(now - self._last_epoch_end)
        elif self._first_batch_end is not None:
            # The first epoch without its tracing: its first batch counted as a steady one.
            self._epoch_times.append(now - self._first_batch_end + self._batch_s())
        self._last_epoch_end = now
        if self._decided and not self.cut_short:
            epoch_s = self._steady_epoch_s()
            left = BUDGET_USE * self.budget_s - (now - self.t_start)
            fit = int(left // epoch_s) if epoch_s > 0 else self.max_epochs
            feasible = min(self.max_epochs, done + max(0, fit))
            if feasible != self.epochs:  # longer if it sped up, shorter if it slowed down
                self._set_epochs(max(done, feasible))
        if done >= self.epochs or self.cut_short:
            model.stop_training = True

    def _batch_begin(self, batch: int) -> None:
        self._t_batch = time.perf_counter()

    def _batch_end(self, batch: int, model: Any) -> None:
        now = time.perf_counter()
        self._global_batch += 1
        if self._global_batch == 1:
            self._first_batch_end = now
        if self._global_batch > 1:  # the first batch includes tracing: not representative
            self._times.append(now - self._t_batch)
        next_batch = max(self._batch_s(), self._times[-1]) if self._times else 0.0
        if now - self.t_start + next_batch > self.budget_s:
            # Last resort (the plan leaves 5% spare): the next batch, if it takes as long
            # as the last or the typical one, would end past the budget (or building and
            # tracing alone took all of it).
            self.cut_short = True
            model.stop_training = True
            return
        if self._decided:
            return
        if len(self._times) >= min(self._CALIBRATION_BATCHES, max(1, self.steps - 1)):
            per_batch = self._batch_s()
            epoch_s = per_batch * self.steps * self._EPOCH_OVERHEAD
            # Batches of the first epoch still to run, then whole epochs.
            first_left = per_batch * max(0, self.steps - (self._global_batch % self.steps
                                                          or self.steps))
            spent = now - self.t_start
            left = BUDGET_USE * self.budget_s - spent - first_left
            fitting = 1 + int(left // epoch_s) if epoch_s > 0 else self.max_epochs
            if left < 0:
                fitting = 1
            if self.min_epochs is not None and fitting < min(self.min_epochs, self.max_epochs):
                self.too_slow = True
                model.stop_training = True
                if self.verbose:
                    print(
                        f"time budget {self.budget_s / 60:.1f} min: ~{epoch_s:.0f} s per "
                        f"epoch, only {fitting} epoch(s) fit: switching to a narrower network",
                        flush=True,
                    )
                return
            self._set_epochs(max(1, min(self.max_epochs, self.initial_epoch + fitting)))
            self._decided = True
            if self.verbose:
                print(
                    f"time budget {self.budget_s / 60:.1f} min: {per_batch * 1000:.0f} ms per "
                    f"batch, ~{epoch_s:.0f} s per epoch -> {self.epochs} epoch(s)", flush=True,
                )
