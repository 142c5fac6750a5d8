"""Image files: finding them on disk and decoding one to an RGB ``uint8`` array.

The one place that decides what an image file is and what its pixels are; both
:func:`transferkit.datasets.load_image_folder` and the ``transferkit predict``
command read images through it.

Finding (:func:`list_image_files`, :func:`expand_image_paths`):

* a file is an image when its extension, lowercased, is one of ``extensions``
  (default :data:`IMAGE_EXTENSIONS`); files and folders whose names start with
  ``.`` are skipped;
* folders are walked at any depth, following symlinked files and folders; a folder
  reached a second time (a symlink loop, or two links to one folder) is walked
  once, and a ``UserWarning`` names the link skipped. Subfolders are visited in
  sorted order, so the same link is skipped on every run.

Decoding (:func:`read_image`, :func:`read_images`, :func:`read_image_size`, and
:func:`to_rgb_array` for an image already open, as other image sources use):

* every image becomes RGB ``uint8`` of shape ``(height, width, 3)``: grayscale,
  palette, RGBA and CMYK alike; alpha is dropped (a palette image with a
  transparent colour goes through RGBA first), 16-bit grayscale keeps its 8 high
  bits;
* the EXIF orientation is applied first, so sizes are those of the image as
  displayed;
* resizing uses the Pillow filter named in :data:`INTERPOLATIONS` (Pillow
  antialiases when shrinking); an image already of the requested size is not
  resampled;
* a file Pillow cannot decode raises :class:`~transferkit.exceptions.ImageReadError`
  naming it.

Pillow is imported only when an image is opened.
"""

from __future__ import annotations

import contextlib
import glob
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..exceptions import ImageReadError, InvalidInputError

__all__ = [
    "IMAGE_EXTENSIONS",
    "INTERPOLATIONS",
    "expand_image_paths",
    "list_image_files",
    "read_image",
    "read_image_size",
    "read_images",
    "resample_filter",
    "to_rgb_array",
]

#: File extensions :func:`load_image_folder` reads by default (case-insensitive).
IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".jpg",
    ".jpeg",
    ".png",
    ".bmp",
    ".gif",
    ".webp",
    ".tif",
    ".tiff",
    ".ppm",
    ".pgm",
)

#: Resampling filters accepted as ``interpolation`` (Pillow's filters of those names).
INTERPOLATIONS: tuple[str, ...] = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")

_EXIF_ORIENTATION = 0x0112
_GLOB_CHARS = frozenset("*?[")


# --------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------


def resample_filter(interpolation: str) -> int:
    """Pillow's resampling filter named ``interpolation`` (one of :data:`INTERPOLATIONS`).

    Parameters
    ----------
    interpolation : str
        Lower-case filter name, already checked against :data:`INTERPOLATIONS`.

    Returns
    -------
    int
        The filter, as :func:`read_image` takes it.
    """
    from PIL import Image

    resampling = getattr(Image, "Resampling", Image)  # Pillow < 9.1 has no Resampling enum
    return int(getattr(resampling, interpolation.upper()))


def to_rgb_array(image: Any, size: tuple[int, int] | None, resample: int) -> np.ndarray:
    """Decode an open Pillow image to an RGB uint8 array of shape (H, W, 3), resized to ``size``.

    The decoding rules of this module (see its docstring): EXIF orientation first,
    16-bit grayscale keeps its 8 high bits, a palette image with a transparent colour
    goes through RGBA, everything ends as RGB, and the image is resampled only when
    ``size`` differs from its own. :func:`read_image` is this function applied to a
    file; other image sources (such as a Hugging Face dataset's encoded bytes) call it
    on images they open themselves, so their pixels equal those of the same file.

    Parameters
    ----------
    image : PIL.Image.Image
        An open image; it is not closed (the caller owns it).
    size : (height, width) or None
        Size to resize to; None keeps the image's size (after EXIF orientation).
    resample : int
        Pillow filter, from :func:`resample_filter`.

    Returns
    -------
    numpy.ndarray
        ``uint8`` array of shape ``(height, width, 3)``.

    Raises
    ------
    Exception
        Whatever Pillow raises for data it cannot decode (``OSError``,
        ``SyntaxError``, ``ValueError``, ...); callers name the source in their own
        error.
    """
    from PIL import Image, ImageOps

    if image.getexif().get(_EXIF_ORIENTATION, 1) != 1:
        image = ImageOps.exif_transpose(image)
    if image.mode.startswith("I;16"):  # 16-bit grayscale: keep the 8 high bits
        high = np.asarray(image, dtype=np.uint16) >> 8
        image = Image.fromarray(high.astype(np.uint8), "L")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode != "RGB":
        image = image.convert("RGB")
    if size is not None and image.size != (size[1], size[0]):
        image = image.resize((size[1], size[0]), resample=resample)
    return np.asarray(image, dtype=np.uint8)


def read_image(path: Path, size: tuple[int, int] | None, resample: int) -> np.ndarray:
    """Decode ``path`` to an RGB uint8 array of shape (H, W, 3), resized to ``size``.

    Parameters
    ----------
    path : pathlib.Path
        Image file.
    size : (height, width) or None
        Size to resize to; None keeps the image's size (after EXIF orientation).
    resample : int
        Pillow filter, from :func:`resample_filter`.

    Returns
    -------
    numpy.ndarray
        ``uint8`` array of shape ``(height, width, 3)``.

    Raises
    ------
    ImageReadError
        The file cannot be read or decoded (it is named).
    """
    from PIL import Image

    try:
        with Image.open(path) as opened:
            return to_rgb_array(opened, size, resample)
    except Exception as err:  # Pillow raises OSError, SyntaxError, ValueError, ...
        raise ImageReadError(
            f"Could not read the image file '{path}': {type(err).__name__}: {err}. Replace or "
            "remove the file (or give it an extension not listed in `extensions`)."
        ) from err


