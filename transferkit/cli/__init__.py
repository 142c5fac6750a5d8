"""The ``transferkit`` command line.

Commands (``transferkit COMMAND --help`` documents each):

* ``extract``: images (CIFAR-10 or an image folder) -> features in an HDF5 cache entry.
* ``fit``: a cache entry -> a trained head file, with a held-out validation report.
* ``evaluate``: a head + a cache entry -> accuracy, per-class report, confusion matrix.
* ``info``: the entries of a cache, with their settings, shapes, sizes and dates.
* ``train-cnn``: train the talk's CNN (``CifarCNN``) on CIFAR-10 and save it.
* ``fine-tune``: fine-tune a backbone from its cached head; save one exportable classifier.
* ``export``: a head and its extractor as one classifier (.keras, SavedModel, TFLite).
* ``predict``: image files -> top-k classes, with a CifarCNN, an extractor + a head, or an
  exported classifier.
* ``demo``: the talk's transfer-learning flow end to end, offline if need be.

Results go to standard output; progress (a bar on a terminal, plain lines
otherwise; ``--progress``) and errors go to standard error.

Exit codes: 0 success, 1 a transferkit error (message printed, no traceback unless
``--verbose``), 2 bad command-line usage (an unknown option, a bad option value, such
as a size too large for this machine's memory or an output path that cannot be
written, or options that do not go together), 130 interrupted (Ctrl-C), 143
terminated (SIGTERM, e.g. a batch scheduler stopping the job). An interrupted or
terminated extraction keeps every batch it finished and resumes when run again.
"""

# The package's modules (pip's ``commands`` layout):
#
# * ``_main``: ``main`` (error -> exit code, SIGTERM) and ``build_parser`` over the table
#   of commands in ``commands/__init__.py``;
# * ``commands/<command>.py``: one module per command, with ``add_parser`` (its options)
#   and ``run`` (its handler);
# * ``_options``: option types, path and memory checks, ``UsageError``, shared option
#   groups;
# * ``_common``: exit codes, printing, progress, building extractors, choosing cache
#   entries, loading heads.
#
# Library logic lives in the library (e.g. ``heads.class_probabilities``); these modules
# only read options, call the library and print.

from __future__ import annotations

from ._common import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, EXIT_TERMINATED, EXIT_USAGE
from ._main import build_parser, main
from .commands.fit import HEAD_CHOICES

__all__ = [
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_TERMINATED",
    "EXIT_USAGE",
    "HEAD_CHOICES",
    "build_parser",
    "main",
]
