"""Datasets: CIFAR-10, a small bundled CIFAR-10 sample, and your own image folders.

* :func:`load_cifar10` returns the full CIFAR-10 dataset from a file or folder you
  pass, from a local data folder, or from Keras' download.
* :func:`load_cifar10_sample` returns 6,000 CIFAR-10 images shipped inside the
  package, so examples and tests work offline.
* :func:`load_image_folder` indexes a folder with one subfolder per class and reads
  the images on demand (all at once, by slices, or batch by batch).
* :func:`load_image_list` reads the image files a CSV file (or a DataFrame) lists,
  with their labels, on demand like an image folder.
* :func:`from_keras_data` reads a ``tf.data.Dataset`` or ``keras.utils.PyDataset``,
  :func:`from_hf_dataset` a Hugging Face ``datasets.Dataset`` (``transferkit[hf]``);
  :func:`as_image_source` is what every entry point calls on the images it takes, so
  those can be passed as they are.

Importing this module is cheap: Keras is imported only when a download is tried,
and Pillow only when images are decoded.
"""

# The package is split by concept; each module's docstring records its formats and
# invariants. Everything public is re-exported here, and other transferkit modules use
# only these names, or the public functions of `images` (reading and finding image files):
#   cifar10.py       load_cifar10 and its sources, load_cifar10_or_sample, the bundled sample
#   on_demand.py     OnDemandImages: the array-like protocol of images decoded on demand
#                    (image folders, image lists, HF datasets), hash_file
#   image_folder.py  load_image_folder, ImageFolderDataset and its fingerprint
#   images.py        finding image files on disk and decoding one to RGB uint8
#   _archive.py      safe tar extraction and the restricted unpickler
#   _paths.py        the data folder ($TRANSFERKIT_DATA), Keras' cache folders
#   _subset.py       balanced_subset
#   stream.py        ImageStream: images made on demand, larger than memory; read_in_order
#   image_list.py    load_image_list: a CSV file or DataFrame of image paths and labels
#   keras_data.py    tf.data.Dataset and keras.utils.PyDataset as sources (KerasDataSource)
#   hf.py            from_hf_dataset: a Hugging Face datasets.Dataset of images
#   sources.py       as_image_source: what every entry point accepts as images, one place

from __future__ import annotations

from ._archive import RefusedGlobalError as _RefusedGlobalError  # noqa: F401 (kept importable)
from ._paths import DATA_DIR_ENV, get_data_dir
from ._subset import balanced_subset
from .cifar10 import (
    CIFAR10_CLASSES,
    CIFAR10_URL,
    load_cifar10,
    load_cifar10_or_sample,
    load_cifar10_sample,
)
from .cifar10 import Arrays as Arrays  # the loaders' return type, importable as before
from .hf import HFImageDataset, from_hf_dataset
from .image_folder import ImageFolderDataset, load_image_folder
from .image_list import ImageListDataset, load_image_list
from .images import IMAGE_EXTENSIONS, INTERPOLATIONS
from .keras_data import KerasDataSource, from_keras_data
from .sources import as_image_source
from .stream import ImageStream

__all__ = [
    "ImageStream",
    "KerasDataSource",
    "as_image_source",
    "from_keras_data",
    "CIFAR10_CLASSES",
    "CIFAR10_URL",
    "DATA_DIR_ENV",
    "IMAGE_EXTENSIONS",
    "INTERPOLATIONS",
    "ImageFolderDataset",
    "ImageListDataset",
    "HFImageDataset",
    "from_hf_dataset",
    "load_image_list",
    "balanced_subset",
    "get_data_dir",
    "load_cifar10",
    "load_cifar10_or_sample",
    "load_cifar10_sample",
    "load_image_folder",
]
