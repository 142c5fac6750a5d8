"""Progress reporting for long operations: a bar on a terminal, plain lines in logs.

:class:`Progress` counts work done towards a total and shows the count, the rate and
the time left on a stream (standard error by default):

* on a terminal (``mode="bar"``), a :mod:`rich.progress` display redrawn in place (the
  description, a bar, the percentage, the count, the rate, the time spent, the time
  left and the postfix), left in place at the end with the summary line below it::

    extracting ━━━━━━━━━━━╸━━━━━━━━━━━━━━  45%  450/1000 images 36.2 images/s 00:12 00:15 left
    extracting: done, 1000 images in 00:27 (36.9 images/s)

* elsewhere (``mode="lines"``: a log file, CI, a pipe), a plain line every
  ``line_every`` percent (and at least every ``line_interval`` seconds), then a final
  one::

    extracting: 450/1000 images (45%), 36.2 images/s, 00:15 left
    extracting: done, 1000 images in 00:27 (36.9 images/s)

* ``mode="off"`` prints nothing.

``mode="auto"`` (the default) reads the ``TRANSFERKIT_PROGRESS`` environment variable
(``bar``, ``lines`` or ``off``) and otherwise picks ``bar`` when the stream is a
terminal and ``lines`` when it is not.

:func:`keras_callback` adapts the same display to Keras training (``model.fit``): a
bar per epoch on a terminal, one line per epoch elsewhere, each with the metrics,
the rate and the time left for the whole training.

The terminal drawing is Rich's (a dependency of Keras), imported only when a bar is
shown; the counting, the rate and time left (averaged since the start, so that they
exist even when updates are minutes apart, as with Dask shards, which Rich's 30-second
window does not give), the log lines and the Keras callback are this module's own.
Keras is imported by :func:`keras_callback` alone.

Examples
--------
>>> import io
>>> out = io.StringIO()
>>> with Progress(4, desc="work", unit="item", mode="lines", stream=out) as bar:
...     for _ in range(4):
...         bar.update()
>>> out.getvalue().splitlines()[-1].startswith("work: done, 4 items in")
True
"""

from __future__ import annotations

import atexit
import functools
import math
import os
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from ._validation import describe
from .exceptions import InvalidInputError, InvalidTypeError

__all__ = ["MODES", "PROGRESS_ENV", "Progress", "format_duration", "keras_callback", "resolve_mode"]

#: Display modes accepted by :class:`Progress` and :func:`keras_callback`.
MODES: tuple[str, ...] = ("auto", "bar", "lines", "off")

#: Environment variable that ``mode="auto"`` obeys (``bar``, ``lines`` or ``off``).
PROGRESS_ENV = "TRANSFERKIT_PROGRESS"

