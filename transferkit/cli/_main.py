"""The ``transferkit`` entry point: the parser over the command table, and ``main``.

``main`` parses the arguments, runs the command's handler with SIGTERM raising
:class:`~transferkit.exceptions.Terminated`, and maps what it raises to an exit code
(see the package docstring).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence

from ._common import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    EXIT_USAGE,
    import_tensorflow_quietly,
)
from ._options import HelpFormatter, UsageError, common_options
from .commands import COMMANDS

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``transferkit`` command.

    Returns
    -------
    argparse.ArgumentParser
        With one subcommand per task; each sets ``func`` (the handler) in the
        parsed namespace.
    """
    from .. import __version__

    common = common_options()
    parser = argparse.ArgumentParser(
        prog="transferkit",
        description=(
            "Image feature extraction and transfer learning on TensorFlow/Keras.\n\n"
            "Typical flow:\n"
            "  transferkit extract --data cifar10/ --split train --cache f.h5\n"
            "  transferkit extract --data cifar10/ --split test --cache f.h5\n"
            "  transferkit fit --cache f.h5 --head logreg --output head.tkhead\n"
            "  transferkit evaluate --head head.tkhead --cache f.h5 --plot confusion.png"
        ),
        epilog="Exit codes: 0 ok, 1 transferkit error, 2 usage error, 130 interrupted "
               "(Ctrl-C), 143 terminated (SIGTERM); an interrupted or terminated extraction "
               "resumes when run again.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"transferkit {__version__}")
    parser.add_argument("--verbose", action="store_true", help="show tracebacks on errors")
    parser.add_argument("--progress", choices=("auto", "bar", "lines", "off"), default="auto",
                        help="progress display on stderr: a bar on a terminal, a line every "
                             "10%% otherwise (auto), or off")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS.values():
        command.add_parser(sub, [common])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``transferkit`` command.

    Parameters
    ----------
    argv : sequence of str, optional
        The arguments (default ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit code: 0 success, 1 a transferkit error, 2 a usage error found after
        parsing, 130 interrupted (Ctrl-C), 143 terminated (SIGTERM). Parsing errors
        (and ``--help``) raise ``SystemExit`` as argparse does, with code 2 (0 for
        ``--help``).

    Notes
    -----
    While the command runs, SIGTERM (sent by batch schedulers and containers to stop a
    job) raises :class:`~transferkit.exceptions.Terminated` in the main thread, as
    Ctrl-C raises ``KeyboardInterrupt``: an extraction writes every batch it computed
    and resumes when run again. The previous SIGTERM handler is restored afterwards;
    a handler other than the default one (or SIGTERM ignored) is left in place.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    parser = build_parser()
    args = parser.parse_args(argv)
    from .._signals import sigterm_raises
    from ..exceptions import Terminated, TransferkitError

    try:
        with sigterm_raises():
            if getattr(args, "needs_tf", False) and not args.verbose:
                import_tensorflow_quietly()
            return int(args.func(args))
    except Terminated as exc:
        print(f"transferkit: {exc}", file=sys.stderr)
        return EXIT_TERMINATED
    except UsageError as exc:
        print(f"transferkit {args.command}: error: {exc}", file=sys.stderr)
        print(f"(see `transferkit {args.command} --help`)", file=sys.stderr)
        return EXIT_USAGE
    except TransferkitError as exc:
        if args.verbose:
            raise
        print(f"transferkit: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt as exc:
        detail = str(exc) or "cached work is kept; run again to resume"
        print(f"transferkit: interrupted ({detail})", file=sys.stderr)
        return EXIT_INTERRUPTED
    except MemoryError as exc:  # the checks before allocating missed a case
        if args.verbose:
            raise
        print(f"transferkit: error: out of memory ({exc or 'MemoryError'}); lower --batch-size "
              "or the image sizes (--image-size, --input-size)", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:  # e.g. `transferkit info ... | head -1`
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return EXIT_ERROR
    except OSError as exc:  # a file that cannot be written, a full disk...
        if args.verbose:
            raise
        print(f"transferkit: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
