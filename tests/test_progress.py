"""Progress display: a bar on terminals, occasional lines elsewhere, nothing when off."""

from __future__ import annotations

import io
import re
import subprocess
import sys

import pytest

from transferkit.exceptions import InvalidInputError
from transferkit.progress import Progress, format_duration, keras_callback, resolve_mode


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_lines_mode_prints_every_ten_percent_with_rate_and_time_left() -> None:
    out, clock = io.StringIO(), Clock()
    with Progress(100, desc="extracting", unit="image", mode="lines", stream=out,
                  clock=clock) as bar:
        for _ in range(20):
            clock.now += 0.5
            bar.update(5)
    lines = out.getvalue().splitlines()
    assert len(lines) == 10  # 10%, 20% ... 90%, then the summary
    assert lines[0] == "extracting: 10/100 images (10%), 10.0 images/s, 00:09 left"
    assert lines[-1] == "extracting: done, 100 images in 00:10 (10.0 images/s)"
    assert "\r" not in out.getvalue()


@pytest.fixture
def terminal(monkeypatch) -> Tty:
    """A 100-column terminal for Rich (whatever the environment running the tests)."""
    monkeypatch.setenv("COLUMNS", "100")
    monkeypatch.setenv("TERM", "xterm-256color")
    for name in ("TTY_COMPATIBLE", "TTY_INTERACTIVE", "FORCE_COLOR", "TRANSFERKIT_PROGRESS"):
        monkeypatch.delenv(name, raising=False)
    return Tty()


def shown(stream: io.StringIO) -> str:
    """What a terminal shows, colours and cursor moves left out (Rich draws the bar)."""
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", stream.getvalue())


def test_bar_mode_draws_a_rich_bar_then_leaves_it_with_the_summary(terminal) -> None:
    clock = Clock()
    bar = Progress(1000, desc="extracting", unit="image", mode="auto", stream=terminal,
                   clock=clock, min_interval=0)
    assert bar.mode == "bar"  # a terminal
    assert terminal.getvalue() == ""  # nothing drawn before the first update
    clock.now = 12.0
    bar.update_to(450)
    bar.set_postfix("loss 0.42")
    frame = shown(terminal).split("\r")[-1]
    assert frame.startswith("extracting ") and "━" in frame and " 45% " in frame
    assert "450/1000 images" in frame and "37.5 images/s" in frame  # 450 in 12 s
    assert "00:12" in frame and "00:15 left" in frame  # 550 more at 37.5/s: 14.7 s
    clock.now = 20.0
    bar.update_to(1000)
    bar.close()
    lines = shown(terminal).split("\r")[-1].splitlines()
    assert "100%" in lines[0] and "1000/1000 images" in lines[0]  # the bar stays...
    assert lines[0].endswith("loss 0.42")  # (the postfix)
    assert lines[-1] == "extracting: done, 1000 images in 00:20 (50.0 images/s)"  # ...then this
    assert terminal.getvalue().endswith("\n")


def test_bar_mode_unknown_total_interruption_and_sparse_updates(terminal) -> None:
    clock = Clock()
    with pytest.raises(KeyboardInterrupt):
        with Progress(None, desc="reading", unit="file", stream=terminal, clock=clock) as bar:
            for _ in range(3):
                clock.now += 90  # minutes between updates (Dask shards): a rate all the same
                bar.update(4)
            raise KeyboardInterrupt
    frame = shown(terminal).split("\r")[-1]
    assert "12/? files" in frame and "2.5 files/s" not in frame and "22.5 s/file" in frame
    assert "%" not in frame and "left" not in frame  # no total: no percentage, no time left
    assert frame.splitlines()[-1] == "reading: interrupted at 12 files"
    resumed = Tty()
    with Progress(8, unit="shard", initial=2, mode="bar", stream=resumed, clock=clock) as bar:
        clock.now += 90
        bar.update()
    assert "3/8 shards" in shown(resumed) and "07:30 left" in shown(resumed)


