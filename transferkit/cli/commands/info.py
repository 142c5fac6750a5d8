"""``transferkit info``: the entries of a feature cache, with their settings and sizes."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

from .._common import EXIT_OK, echo, mb, open_cache, provenances, short_key, weights_label
from .._options import add_command, path_text

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any, parents: Sequence[argparse.ArgumentParser]) -> None:
    """Add the ``info`` command to ``subparsers``."""
    p = add_command(
        subparsers, parents,
        "info", "list the entries of a feature cache",
        "The entries of a feature cache: extractor settings (weights, layer, pooling, input "
        "size), shape, size on disk, creation date, whether complete, and the data.",
        "  transferkit info --cache f.h5\n  transferkit info --cache f.h5 --json",
    )
    p.add_argument("--cache", type=path_text, required=True, metavar="FILE",
                   help="feature cache (HDF5) file")
    p.add_argument("--json", action="store_true", help="print everything as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``transferkit info``; returns the exit code."""
    import dataclasses

    cache = open_cache(args.cache)
    entries = cache.entries(include_incomplete=True)
    provs = provenances(cache)
    if args.json:
        rows = []
        for e in entries:
            row = dataclasses.asdict(e)
            row["shape"] = list(e.shape)
            row["mb"] = round(e.nbytes / 1e6, 3)
            row["provenance"] = provs.get(e.key)
            rows.append(row)
        echo(json.dumps({"path": str(cache.path), "file_mb": round(
            cache.path.stat().st_size / 1e6, 3), "entries": rows}, indent=2, default=str))
        return EXIT_OK
    size = cache.path.stat().st_size
    complete = sum(e.complete for e in entries)
    echo(f"{cache.path}: {len(entries)} entr{'y' if len(entries) == 1 else 'ies'} "
         f"({complete} complete), {mb(size)} MB")
    if not entries:
        return EXIT_OK
    header = ("KEY", "EXTRACTOR", "WEIGHTS", "LAYER", "POOLING", "INPUT", "SHAPE", "MB",
              "CREATED", "STATUS", "DATA")
    table = []
    for e in entries:
        c = e.extractor_config
        p = provs.get(e.key, {})
        data = " ".join(str(v) for v in (p.get("dataset"), p.get("split")) if v) or "-"
        status = "complete" if e.complete else f"incomplete {e.n_done}/{e.n_images}"
        table.append((
            short_key(e.key), e.extractor, weights_label(c.get("weights")),
            str(c.get("layer") or "-"), str(c.get("pooling") or "-"),
            str(c.get("input_size") or "-"), f"{e.n_images}x{e.feature_dim}",
            mb(e.nbytes), e.created.replace("T", " ")[:19], status, data,
        ))
    widths = [max(len(r[i]) for r in [header, *table]) for i in range(len(header))]
    for row in [header, *table]:
        echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    return EXIT_OK