def read_images(
    files: Sequence[Path], size: tuple[int, int], interpolation: str = "bilinear"
) -> np.ndarray:
    """Decode ``files`` (see :func:`read_image`), all resized to ``size``, into one array.

    Parameters
    ----------
    files : sequence of pathlib.Path
        Image files.
    size : (height, width)
        Size every image is resized to.
    interpolation : str, default "bilinear"
        One of :data:`INTERPOLATIONS`.

    Returns
    -------
    numpy.ndarray
        ``uint8`` array of shape ``(len(files), height, width, 3)``, in ``files`` order.

    Raises
    ------
    ImageReadError
        A file cannot be read or decoded (it is named).
    """
    resample = resample_filter(interpolation)
    out = np.empty((len(files), size[0], size[1], 3), dtype=np.uint8)
    for i, file in enumerate(files):
        out[i] = read_image(file, size, resample)
    return out


def read_image_size(path: Path) -> tuple[int, int]:
    """``(height, width)`` of the image in ``path`` as displayed (after EXIF orientation).

    Only the header is read; the pixels are not decoded.

    Parameters
    ----------
    path : pathlib.Path
        Image file.

    Returns
    -------
    (int, int)
        Height and width.

    Raises
    ------
    ImageReadError
        The file cannot be opened as an image (it is named).
    """
    from PIL import Image

    try:
        with Image.open(path) as image:
            width, height = image.size
            if image.getexif().get(_EXIF_ORIENTATION, 1) in (5, 6, 7, 8):  # rotated
                width, height = height, width
    except Exception as err:
        raise ImageReadError(
            f"Could not read the image file '{path}': {type(err).__name__}: {err}. "
            "Replace or remove the file."
        ) from err
    return (height, width)


# --------------------------------------------------------------------------------------
# Finding
# --------------------------------------------------------------------------------------


def list_image_files(folder: Path, extensions: tuple[str, ...]) -> list[Path]:
    """Image files under ``folder``, at any depth, following symlinked folders.

    A folder reached a second time (a symlink loop, or two links to one folder) is
    walked once: the images are listed once, and a warning names the link skipped.

    Parameters
    ----------
    folder : pathlib.Path
        Folder to walk.
    extensions : tuple of str
        Lower-case extensions with their dot, e.g. ``(".jpg", ".png")``.

    Returns
    -------
    list of pathlib.Path
        The files, sorted by their path relative to ``folder``.

    Warns
    -----
    UserWarning
        For each folder skipped because it was reached before; the warning points
        at the caller of the function that called this one.
    """
    found = []
    seen: dict[tuple[int, int], Path] = {}
    with contextlib.suppress(OSError):
        st = os.stat(folder)
        seen[(st.st_dev, st.st_ino)] = folder
    for directory, subdirs, names in os.walk(folder, followlinks=True):
        kept = []
        for name in sorted(subdirs):  # sorted: the same link is skipped on every run
            if name.startswith("."):
                continue
            path = Path(directory, name)
            try:
                st = os.stat(path)
            except OSError:  # vanished, or a link that no longer resolves
                continue
            first = seen.setdefault((st.st_dev, st.st_ino), path)
            if first != path:
                _warn_revisited(path, first)
                continue
            kept.append(name)
        subdirs[:] = kept
        for name in names:
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in extensions:
                found.append(Path(directory, name))
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def _warn_revisited(link: Path, first: Path) -> None:
    import warnings

    target = os.path.realpath(link)
    if first in link.parents:
        reason = f"a symlink loop: it leads back to '{first}', which contains it"
    else:
        reason = f"it leads to a folder already listed as '{first}', whose images count once"
    # stacklevel 4: warn <- _warn_revisited <- list_image_files <- its caller <- that
    # caller's caller (the user's code calling load_image_folder, or the CLI command).
    warnings.warn(
        f"Skipped the folder '{link}' (-> '{target}'): {reason}.", UserWarning, stacklevel=4
    )


def expand_image_paths(patterns: Sequence[str]) -> list[Path]:
    """Expand image paths, folders and glob patterns (as given on a command line) to files.

    Each pattern, after ``~`` expansion, is

    * a glob pattern when it contains ``*``, ``?`` or ``[`` (``**`` matches at any
      depth): the files it matches, sorted;
    * a folder: its images at any depth (see :func:`list_image_files`, with
      :data:`IMAGE_EXTENSIONS`), sorted by path;
    * a file: taken as it is, whatever its extension.

    Parameters
    ----------
    patterns : sequence of str
        Paths, folders and glob patterns.

    Returns
    -------
    list of pathlib.Path
        The files in pattern order, each once (its first occurrence).

    Raises
    ------
    InvalidInputError
        A pattern matches no file, a folder holds no images, or a file does not exist.
    """
    files: list[Path] = []
    for pattern in patterns:
        expanded = os.path.expanduser(pattern)
        if _GLOB_CHARS & set(expanded):
            matches = sorted(glob.glob(expanded, recursive=True))
            matches = [m for m in matches if Path(m).is_file()]
            if not matches:
                raise InvalidInputError(f"No image files match {pattern!r}.")
            files.extend(Path(m) for m in matches)
        elif Path(expanded).is_dir():  # at any depth, through symlinked folders too
            found = sorted(list_image_files(Path(expanded), tuple(IMAGE_EXTENSIONS)))
            if not found:
                raise InvalidInputError(f"The folder {pattern!r} holds no image files.")
            files.extend(found)
        elif Path(expanded).is_file():
            files.append(Path(expanded))
        else:
            raise InvalidInputError(f"The image file {pattern!r} does not exist.")
    return list(dict.fromkeys(files))