def test_bar_mode_is_drawn_by_rich_only_when_shown() -> None:
    code = (
        "import io, sys; from transferkit.progress import Progress\n"
        "for mode in ('lines', 'off'):\n"
        "    with Progress(3, mode=mode, stream=io.StringIO()) as bar: bar.update(3)\n"
        "assert 'rich' not in sys.modules, 'rich imported'\n"
        "out = io.StringIO()\n"
        "with Progress(3, desc='x', mode='bar', stream=out) as bar: bar.update(3)\n"
        "assert 'rich' in sys.modules and out.getvalue().endswith('x: done, 3 its in 00:00'"
        " + out.getvalue().rpartition('00:00')[2]), out.getvalue()\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_bar_mode_on_a_closed_stream_goes_quiet(terminal) -> None:
    bar = Progress(10, mode="bar", stream=terminal, min_interval=0)
    bar.update()
    terminal.close()
    bar.update()  # no error: progress is optional
    bar.close()
    assert bar.mode == "off" and bar.closed


def test_auto_mode_is_lines_off_a_terminal_and_obeys_the_environment(monkeypatch) -> None:
    monkeypatch.delenv("TRANSFERKIT_PROGRESS", raising=False)
    assert resolve_mode("auto", io.StringIO()) == "lines"
    assert resolve_mode("auto", Tty()) == "bar"
    monkeypatch.setenv("TRANSFERKIT_PROGRESS", "off")
    assert resolve_mode("auto", Tty()) == "off"
    assert resolve_mode("bar", io.StringIO()) == "bar"
    with pytest.raises(InvalidInputError, match="`mode`"):
        resolve_mode("loud")


def test_off_prints_nothing_and_resume_counts_only_new_work() -> None:
    out, clock = io.StringIO(), Clock()
    with Progress(100, mode="off", stream=out, clock=clock) as bar:
        bar.update(50)
    assert out.getvalue() == ""
    bar = Progress(100, initial=60, mode="lines", stream=out, clock=clock)
    clock.now = 2.0
    bar.update_to(80)
    assert bar.rate == pytest.approx(10.0) and bar.eta == pytest.approx(2.0)
    bar.close()
    assert "(resumed at 60)" in out.getvalue()


def test_unknown_total_and_interruption() -> None:
    out, clock = io.StringIO(), Clock()
    with pytest.raises(KeyboardInterrupt):
        with Progress(None, desc="reading", unit="file", mode="lines", stream=out,
                      clock=clock, line_interval=5) as bar:
            for _ in range(12):
                clock.now += 1
                bar.update()
            raise KeyboardInterrupt
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("reading: 5 files, 1.0 files/s")
    assert lines[-1] == "reading: interrupted at 12 files"


def test_format_duration_and_argument_checks() -> None:
    assert format_duration(59.6) == "01:00"
    assert format_duration(3725) == "1:02:05"
    assert format_duration(float("nan")) == "--:--"
    with pytest.raises(InvalidInputError, match="`total`"):
        Progress(-1)
    with pytest.raises(InvalidInputError, match="`initial`"):
        Progress(3, initial=-2)


def test_keras_callback_lines_per_epoch() -> None:
    import keras
    import numpy as np

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    out = io.StringIO()
    x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("int64")
    model.fit(x, y, epochs=3, batch_size=8, verbose=0,
              callbacks=[keras_callback(desc="toy", mode="lines", stream=out)])
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("toy epoch 1/3: ") and "loss" in lines[0] and "left" in lines[0]
    assert lines[-1].startswith("toy epoch 3/3: ")



def test_keras_callback_bar_per_epoch_replaced_by_the_epoch_line(terminal) -> None:
    import keras
    import numpy as np

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("int64")
    model.fit(x, y, epochs=2, batch_size=8, verbose=0,
              callbacks=[keras_callback(desc="toy", mode="bar", stream=terminal)])
    text = shown(terminal)
    assert "toy epoch 1/2 " in text and "4/4 batches" in text and "loss " in text  # the bars
    assert "\x1b[2K" in terminal.getvalue()  # erased at the end of their epoch...
    lines = [line for line in text.split("\r")[-1].splitlines() if line]
    assert lines[-1].startswith("toy epoch 2/2: ") and "accuracy" in lines[-1]  # ...for this
