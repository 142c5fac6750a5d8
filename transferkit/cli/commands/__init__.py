"""The commands of ``transferkit``: one module per command.

Each module has ``add_parser(subparsers, parents)``, which adds the command's parser
(its options; ``parents`` holds the options every command accepts) and sets ``func``
to its ``run``, and ``run(args) -> int``, which runs the command and returns the exit
code. :data:`COMMANDS` lists them in the order ``transferkit --help`` shows them.
"""

from __future__ import annotations

from types import ModuleType

from . import (
    demo,
    duplicates,
    evaluate,
    export,
    extract,
    fine_tune,
    fit,
    info,
    predict,
    similar,
    train_cnn,
)

__all__ = ["COMMANDS"]

#: Command name -> its module, in the order of ``transferkit --help``.
COMMANDS: dict[str, ModuleType] = {
    "extract": extract,
    "fit": fit,
    "evaluate": evaluate,
    "info": info,
    "train-cnn": train_cnn,
    "fine-tune": fine_tune,
    "export": export,
    "predict": predict,
    "similar": similar,
    "duplicates": duplicates,
    "demo": demo,
}