def format_duration(seconds: float | None) -> str:
    """``MM:SS`` (or ``H:MM:SS`` from one hour on); ``--:--`` when unknown.

    Parameters
    ----------
    seconds : float or None
        A duration; None, NaN and infinities are unknown.

    Returns
    -------
    str

    Examples
    --------
    >>> format_duration(75), format_duration(3725), format_duration(None)
    ('01:15', '1:02:05', '--:--')
    """
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "--:--"
    total = int(round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{minutes:02d}:{secs:02d}"


def _plural(unit: str) -> str:
    if not unit or unit.endswith("s"):
        return unit
    return unit + "es" if unit.endswith(("x", "ch", "sh")) else unit + "s"


def _format_rate(rate: float | None, unit: str) -> str:
    if rate is None or not math.isfinite(rate) or rate <= 0:
        return f"? {_plural(unit)}/s"
    if rate >= 1:
        return f"{rate:.1f} {_plural(unit)}/s" if rate < 100 else f"{rate:.0f} {_plural(unit)}/s"
    return f"{1 / rate:.1f} s/{unit}"


def _is_tty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def resolve_mode(mode: str = "auto", stream: TextIO | None = None) -> str:
    """The display a ``mode`` amounts to on ``stream``: ``"bar"``, ``"lines"`` or ``"off"``.

    Parameters
    ----------
    mode : {"auto", "bar", "lines", "off"}, default="auto"
        ``"auto"`` obeys ``$TRANSFERKIT_PROGRESS`` when it holds ``bar``, ``lines`` or
        ``off``, and otherwise gives ``"bar"`` on a terminal, ``"lines"`` elsewhere.
    stream : text stream, optional
        Where the progress goes; standard error by default.

    Returns
    -------
    str
    """
    if not isinstance(mode, str) or mode not in MODES:
        raise InvalidInputError(f"`mode` must be one of {list(MODES)}; received {describe(mode)}.")
    if mode != "auto":
        return mode
    env = os.environ.get(PROGRESS_ENV, "").strip().lower()
    if env in ("bar", "lines", "off"):
        return env
    return "bar" if _is_tty(sys.stderr if stream is None else stream) else "lines"


def _check_number(name: str, value: Any, *, minimum: float, allow_none: bool = False) -> Any:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidTypeError(f"`{name}` must be a number; received {describe(value)}.")
    if not math.isfinite(value) or value < minimum:
        raise InvalidInputError(f"`{name}` must be a number >= {minimum}; received {value!r}.")
    return value


class Progress:
    """Count work towards a total and show it with its rate and the time left.

    Parameters
    ----------
    total : int or None, default=None
        Amount of work; None when unknown (no percentage and no time left then).
    desc : str, default=""
        What is being done, shown first (e.g. ``"extracting"``).
    unit : str, default="it"
        Name of one unit of work, singular (``"image"``, ``"batch"``).
    initial : int, default=0
        Work already done, e.g. by an interrupted run being resumed. It counts
        towards the total but not towards the rate.
    mode : {"auto", "bar", "lines", "off"}, default="auto"
        See :func:`resolve_mode`.
    stream : text stream, optional
        Where to write; standard error by default.
    line_every : float, default=10
        In ``"lines"`` mode, percent of the total between two lines.
    line_interval : float, default=60
        In ``"lines"`` mode, the most seconds between two lines (and, with an
        unknown total, the time between lines).
    min_interval : float, default=0.1
        In ``"bar"`` mode, the least seconds between two redraws prompted by updates
        (between updates the display redraws itself as often, at most ten times a
        second, so that the times keep moving).
    clock : callable, optional
        Returns the time in seconds (default :func:`time.monotonic`); for tests.

    Attributes
    ----------
    n : int
        Work done so far, ``initial`` included.

    Examples
    --------
    >>> with Progress(len(files), desc="reading", unit="file") as bar:  # doctest: +SKIP
    ...     for f in files:
    ...         read(f)
    ...         bar.update()
    """

    def __init__(
        self,
        total: int | None = None,
        *,
        desc: str = "",
        unit: str = "it",
        initial: int = 0,
        mode: str = "auto",
        stream: TextIO | None = None,
        line_every: float = 10.0,
        line_interval: float = 60.0,
        min_interval: float = 0.1,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if total is not None and (
            isinstance(total, bool) or not isinstance(total, int) or total < 0
        ):
            raise InvalidInputError(
                f"`total` must be a non-negative integer or None; received {describe(total)}."
            )
        if isinstance(initial, bool) or not isinstance(initial, int) or initial < 0:
            raise InvalidInputError(
                f"`initial` must be a non-negative integer; received {describe(initial)}."
            )
        for name, value in (("desc", desc), ("unit", unit)):
            if not isinstance(value, str):
                raise InvalidTypeError(f"`{name}` must be a string; received {describe(value)}.")
        _check_number("line_every", line_every, minimum=0.01)
        _check_number("line_interval", line_interval, minimum=0)
        _check_number("min_interval", min_interval, minimum=0)
        self.total = total
        self.desc = desc
        self.unit = unit
        self.initial = initial
        self.n = initial
        self.stream = sys.stderr if stream is None else stream
        self.mode = resolve_mode(mode, self.stream)
        self.line_every = float(line_every)
        self.line_interval = float(line_interval)
        self.min_interval = float(min_interval)
        self.postfix = ""
        self._clock = clock or time.monotonic
        self._start = self._clock()
        self._last_draw = -math.inf
        self._last_line_time = self._start
        self._next_line_pct = self._following_step(self._percent() or 0.0)
        self._rich: Any = None  # the rich.progress.Progress of "bar" mode, once shown
        self.closed = False

    # ------------------------------------------------------------------ numbers
    @property
    def elapsed(self) -> float:
        """Seconds since the start."""
        return max(0.0, self._clock() - self._start)

    @property
    def rate(self) -> float | None:
        """Units per second since the start (resumed work excluded); None before any."""
        done = self.n - self.initial
        elapsed = self.elapsed
        if done <= 0 or elapsed <= 0:
            return None
        return done / elapsed

    @property
    def eta(self) -> float | None:
        """Seconds left at the current rate; None when unknown."""
        rate = self.rate
        if self.total is None or rate is None:
            return None
        return max(0.0, (self.total - self.n) / rate)

    def _percent(self) -> float | None:
        if not self.total:
            return None
        return 100.0 * min(self.n, self.total) / self.total

    def _following_step(self, pct: float) -> float:
        return (math.floor(pct / self.line_every + 1e-9) + 1) * self.line_every

    # ------------------------------------------------------------------ updates
    def update(self, n: int = 1) -> None:
        """Add ``n`` units of work done."""
        self.update_to(self.n + n)

    def update_to(self, n: int) -> None:
        """Set the work done to ``n`` (e.g. the end offset of the last batch)."""
        if isinstance(n, bool) or not isinstance(n, int):
            raise InvalidTypeError(f"`n` must be an integer; received {describe(n)}.")
        self.n = n
        if self.closed or self.mode == "off":
            return
        now = self._clock()
        if self.mode == "bar":
            redraw = now - self._last_draw >= self.min_interval or n == self.total
            if redraw:
                self._last_draw = now
            self._show(completed=n, refresh=redraw)
            return
        pct = self._percent()
        due = now - self._last_line_time >= self.line_interval > 0
        if pct is not None and pct >= self._next_line_pct and pct < 100:
            due = True
        if due and (pct is None or pct < 100):
            self._write_line(self.status())
            self._last_line_time = now
            if pct is not None:
                self._next_line_pct = self._following_step(pct)

    def set_postfix(self, text: str) -> None:
        """Text shown after the numbers (e.g. ``"loss 0.42"``)."""
        self.postfix = str(text)
        if self._rich is not None:
            self._show(postfix=self.postfix)

    # ------------------------------------------------------------------ text
    def status(self) -> str:
        """The progress as one plain line (what ``"lines"`` mode prints)."""
        unit = _plural(self.unit)
        head = f"{self.desc}: " if self.desc else ""
        if self.total is None:
            text = f"{head}{self.n} {unit}, {_format_rate(self.rate, self.unit)}"
        else:
            pct = self._percent() or 0.0
            text = (
                f"{head}{self.n}/{self.total} {unit} ({pct:.0f}%), "
                f"{_format_rate(self.rate, self.unit)}, {format_duration(self.eta)} left"
            )
        return f"{text}, {self.postfix}" if self.postfix else text

    # ------------------------------------------------------------------ bar (rich)
    _transient = False  # True: the bar is erased on close (keras_callback's epoch bars)

    def _show(self, **changes: Any) -> None:
        """Start the rich display if need be, then pass ``changes`` to its task."""
        try:
            if self._rich is None:
                self._rich = _rich_display(self)
                atexit.register(self._stop_display)  # e.g. a Keras fit interrupted
            if changes:
                self._rich.update(self._rich.task_ids[0], **changes)
        except ImportError:  # no Rich (Keras brings it): plain lines will do
            self.mode = "lines"
        except (OSError, ValueError):  # a closed or broken stream: progress is optional
            self._stop_display()
            self.mode = "off"

    def _stop_display(self) -> None:
        display, self._rich = self._rich, None
        if display is not None:
            atexit.unregister(self._stop_display)
            try:
                display.stop()
            except (OSError, ValueError):
                self.mode = "off"

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # a closed or broken stream: progress is optional
            self.mode = "off"

    def _write_line(self, text: str) -> None:
        self._write(text + "\n")

    # ------------------------------------------------------------------ ending
    def close(self, message: str | None = None) -> None:
        """Finish the display.

        Parameters
        ----------
        message : str, optional
            Final line, printed below the bar (left as it ends, ``"bar"``) or after
            the other lines (``"lines"``); by default a summary of the work done, its
            time and rate.
        """
        if self.closed:
            return
        if self.mode == "bar":
            self._show(completed=self.n, postfix=self.postfix)  # the final state
            self._stop_display()
        self.closed = True
        if self.mode == "off":
            return
        if message is None:
            done = self.n - self.initial
            resumed = f" (resumed at {self.initial})" if self.initial else ""
            head = f"{self.desc}: " if self.desc else ""
            rate = f" ({_format_rate(self.rate, self.unit)})" if done > 0 else ""
            message = (
                f"{head}done, {self.n} {_plural(self.unit)}{resumed} in "
                f"{format_duration(self.elapsed)}{rate}"
            )
        self._write_line(message)

    def __enter__(self) -> Progress:
        if self.mode == "bar" and not self.closed:
            self._show()  # the bar appears at once, at its initial count
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
            return
        what = "interrupted" if issubclass(exc_type, KeyboardInterrupt) else "stopped"
        total = "" if self.total is None else f"/{self.total}"
        head = f"{self.desc}: " if self.desc else ""
        self.close(f"{head}{what} at {self.n}{total} {_plural(self.unit)}")

    def __repr__(self) -> str:
        return (
            f"Progress(n={self.n}, total={self.total}, desc={self.desc!r}, mode={self.mode!r})"
        )


# --------------------------------------------------------------------------- Rich


@functools.cache
def _computed_column() -> type:
    from rich.progress import ProgressColumn
    from rich.table import Column
    from rich.text import Text

    class Computed(ProgressColumn):
        """A column whose text a function gives at each redraw."""

        def __init__(self, text: Callable[[], str], style: str) -> None:
            super().__init__(Column(no_wrap=True))
            self.text, self.style = text, style

        def render(self, task: Any) -> Text:
            return Text(self.text(), style=self.style)

    return Computed


def _rich_display(bar: Progress) -> Any:
    """Start a ``rich.progress.Progress`` showing ``bar`` on ``bar.stream``; returns it."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, TaskProgressColumn, TextColumn
    from rich.progress import Progress as RichProgress
    from rich.table import Column

    computed = _computed_column()
    display = RichProgress(
        TextColumn("{task.description}", markup=False),
        BarColumn(bar_width=None),  # the bar takes the room the other columns leave
        TaskProgressColumn(),
        MofNCompleteColumn(table_column=Column(no_wrap=True)),
        TextColumn("{task.fields[unit]}", markup=False),
        # Rate and times from `bar`: the same numbers as the log lines and the summary.
        computed(lambda: _format_rate(bar.rate, bar.unit), "progress.data.speed"),
        computed(lambda: format_duration(bar.elapsed), "progress.elapsed"),
        computed(
            lambda: "" if bar.total is None else f"{format_duration(bar.eta)} left",
            "progress.remaining",
        ),
        TextColumn("{task.fields[postfix]}", markup=False),
        console=Console(file=bar.stream),
        refresh_per_second=1 / max(bar.min_interval, 0.1),
        transient=bar._transient,
        redirect_stdout=False,  # results on standard output must stay there
        redirect_stderr=False,
        get_time=bar._clock,
    )
    display.add_task(
        bar.desc, total=bar.total, completed=bar.n, unit=_plural(bar.unit), postfix=bar.postfix
    )
    display.start()
    return display


# --------------------------------------------------------------------------- Keras


def _format_logs(logs: Mapping[str, Any] | None) -> str:
    parts = []
    for key, value in (logs or {}).items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if key == "learning_rate":
            continue
        parts.append(f"{key} {number:.4f}")
    return ", ".join(parts)


class _EpochProgress(Progress):
    """An epoch's bar, erased at the end of the epoch for the epoch's line."""

    _transient = True


_KERAS_CLASS: type | None = None


def _keras_class() -> type:
    global _KERAS_CLASS
    if _KERAS_CLASS is not None:
        return _KERAS_CLASS
    from ._lazy import import_keras

    keras = import_keras()

    class KerasProgress(keras.callbacks.Callback):
        """Keras callback showing epochs and batches with rate and time left."""

        def __init__(self, desc: str, mode: str, stream: TextIO | None) -> None:
            super().__init__()
            self.desc = desc
            self.stream = sys.stderr if stream is None else stream
            self.mode = resolve_mode(mode, self.stream)
            self._bar: Progress | None = None
            self._t0 = 0.0
            self._epoch_t0 = 0.0
            self._epochs_done = 0
            self._last_line = 0.0
            self._pending: str | None = None  # an epoch line not printed (lines mode)

        def on_train_begin(self, logs: Any = None) -> None:
            self._t0 = self._last_line = time.monotonic()
            self._epochs_done = 0
            self._pending = None

        def _epochs(self) -> int | None:
            epochs = (self.params or {}).get("epochs")
            return int(epochs) if epochs else None

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self._epoch_t0 = time.monotonic()
            if self.mode != "bar":
                return
            steps = (self.params or {}).get("steps")
            epochs = self._epochs()
            label = f"epoch {epoch + 1}/{epochs}" if epochs else f"epoch {epoch + 1}"
            self._bar = _EpochProgress(
                int(steps) if steps else None,
                desc=f"{self.desc} {label}".strip(),
                unit="batch",
                mode="bar",
                stream=self.stream,
            )

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            if self._bar is not None:
                loss = (logs or {}).get("loss")
                if loss is not None:
                    try:
                        self._bar.set_postfix(f"loss {float(loss):.4f}")
                    except (TypeError, ValueError):
                        pass
                self._bar.update_to(int(batch) + 1)

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            self._epochs_done = epoch + 1
            now = time.monotonic()
            epoch_s = now - self._epoch_t0
            epochs = self._epochs()
            per_epoch = (now - self._t0) / max(self._epochs_done, 1)
            label = f"epoch {epoch + 1}/{epochs}" if epochs else f"epoch {epoch + 1}"
            steps = (self.params or {}).get("steps")
            speed = f", {_format_rate(steps / epoch_s, 'batch')}" if steps and epoch_s > 0 else ""
            left = ""
            if epochs and epoch + 1 < epochs:
                left = f", {format_duration(per_epoch * (epochs - epoch - 1))} left"
            metrics = _format_logs(logs)
            text = (
                f"{self.desc + ' ' if self.desc else ''}{label}: "
                f"{metrics + ' ' if metrics else ''}({epoch_s:.1f} s{speed}{left})"
            )
            if self._bar is not None:
                self._bar.close(text)
                self._bar = None
            elif self.mode == "lines":
                # Every epoch when there are at most 10, else the first, one per 10% of
                # the epochs (and at least one a minute), and the last.
                done = epoch + 1
                step = (
                    not epochs or epochs <= 10 or epoch == 0
                    or (10 * done) // epochs > (10 * epoch) // epochs
                )
                if step or done == epochs or now - self._last_line >= 60:
                    self._emit(text)
                    self._last_line = now
                    self._pending = None
                else:
                    self._pending = text

        def _emit(self, text: str) -> None:
            try:
                self.stream.write(text + "\n")
                self.stream.flush()
            except (OSError, ValueError):
                self.mode = "off"

        def on_train_end(self, logs: Any = None) -> None:
            if self._bar is not None:  # stopped inside an epoch
                self._bar.close()
                self._bar = None
            if self._pending is not None:  # e.g. early stopping between two lines
                self._emit(self._pending)
                self._pending = None

    _KERAS_CLASS = KerasProgress
    return KerasProgress


def keras_callback(
    *, desc: str = "", mode: str = "auto", stream: TextIO | None = None
) -> Any:
    """A Keras callback showing training progress like :class:`Progress`.

    On a terminal each epoch gets a bar over its batches (with the loss, the rate
    and the time left in the epoch), replaced at the end of the epoch by a line
    with the epoch's metrics, its duration and the time left for the training.
    Elsewhere only those per-epoch lines are printed; ``mode="off"`` prints nothing.

    Parameters
    ----------
    desc : str, default=""
        Text put before ``epoch i/n`` (e.g. ``"CifarCNN"``).
    mode : {"auto", "bar", "lines", "off"}, default="auto"
        See :func:`resolve_mode`.
    stream : text stream, optional
        Where to write; standard error by default.

    Returns
    -------
    keras.callbacks.Callback
        Pass it to ``model.fit(..., callbacks=[...], verbose=0)``.

    Examples
    --------
    >>> model.fit(x, y, epochs=8, verbose=0, callbacks=[keras_callback()])  # doctest: +SKIP
    """
    if not isinstance(desc, str):
        raise InvalidTypeError(f"`desc` must be a string; received {describe(desc)}.")
    resolve_mode(mode, stream)  # validates `mode` before Keras is imported
    return _keras_class()(desc, mode, stream)
