"""Build ``transferkit/data/cifar10_sample.npz``, the CIFAR-10 sample bundled with transferkit.

The source is a CIFAR-10 JPEG tree ``<source>/{train,test}/<class>/NNNN.jpg`` where file
NNNN is the NNNN-th image of its class in the original CIFAR-10 order (the project's
``cifar10-jpg`` tree). The sample keeps files 0000..0499 of each class from ``train/`` and
0000..0099 from ``test/``, interleaved by class (image 0 of every class, then image 1...),
so every prefix is balanced.

The JPEG files' bytes are stored unchanged (no re-encoding), concatenated into one uint8
buffer with int64 offsets, so the file stays small and loads with
``np.load(..., allow_pickle=False)``::

    jpeg_bytes   uint8  (total_bytes,)   all JPEG files, back to back
    offsets      int64  (n + 1,)         image i is jpeg_bytes[offsets[i]:offsets[i + 1]]
    labels       int64  (n,)             index into class_names
    n_train      int64  ()               images [0, n_train) are train, the rest test
    class_names  <U10   (10,)            CIFAR-10 class names in label order
    description  <U     ()               provenance
    format_version int64 ()              1

Usage::

    python scripts/make_cifar10_sample.py --source /tmp/data/cifar10-jpg
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from transferkit.datasets import CIFAR10_CLASSES as CLASSES

FORMAT_VERSION = 1
DEFAULT_OUTPUT = (
    Path(__file__).resolve().parent.parent / "transferkit" / "data" / "cifar10_sample.npz"
)
MAX_BYTES = 3_000_000
DESCRIPTION = (
    "CIFAR-10 sample for transferkit: {n_train} training images (files 0000-{last_train:04d} "
    "of each class) and {n_test} test images (files 0000-{last_test:04d} of each class), "
    "interleaved by class. The images are JPEG re-encodings (about quality 75) of CIFAR-10: "
    "Alex Krizhevsky, 'Learning Multiple Layers of Features from Tiny Images', 2009, "
    "https://www.cs.toronto.edu/~kriz/cifar.html. Built by scripts/make_cifar10_sample.py."
)


def collect(source: Path, split: str, per_class: int) -> list[tuple[Path, int]]:
    """Files ``0000..per_class-1`` of each class of ``split``, interleaved by class."""
    items = []
    for index in range(per_class):
        for label, name in enumerate(CLASSES):
            path = source / split / name / f"{index:04d}.jpg"
            if not path.is_file():
                raise SystemExit(f"error: missing source image {path}")
            items.append((path, label))
    return items


def check_jpeg(path: Path, data: bytes) -> None:
    """Fail unless ``data`` decodes to a 32x32 RGB JPEG."""
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        if image.format != "JPEG" or image.size != (32, 32) or image.mode != "RGB":
            raise SystemExit(
                f"error: {path} is {image.format} {image.mode} {image.size}, "
                "expected a 32x32 RGB JPEG"
            )


def build(source: Path, output: Path, train_per_class: int, test_per_class: int) -> int:
    """Write the sample file and return its size in bytes."""
    items = collect(source, "train", train_per_class) + collect(source, "test", test_per_class)
    chunks, offsets, labels = [], [0], []
    for path, label in items:
        data = path.read_bytes()
        check_jpeg(path, data)
        chunks.append(data)
        offsets.append(offsets[-1] + len(data))
        labels.append(label)
    n_train = train_per_class * len(CLASSES)
    description = DESCRIPTION.format(
        n_train=n_train,
        last_train=train_per_class - 1,
        n_test=test_per_class * len(CLASSES),
        last_test=test_per_class - 1,
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        output,
        jpeg_bytes=np.frombuffer(b"".join(chunks), dtype=np.uint8),
        offsets=np.asarray(offsets, dtype=np.int64),
        labels=np.asarray(labels, dtype=np.int64),
        n_train=np.int64(n_train),
        class_names=np.asarray(CLASSES),
        description=np.asarray(description),
        format_version=np.int64(FORMAT_VERSION),
    )
    return output.stat().st_size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--source", type=Path, required=True, help="cifar10-jpg folder holding train/ and test/"
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="npz file to write")
    parser.add_argument("--train-per-class", type=int, default=500)
    parser.add_argument("--test-per-class", type=int, default=100)
    args = parser.parse_args(argv)
    if args.train_per_class < 1 or args.test_per_class < 1:
        parser.error("--train-per-class and --test-per-class must be at least 1")
    size = build(args.source, args.output, args.train_per_class, args.test_per_class)
    print(f"wrote {args.output} ({size / 1e6:.2f} MB)")
    if size > MAX_BYTES:
        print(f"warning: larger than {MAX_BYTES / 1e6:.0f} MB", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
