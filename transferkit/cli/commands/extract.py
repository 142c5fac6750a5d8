"""``transferkit extract``: images (CIFAR-10, an image folder, a CSV list, a Hugging Face
dataset) -> a feature cache entry."""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._common import (
    EXIT_OK,
    ProgressExtractor,
    build_extractor,
    echo,
    extractor_summary,
    mb,
    progress_mode,
    short_key,
    tag_entry,
)
from .._options import (
    UsageError,
    add_command,
    add_extractor_options,
    check_extraction_memory,
    check_read_memory,
    input_file,
    input_folder,
    name_text,
    output_path,
    path_text,
    positive_int,
)

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any, parents: Sequence[argparse.ArgumentParser]) -> None:
    """Add the ``extract`` command to ``subparsers``."""
    p = add_command(
        subparsers, parents,
        "extract", "extract features of a dataset into a cache entry",
        "Run a frozen backbone over CIFAR-10 (--data), an image folder (--image-folder), a "
        "CSV list of image files (--image-list) or a Hugging Face dataset (--hf-dataset) "
        "and store the features, labels and class names in an HDF5 cache entry. An entry "
        "that exists is read instead; an interrupted extraction resumes. Prints the key.",
        "  transferkit extract --data cifar-10-python.tar.gz --split test --input-size 64 "
        "--cache f.h5\n"
        "  transferkit extract --image-folder photos/ --image-size 224 --cache photos.h5\n"
        "  transferkit extract --image-list labels.csv --image-size 224 --cache photos.h5\n"
        "  transferkit extract --hf-dataset saved_dataset/ --hf-split test --cache f.h5\n"
        "  transferkit extract --data cifar10-jpg/ --cnn cifar_cnn.keras --cache f.h5\n"
        "  KEY=$(transferkit extract --quiet --data cifar10-jpg/ --cache f.h5)",
    )
    g = p.add_argument_group("data")
    g.add_argument("--data", type=path_text, metavar="PATH",
                   help="CIFAR-10: archive, cifar-10-batches-py/ or JPEG tree (default: local "
                        "copies, Keras' download, then the bundled sample)")
    g.add_argument("--image-folder", type=path_text, metavar="DIR",
                   help="your own images, DIR/<class>/<image> (with --split, DIR/<split>/ if "
                        "it exists)")
    g.add_argument("--image-list", type=path_text, metavar="CSV",
                   help="image files listed in a CSV file with a header: a path column "
                        "(path, filepath, file, filename, image, ...; paths relative to the "
                        "CSV's folder) and optionally a label column (label or class)")
    g.add_argument("--path-column", type=name_text, metavar="NAME",
                   help="--image-list: the column of image paths (default: found by name)")
    g.add_argument("--label-column", type=name_text, metavar="NAME",
                   help="--image-list, --hf-dataset: the column of labels (default: found "
                        "by name, or the ClassLabel column; 'none' for no labels)")
    g.add_argument("--hf-dataset", type=path_text, metavar="PATH_OR_NAME",
                   help="a Hugging Face dataset: a folder written by save_to_disk, a local "
                        "folder load_dataset reads (e.g. an imagefolder), or a hub name "
                        "(downloaded; needs pip install 'transferkit[hf]')")
    g.add_argument("--hf-split", type=name_text, metavar="NAME",
                   help="--hf-dataset: the split to read (default: train, or the only one)")
    g.add_argument("--hf-image-column", type=name_text, metavar="NAME",
                   help="--hf-dataset: the image column (default: the one Image column)")
    g.add_argument("--split", choices=("train", "test"),
                   help="CIFAR-10 split (default train); recorded with the entry")
    g.add_argument("--image-size", type=positive_int, metavar="N",
                   help="--image-folder, --image-list, --hf-dataset: side images are "
                        "resized to when read (default: --input-size, the CNN's size, or "
                        "224)")
    g.add_argument("--limit", type=positive_int, metavar="N",
                   help="use N images, spread evenly over the classes (default: all)")
    add_extractor_options(p)
    p.add_argument("--cache", type=path_text, default="features.h5", metavar="FILE",
                   help="feature cache (HDF5) file; created if needed")
    g = p.add_argument_group("distributed (Dask: pip install 'transferkit[distributed]')")
    g.add_argument("--shards", type=positive_int, metavar="N",
                   help="split the extraction into N shards run by Dask workers, merged into "
                        "one entry (default with --workers/--scheduler: twice the workers' "
                        "threads, or the shards of an earlier run)")
    g.add_argument("--workers", type=positive_int, metavar="N",
                   help="worker processes of the local Dask cluster to start (default 2)")
    g.add_argument("--scheduler", type=name_text, metavar="ADDRESS",
                   help="run the shards on the Dask cluster of this scheduler, e.g. "
                        "tcp://host:8786 (the cache folder must be shared with its workers)")
    p.add_argument("--quiet", "-q", action="store_true", help="print only the entry key")
    p.set_defaults(func=run, needs_tf=True)


_SOURCES = ("--data", "--image-folder", "--image-list", "--hf-dataset")


