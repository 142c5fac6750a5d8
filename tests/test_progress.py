"""Progress display: a bar on terminals, occasional lines elsewhere, nothing when off."""

from __future__ import annotations

import io

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


def test_bar_mode_redraws_in_place_and_ends_with_a_newline() -> None:
    out, clock = Tty(), Clock()
    bar = Progress(10, desc="work", unit="batch", mode="auto", stream=out, clock=clock,
                   min_interval=0)
    assert bar.mode == "bar"  # a terminal
    for _ in range(10):
        clock.now += 1
        bar.update()
    bar.close()
    text = out.getvalue()
    assert text.count("\r") >= 10 and text.endswith("\n")
    assert "10/10 batches" in text and "1.0 batches/s" in text and "%|" in text
    assert "work: done, 10 batches in 00:10" in text


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
    bar_out = Tty()
    model.fit(x, y, epochs=2, batch_size=8, verbose=0,
              callbacks=[keras_callback(mode="bar", stream=bar_out)])
    assert "\r" in bar_out.getvalue() and "epoch 2/2: " in bar_out.getvalue()
