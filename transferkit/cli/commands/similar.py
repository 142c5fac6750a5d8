"""``transferkit similar``: image files -> their nearest images in a cache entry."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._common import (
    EXIT_OK,
    build_extractor,
    echo,
    extractor_summary,
    open_cache,
    select_entry,
    short_key,
)
from .._options import (
    UsageError,
    add_command,
    add_entry_options,
    check_read_memory,
    path_text,
    png_output,
    positive_int,
)

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any, parents: Sequence[argparse.ArgumentParser]) -> None:
    """Add the ``similar`` command to ``subparsers``."""
    p = add_command(
        subparsers, parents,
        "similar", "find the images of a cache entry most similar to image files",
        "Extract the features of the given image files with the entry's own extractor (the "
        "one `transferkit extract` recorded) and list the entry's nearest images by cosine "
        "similarity of the features. The entry's index is built once and saved beside "
        "the cache (FILE.index/), rebuilt when the entry changes.",
        "  transferkit similar query.jpg --cache photos.h5 --k 8\n"
        "  transferkit similar 'new/*.jpg' --cache photos.h5 --split train --plot "
        "neighbours.png",
    )
    p.add_argument("images", nargs="+", type=path_text, metavar="IMAGE",
                   help="image files, folders or glob patterns")
    add_entry_options(p, "train")
    p.add_argument("--k", type=positive_int, default=8, metavar="N",
                   help="neighbours per image (default 8)")
    p.add_argument("--image-size", type=positive_int, metavar="N",
                   help="side the query images are resized to when read (default: the size "
                        "the entry's images were read at)")
    p.add_argument("--center", action="store_true",
                   help="centre the features on the entry's mean first (spreads the "
                        "similarities of features that are alike for every image)")
    p.add_argument("--batch-size", type=positive_int, metavar="N",
                   help="images per forward pass")
    p.add_argument("--plot", type=path_text, metavar="PNG",
                   help="also draw each query beside its neighbours (re-reads the entry's "
                        "images from where `extract` found them)")
    p.set_defaults(func=run, needs_tf=True)


def _entry_extractor(args: argparse.Namespace, prov: dict[str, Any]) -> Any:
    saved = prov.get("extractor")
    if not saved:
        raise UsageError(
            "this entry does not record its extractor (it was not written by `transferkit "
            "extract`); query it from Python: transferkit.search.index_entry(cache, key)"
            ".query_images(extractor, images)"
        )
    options = argparse.Namespace(extractor=None, weights=None, layer=None, pooling=None,
                                 input_size=None, batch_size=args.batch_size, cnn=None)
    extractor, _ = build_extractor(options, saved)
    return extractor


def run(args: argparse.Namespace) -> int:
    """Run ``transferkit similar``; returns the exit code."""
    from ...datasets.images import expand_image_paths, read_images
    from ...search import index_entry

    plot = png_output("--plot", args.plot)
    files = expand_image_paths(args.images)
    cache = open_cache(args.cache)
    entry, prov = select_entry(cache, args, natural_split="train")
    extractor = _entry_extractor(args, prov)
    size = tuple(prov.get("image_size") or (224, 224))
    if args.image_size is not None:
        size = (args.image_size, args.image_size)
    check_read_memory("--image-size", size, len(files))  # type: ignore[arg-type]
    images = read_images(files, size)  # type: ignore[arg-type]
    index = index_entry(cache, entry.key, center=args.center)
    distances, rows = index.query_images(extractor, images, k=args.k)
    similarities = 1.0 - distances
    names = index.class_names
    labels = index.labels
    shown = None
    if plot is not None:
        from .._entry_images import entry_images

        shown = entry_images(prov)
    echo(f"entry {short_key(entry.key)}: {entry.n_images} images, "
         f"{extractor_summary(entry.extractor_config)}; cosine similarity of the features")
    for q, file in enumerate(files):
        echo(f"{file}:")
        for rank, (row, sim) in enumerate(zip(rows[q], similarities[q], strict=True), 1):
            label = ""
            if labels is not None:
                label = names[labels[row]] if names else str(labels[row])
            where = f"  {shown.name(row)}" if shown is not None else ""
            echo(f"  {rank:>2}. row {int(row):>6}  {float(sim):.3f}  {label}{where}")
    if plot is not None and shown is not None:
        import numpy as np

        from ...plots import plot_neighbours

        neighbours = np.stack([shown.read(r) for r in rows])
        titles = [[(names[labels[r]] if names and labels is not None else shown.name(r))
                   for r in rs] for rs in rows]
        plot_neighbours(images, neighbours, plot, similarities=similarities,
                        query_titles=[Path(f).name for f in files],
                        neighbour_titles=titles,
                        title=f"nearest images in entry {short_key(entry.key)}")
        echo(f"plot: {plot}")
    return EXIT_OK