def _read_size(args: argparse.Namespace, image_size: tuple[int, int] | None) -> tuple[Any, str]:
    """The size images are resized to when read, and the option that decided it."""
    size: Any
    size_option = "--image-size"
    if args.image_size is not None:
        size = (args.image_size, args.image_size)
    elif image_size is not None:
        size = image_size
    elif args.input_size is not None:
        size, size_option = (args.input_size, args.input_size), "--input-size"
    else:
        size = (224, 224)
    check_read_memory(size_option, size, 1)  # a batch: check_extraction_memory
    return size, size_option


def _label_column(args: argparse.Namespace) -> str | None:
    if args.label_column is None:
        return "auto"
    return None if args.label_column.lower() == "none" else args.label_column


def _load_listed(args: argparse.Namespace, image_size: tuple[int, int] | None) -> dict[str, Any]:
    """--image-list or --hf-dataset: the images, labels, class names and a description."""
    from ...datasets import balanced_subset

    size, size_option = _read_size(args, image_size)
    bs = 64 if args.batch_size is None else args.batch_size
    if args.image_list is not None:
        from ...datasets import load_image_list

        csv_path = input_file("--image-list", args.image_list)
        ds: Any = load_image_list(csv_path, path_column=args.path_column,
                                  label_column=_label_column(args), image_size=size,
                                  batch_size=bs)
        what = f"image list {csv_path}"
        meta: dict[str, Any] = {"dataset": "image-list", "csv": str(csv_path.resolve()),
                                "path_column": args.path_column,
                                "label_column": _label_column(args)}
    else:
        from ...datasets import from_hf_dataset
        from .._common import load_hf_dataset

        raw, split = load_hf_dataset(args.hf_dataset, args.hf_split)
        ds = from_hf_dataset(raw, image_column=args.hf_image_column,
                             label_column=_label_column(args), image_size=size,
                             batch_size=bs)
        what = f"Hugging Face dataset {args.hf_dataset} ({split})"
        local = Path(args.hf_dataset).expanduser()
        meta = {"dataset": "hf", "split": split,
                "hf_dataset": str(local.resolve()) if local.exists() else args.hf_dataset,
                "image_column": args.hf_image_column, "label_column": _label_column(args)}
    images: Any = ds
    labels = ds.labels
    if args.limit is not None and args.limit < len(ds):
        if labels is None:
            raise UsageError("--limit spreads images over the classes: the data has no "
                             "labels (name a label column with --label-column)")
        images, labels = balanced_subset(ds, labels, args.limit)
    class_names = list(ds.class_names) if ds.class_names is not None else None
    n_classes = (f", {len(class_names)} classes" if class_names is not None
                 else ", no labels" if labels is None else "")
    return {
        "images": images,
        "labels": labels,
        "size_option": size_option,
        "class_names": class_names,
        "describe": f"{what}: {len(images)} images {size[0]}x{size[1]}{n_classes}",
        "meta": {**meta, "image_size": [int(size[0]), int(size[1])], "limit": args.limit},
    }


def _load_dataset(args: argparse.Namespace, image_size: tuple[int, int] | None) -> dict[str, Any]:
    """The images to extract, with their labels, class names and a description."""
    from ...datasets import CIFAR10_CLASSES, balanced_subset, load_cifar10_or_sample

    given = [o for o in _SOURCES if getattr(args, o[2:].replace("-", "_")) is not None]
    if len(given) > 1:
        raise UsageError(f"pass one source of images, not {' and '.join(given)}")
    if args.image_list is None and args.path_column is not None:
        raise UsageError("--path-column applies to --image-list")
    if args.image_list is None and args.hf_dataset is None and args.label_column is not None:
        raise UsageError("--label-column applies to --image-list and --hf-dataset")
    if args.hf_dataset is None and (args.hf_split or args.hf_image_column) is not None:
        raise UsageError("--hf-split and --hf-image-column apply to --hf-dataset")
    if args.image_list is not None or args.hf_dataset is not None:
        return _load_listed(args, image_size)
    limit = args.limit
    if args.image_folder is not None:
        from ...datasets import load_image_folder

        input_folder("--image-folder", args.image_folder)
        root = Path(args.image_folder).expanduser()
        split = args.split
        if split is not None and (root / split).is_dir():
            root = root / split
        size, size_option = _read_size(args, image_size)
        ds = load_image_folder(
            root, image_size=size, batch_size=64 if args.batch_size is None else args.batch_size
        )
        images: Any = ds
        labels = ds.labels
        if limit is not None and limit < len(ds):
            images, labels = balanced_subset(ds, ds.labels, limit)
        return {
            "images": images,
            "labels": labels,
            "size_option": size_option,
            "class_names": list(ds.class_names),
            "describe": f"image folder {root}: {len(labels)} images "
                        f"{size[0]}x{size[1]}, {len(ds.class_names)} classes",
            "meta": {
                "dataset": "image-folder",
                "root": str(root.resolve()),
                "split": split,
                "image_size": [int(size[0]), int(size[1])],
                "limit": limit,
            },
        }
    if args.image_size is not None:
        raise UsageError("--image-size applies to --image-folder; CIFAR-10 images are 32x32")
    split = args.split or "train"
    (x_train, y_train), (x_test, y_test), source = load_cifar10_or_sample(args.data)
    x, y = (x_train, y_train) if split == "train" else (x_test, y_test)
    x, y = balanced_subset(x, y, limit)
    return {
        "images": x,
        "labels": y,
        "size_option": "--input-size",
        "class_names": list(CIFAR10_CLASSES),
        "describe": f"{source}: {split} split, {len(y)} images 32x32, 10 classes",
        "meta": {
            "dataset": "cifar10",
            "source": source,
            "data": str(Path(args.data).expanduser().resolve()) if args.data else None,
            "split": split,
            "image_size": [32, 32],
            "limit": limit,
        },
    }


