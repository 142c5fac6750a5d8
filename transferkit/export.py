"""One exportable classifier: backbone + head as a single Keras model, and reading it back.

:func:`classifier_model` joins an extractor (frozen, or fine-tuned by a
:class:`~transferkit.FineTuner`) and a head into one Keras model that maps uint8 RGB
images of any size to class probabilities: it resizes them to the size the head was
trained at, runs the backbone (with its own resizing and preprocessing inside) and the
head (:func:`transferkit.heads.head_to_keras`). Its last layer, ``classifier_info``
(``ClassifierInfo`` in ``transferkit/extractors/_layers.py``, an identity layer), carries the class
names and that image size in its configuration.

:func:`export_classifier` writes it as

- ``"keras"``: a ``.keras`` file, loadable in Keras' safe mode after ``import
  transferkit.extractors._layers`` (which registers transferkit's layers), or with
  :func:`load_classifier`;
- ``"saved_model"``: a TensorFlow SavedModel folder for serving, with the signature
  ``serve`` (``images``: uint8 ``(n, h, w, 3)`` -> ``probabilities``), the signature
  ``class_names`` (no inputs -> the names) and ``assets/transferkit.json``;
- ``"tflite"``: a TensorFlow Lite flat buffer converted from that SavedModel, with the
  class names beside it in ``<name>.json``.

Every format is written atomically: an existing file or folder at the path is replaced
only once the new one is complete.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ._atomic import atomic_path, atomic_write_text
from ._lazy import import_keras, import_tf
from ._validation import check_choice, check_images, describe
from .datasets import as_image_source
from .exceptions import InvalidInputError

__all__ = ["EXPORT_FORMATS", "ExportedClassifier", "classifier_model", "export_classifier",
           "load_classifier"]

#: Formats :func:`export_classifier` writes.
EXPORT_FORMATS = ("keras", "saved_model", "tflite")
_INFO = "transferkit.json"


def _image_size_of(extractor: Any, image_size: Any) -> tuple[int, int]:
    if image_size is not None:
        if (not isinstance(image_size, tuple | list) or len(image_size) != 2
                or not all(isinstance(v, int) and v > 0 for v in image_size)):
            raise InvalidInputError(
                "`image_size` must be a (height, width) pair of positive integers; received "
                f"{describe(image_size)}.")
        return (int(image_size[0]), int(image_size[1]))
    for attr in ("image_size_", "image_shape_"):
        size = getattr(extractor, attr, None)
        if size is not None:
            return (int(size[0]), int(size[1]))
    side = getattr(extractor, "input_size", None)
    if side:
        return (int(side), int(side))
    raise InvalidInputError(
        "`image_size` is needed: this extractor computes features at the images' own size "
        "(no `input_size`), so say which size the head's features were extracted at, e.g. "
        "image_size=(32, 32).")


def classifier_model(
    extractor: Any = None, head: Any = None, *, fine_tuner: Any = None,
    image_size: tuple[int, int] | None = None,
) -> Any:
    """One Keras model: uint8 images of any size -> class probabilities.

    Parameters
    ----------
    extractor : BaseExtractor, optional
        The extractor whose features ``head`` was fitted on (frozen, or a
        :class:`~transferkit.fine_tune.FineTunedExtractor`).
    head : fitted head, optional
        A head :func:`transferkit.heads.head_to_keras` converts (DenseHead, linear
        scikit-learn heads).
    fine_tuner : FineTuner, optional
        A fitted :class:`~transferkit.FineTuner`, instead of ``extractor`` and ``head``.
    image_size : (int, int), optional
        The size the head's features were computed at; images are resized to it first.
        Defaults to the fine-tune's or the extractor's (``input_size``, or a CifarCNN's
        image size).

    Returns
    -------
    keras.Model
        Input ``images``: uint8 (n, h, w, 3), any h and w. Output: float32
        probabilities (n, n_classes) in the order of the head's ``classes_``.
    """
    keras = import_keras()
    from .extractors._layers import ClassifierInfo, ResizeImages
    from .heads import head_to_keras

    if fine_tuner is not None:
        if extractor is not None or head is not None:
            raise InvalidInputError(
                "pass either `fine_tuner` or `extractor` and `head`, not both.")
        if not hasattr(fine_tuner, "classifier_model"):
            raise InvalidInputError(
                f"`fine_tuner` must be a fitted FineTuner; received {describe(fine_tuner)}.")
        inner = fine_tuner.classifier_model()
        size = tuple(int(s) for s in fine_tuner.image_size_)
        classes = np.asarray(fine_tuner.classes_)
    else:
        if extractor is None or head is None:
            raise InvalidInputError(
                "`extractor` and `head` are both needed (or a fitted `fine_tuner`); received "
                f"extractor={describe(extractor)}, head={describe(head)}.")
        size = _image_size_of(extractor, image_size)
        backbone = extractor.feature_model(size)
        head_model = head_to_keras(head)
        width = int(backbone.output_shape[-1])
        if int(head_model.input_shape[-1]) != width:
            raise InvalidInputError(
                f"`head` was fitted on {int(head_model.input_shape[-1])} features per image, "
                f"but `extractor` gives {width} for {size[0]}x{size[1]} images.")
        x = keras.Input(shape=(*size, 3), dtype="float32", name="images")
        inner = keras.Model(x, head_model(backbone(x, training=False)), name="classifier")
        classes = np.asarray(head.classes_)
    images = keras.Input(shape=(None, None, 3), dtype="uint8", name="images")
    x = ResizeImages(size, "bilinear", name="resize_to_head")(images)
    probs = inner(x, training=False)
    names = [str(c) for c in classes.tolist()]
    out = ClassifierInfo(names, list(size), name="classifier_info")(probs)
    return keras.Model(images, out, name="transferkit_classifier")


def export_classifier(
    source: Any, path: str | os.PathLike[str], *, format: str = "keras",  # noqa: A002
    head: Any = None, image_size: tuple[int, int] | None = None,
) -> Path:
    """Write backbone + head as one classifier file (see the module's formats).

    Parameters
    ----------
    source : FineTuner, extractor or keras.Model
        A fitted :class:`~transferkit.FineTuner`; or an extractor, with ``head``; or a
        model made by :func:`classifier_model`.
    path : str or os.PathLike
        A ``.keras`` file, a SavedModel folder, or a ``.tflite`` file.
    format : {"keras", "saved_model", "tflite"}, default="keras"
    head : fitted head, optional
        With an extractor as ``source``.
    image_size : (int, int), optional
        See :func:`classifier_model`.

    Returns
    -------
    pathlib.Path
    """
    check_choice("format", format, EXPORT_FORMATS)
    path = Path(path)
    if format == "keras" and path.suffix != ".keras":
        raise InvalidInputError(
            f"`path` must end in '.keras' for format='keras'; received {str(path)!r}.")
    if format == "tflite" and path.suffix != ".tflite":
        raise InvalidInputError(
            f"`path` must end in '.tflite' for format='tflite'; received {str(path)!r}.")
    if format == "saved_model" and path.exists() and not path.is_dir():
        raise InvalidInputError(
            f"`path` must be a folder (or not exist) for format='saved_model'; received "
            f"{str(path)!r}, which is a file.")
    model = _as_classifier(source, head, image_size)
    info = _info(model)
    if format == "keras":
        with atomic_path(path, suffix=".keras") as tmp:
            model.save(tmp)
        return path
    with tempfile.TemporaryDirectory(dir=path.parent if path.parent.exists() else None,
                                     prefix=f".{path.name}.") as tmp_dir:
        saved = Path(tmp_dir) / "saved_model"
        _write_saved_model(model, saved, info)
        if format == "saved_model":
            _replace_folder(saved, path)
            return path
        tf = import_tf()
        converter = tf.lite.TFLiteConverter.from_saved_model(str(saved),
                                                             signature_keys=["serve"])
        data = converter.convert()
    with atomic_path(path, suffix=".tflite") as tmp:
        tmp.write_bytes(data)
    atomic_write_text(path.with_suffix(".json"), json.dumps(info))
    return path


def _as_classifier(source: Any, head: Any, image_size: Any) -> Any:
    keras = import_keras()
    if isinstance(source, keras.Model):
        if head is not None:
            raise InvalidInputError("`head` must be None when `source` is a Keras model.")
        _info(source)  # made by classifier_model
        return source
    if hasattr(source, "classifier_model"):  # a fitted FineTuner
        return classifier_model(fine_tuner=source)
    return classifier_model(source, head, image_size=image_size)


def _info(model: Any) -> dict[str, Any]:
    try:
        layer = model.get_layer("classifier_info")
    except ValueError as exc:
        raise InvalidInputError(
            "`source` must be a FineTuner, an extractor with a head, or a model made by "
            "transferkit.export.classifier_model (it has no `classifier_info` layer).") from exc
    return {"format": "transferkit.classifier", "class_names": list(layer.class_names),
            "image_size": list(layer.image_size)}


def _write_saved_model(model: Any, folder: Path, info: dict[str, Any]) -> None:
    keras = import_keras()
    tf = import_tf()
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name="serve",
        fn=lambda images: {"probabilities": model(images, training=False)},
        input_signature=[tf.TensorSpec((None, None, None, 3), tf.uint8, name="images")],
    )
    names = tf.constant(info["class_names"])
    archive.add_endpoint(name="class_names", fn=lambda: {"class_names": names},
                         input_signature=[])
    archive.write_out(str(folder), verbose=False)
    assets = folder / "assets"
    assets.mkdir(exist_ok=True)
    (assets / _INFO).write_text(json.dumps(info), encoding="utf-8")


def _replace_folder(new: Path, target: Path) -> None:
    """Move folder ``new`` to ``target``, replacing what is there only once in place."""
    if not target.exists():
        os.replace(new, target)
        return
    aside = target.with_name(f".{target.name}.old")
    if aside.exists():
        shutil.rmtree(aside)
    os.replace(target, aside)
    os.replace(new, target)
    shutil.rmtree(aside, ignore_errors=True)


class ExportedClassifier:
    """A classifier read by :func:`load_classifier`.

    Attributes
    ----------
    classes_ : ndarray of str
        The class names, in the order of the probability columns.
    image_size : (int, int)
        The size images are resized to inside.
    model : keras.Model or the loaded SavedModel
    """

    def __init__(self, model: Any, info: dict[str, Any], serve: Any = None) -> None:
        self.model = model
        self.classes_ = np.asarray(info["class_names"], dtype=str)
        self.image_size = tuple(int(s) for s in info["image_size"])
        self._serve = serve

    def predict_proba(self, images: Any, *, batch_size: int = 64) -> np.ndarray:
        """Probabilities (n, n_classes) for uint8 RGB images (n, h, w, 3) of any size."""
        arr = np.asarray(check_images(as_image_source(images, name="images"), name="images"))
        if arr.dtype != np.uint8:
            arr = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
        out = []
        for i in range(0, len(arr), batch_size):
            batch = arr[i:i + batch_size]
            if self._serve is not None:
                probs = self._serve(images=batch)["probabilities"]
            else:
                probs = self.model(batch, training=False)
            out.append(np.asarray(probs, dtype=np.float64))
        return np.concatenate(out) if out else np.zeros((0, len(self.classes_)))

    def predict(self, images: Any) -> np.ndarray:
        """The most probable class name of each image."""
        return self.classes_[np.argmax(self.predict_proba(images), axis=1)]


def load_classifier(path: str | os.PathLike[str]) -> ExportedClassifier:
    """Read a classifier written by :func:`export_classifier` (``.keras`` or SavedModel).

    A ``.keras`` file loads in Keras' safe mode (no arbitrary code runs).
    """
    keras = import_keras()
    path = Path(path)
    if path.is_dir():
        info_file = path / "assets" / _INFO
        if not info_file.is_file():
            raise InvalidInputError(
                f"`path` {str(path)!r} is not a SavedModel written by export_classifier "
                f"(no assets/{_INFO}).")
        tf = import_tf()
        loaded = tf.saved_model.load(str(path))
        info = json.loads(info_file.read_text(encoding="utf-8"))
        return ExportedClassifier(loaded, info, serve=loaded.signatures["serve"])
    if path.suffix != ".keras" or not path.is_file():
        raise InvalidInputError(
            f"`path` must be a .keras file or a SavedModel folder written by "
            f"export_classifier; received {str(path)!r}.")
    from .extractors import _layers  # noqa: F401  (registers transferkit's layers)

    try:
        model = keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as exc:  # noqa: BLE001 - name the file whatever Keras raises
        raise InvalidInputError(
            f"`path` {str(path)!r} could not be loaded as a Keras classifier: {exc}") from exc
    return ExportedClassifier(model, _info(model))
