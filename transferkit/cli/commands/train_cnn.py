"""``transferkit train-cnn``: train the talk's CNN (``CifarCNN``) on CIFAR-10 and save it."""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._common import EXIT_OK, echo, fit_with_progress, progress_mode
from .._options import (
    PARAM_OPTIONS,
    UsageError,
    add_command,
    fraction,
    name_text,
    options_checked,
    output_path,
    parse_int_list,
    path_text,
    png_output,
    positive_float,
    positive_int,
    seed,
)

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any, parents: Sequence[argparse.ArgumentParser]) -> None:
    """Add the ``train-cnn`` command to ``subparsers``."""
    p = add_command(
        subparsers, parents,
        "train-cnn", "train the talk's CNN on CIFAR-10",
        "Train CifarCNN (the talk's convolutional network) from scratch on CIFAR-10, print "
        "its test accuracy and save it as a .keras file; `extract --cnn` then uses its "
        "penultimate layer as an extractor and `predict --cnn` classifies images with it.",
        "  transferkit train-cnn --data cifar10-jpg/ --epochs 8 --output cnn.keras "
        "--plot curves.png\n"
        "  transferkit train-cnn --train-size 5000 --epochs 3",
    )
    p.add_argument("--data", type=path_text, metavar="PATH",
                   help="CIFAR-10 location (default: local copies, Keras' download, then the "
                        "bundled sample)")
    p.add_argument("--train-size", type=positive_int, metavar="N",
                   help="training images (default all)")
    p.add_argument("--test-size", type=positive_int, metavar="N",
                   help="test images (default all)")
    p.add_argument("--epochs", type=positive_int, metavar="N",
                   help="training epochs (default: CifarCNN's, 8 for the talk's network)")
    p.add_argument("--batch-size", type=positive_int, metavar="N",
                   help="images per training step (default: CifarCNN's, 64 for the talk's)")
    p.add_argument("--validation-split", type=fraction, default=0.1, metavar="F",
                   help="fraction of the training images held out to monitor val_accuracy")
    p.add_argument("--early-stopping", action="store_true",
                   help="stop when val_accuracy stops improving (keeps the best epoch)")
    p.add_argument("--conv-filters", metavar="N[,N...]",
                   help="filters per conv block (default 64,64)")
    p.add_argument("--dense-units", metavar="N[,N...]",
                   help="dense layer widths (default 256,128)")
    p.add_argument("--learning-rate", type=positive_float, metavar="F",
                   help="Adam's learning rate (default 0.001)")
    p.add_argument("--preset", type=name_text, metavar="NAME",
                   help="a CifarCNN preset, if this version has presets")
    p.add_argument("--seed", type=seed, default=0, metavar="N",
                   help="seed of weights, shuffling, dropout")
    p.add_argument("--output", "-o", type=path_text, default="cifar_cnn.keras",
                   metavar="PATH.keras", help="where to save the trained model")
    p.add_argument("--plot", type=path_text, metavar="PNG",
                   help="also save the training curves as a PNG")
    p.set_defaults(func=run, needs_tf=True)


def run(args: argparse.Namespace) -> int:
    """Run ``transferkit train-cnn``; returns the exit code."""
    import numpy as np

    from ...datasets import CIFAR10_CLASSES, balanced_subset, load_cifar10_or_sample
    from ...extractors import CifarCNN

    output = Path(args.output).expanduser()
    if output.suffix != ".keras":
        raise UsageError(f"--output must end in .keras; received {args.output!r}")
    output_path("--output", args.output)
    plot = png_output("--plot", args.plot)
    params: dict[str, Any] = {"validation_split": args.validation_split, "random_state": args.seed}
    if args.epochs is not None:
        params["epochs"] = args.epochs
    if args.batch_size is not None:
        params["batch_size"] = args.batch_size
    if args.conv_filters is not None:
        params["conv_filters"] = parse_int_list(args.conv_filters, "--conv-filters")
    if args.dense_units is not None:
        params["dense_units"] = parse_int_list(args.dense_units, "--dense-units")
    if args.learning_rate is not None:
        params["learning_rate"] = args.learning_rate
    if args.early_stopping:
        params["early_stopping"] = True
    if args.preset is not None:
        if "preset" not in CifarCNN().get_params():
            raise UsageError("--preset: this version of CifarCNN has no presets")
        params["preset"] = args.preset
    model = CifarCNN(**params)
    with options_checked(list(PARAM_OPTIONS)):  # before loading data and training
        model.check_params()
    (x_train, y_train), (x_test, y_test), source = load_cifar10_or_sample(args.data)
    x_train, y_train = balanced_subset(x_train, y_train, args.train_size)
    x_test, y_test = balanced_subset(x_test, y_test, args.test_size)
    # Keras' validation split is the *last* fraction of the data: shuffle first, since
    # some sources (a JPEG tree) list the images class by class.
    order = np.random.default_rng(args.seed).permutation(len(y_train))
    x_train, y_train = x_train[order], y_train[order]
    names = np.asarray(CIFAR10_CLASSES)
    echo(f"data: {source}: {len(x_train)} train / {len(x_test)} test images, 32x32 RGB")
    shown = {k: v for k, v in model.get_params().items() if k != "verbose" and v is not None}
    text = "CifarCNN(" + ", ".join(f"{k}={v!r}" for k, v in sorted(shown.items())) + ")"
    echo("model: " + textwrap.fill(text, width=96, subsequent_indent="  "))
    # Trained on class names, so the saved model predicts names.
    fit_s = fit_with_progress(model, x_train, names[y_train], mode=progress_mode(args),
                              desc="CifarCNN")
    hist = model.history_
    last = {k: v[-1] for k, v in hist.items() if v}
    summary = ", ".join(f"{k} {v:.3f}" for k, v in last.items() if "accuracy" in k)
    echo(f"trained in {fit_s:.1f} s ({model.n_iter_} epochs); last epoch: {summary}")
    accuracy = float(model.score(x_test, names[y_test]))
    echo(f"test accuracy: {accuracy:.4f} ({len(x_test)} images)")
    model.save(output)
    echo(f"saved {output}")
    if plot is not None:
        from ...plots import plot_training_curves

        plot_training_curves(hist, plot, title=f"CifarCNN: test accuracy {accuracy:.3f}")
        echo(f"plot: {plot}")
    return EXIT_OK