def _kept(cache: Any, key: str) -> str:
    """What an interrupted extraction kept, and how to go on."""
    try:
        entry = {e.key: e for e in cache.entries(include_incomplete=True)}.get(key)
    except Exception:  # noqa: BLE001 - only a message: never hide the interruption itself
        entry = None
    if entry is None:
        return "no batch was finished, nothing was stored"
    if entry.complete:
        return f"the entry is complete ({entry.n_images} images) in {str(cache.path)!r}"
    return (f"kept {entry.n_done}/{entry.n_images} images in {str(cache.path)!r}; run the "
            "same command again to resume")


def run(args: argparse.Namespace) -> int:
    """Run ``transferkit extract``; returns the exit code."""
    from ...cache import FeatureCache
    from ...exceptions import Terminated

    if args.workers is not None and args.scheduler is not None:
        raise UsageError(
            "--workers sizes the local cluster started without --scheduler; with "
            f"--scheduler {args.scheduler} the cluster's own workers run the shards. "
            "Pass one of the two."
        )
    output_path("--cache", args.cache, probe=False)  # a read-only cache still serves hits
    extractor, build = build_extractor(args)
    cnn_size = tuple(extractor.image_shape_[:2]) if build["name"] == "cifar_cnn" else None
    data = _load_dataset(args, cnn_size)  # type: ignore[arg-type]
    images = data["images"]
    size = tuple(int(s) for s in images.shape[1:3])
    check_extraction_memory(extractor, size, batch=args.batch_size,  # type: ignore[arg-type]
                            option="--input-size", read_option=data["size_option"])
    dim = extractor.output_dim(size)
    config = extractor.describe()
    cache = FeatureCache(Path(args.cache).expanduser())
    if not args.quiet:
        echo(f"data: {data['describe']}")
        echo(f"extractor: {extractor_summary(config)} -> {dim} features")
    key = cache.key(extractor, images)
    before = {e.key: e for e in cache.entries(include_incomplete=True)}.get(key)
    sharded = args.shards is not None or args.workers is not None or args.scheduler is not None
    t = time.perf_counter()
    try:
        try:
            if sharded:  # one Dask task per shard; the shards are merged into one entry
                from ...distributed import extract_distributed

                extract_distributed(
                    extractor, images, cache, n_shards=args.shards, address=args.scheduler,
                    n_workers=2 if args.workers is None else args.workers,
                    batch_size=args.batch_size, labels=data["labels"],
                    class_names=data["class_names"], lazy=True,
                    verbose=int(progress_mode(args) != "off" and not args.quiet),
                )
            else:
                wrapped = ProgressExtractor(extractor, desc="extracting",
                                            mode=progress_mode(args))
                cache.extract(
                    wrapped, images, labels=data["labels"], class_names=data["class_names"],
                    batch_size=args.batch_size, lazy=True,
                )
        finally:  # an interrupted entry is described too (`info` shows what it was)
            with contextlib.suppress(Exception):
                tag_entry(cache, key, {**data["meta"], "extractor": build})
    except (KeyboardInterrupt, Terminated) as exc:
        kept = ("the finished shards are kept; run the same command again to resume"
                if sharded else _kept(cache, key))
        if isinstance(exc, Terminated):
            raise Terminated(f"terminated (SIGTERM); {kept}") from exc
        raise KeyboardInterrupt(kept) from exc
    seconds = time.perf_counter() - t
    entry = cache.info(key)
    if args.quiet:
        echo(key)
        return EXIT_OK
    n = entry.n_images
    if before is not None and before.complete:
        echo(f"already in the cache: {n} images, nothing extracted")
    elif before is not None:
        echo(f"resumed at {before.n_done}/{n}: extracted {n - before.n_done} images in "
             f"{seconds:.1f} s ({(n - before.n_done) / max(seconds, 1e-9):.1f} images/s)")
    else:
        echo(f"extracted {n} images in {seconds:.1f} s ({n / max(seconds, 1e-9):.1f} images/s)")
    stored = ("no labels" if data["labels"] is None else "labels" if data["class_names"] is None
              else f"labels and {len(data['class_names'])} class names")
    echo(f"cache: {cache.path}, entry {short_key(key)}: {n}x{entry.feature_dim} float32, "
         f"{mb(entry.nbytes)} MB, {stored} stored")
    echo(f"key: {key}")
    return EXIT_OK
