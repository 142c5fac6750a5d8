"""Classification heads trained on extracted feature vectors.

A head is a scikit-learn compatible classifier that maps feature vectors (a float
array of shape ``(n_samples, n_features)``, as produced by an extractor or read from a
:class:`~transferkit.FeatureCache`) to class labels.

* :class:`DenseHead` -- a small Keras softmax network (Dense layers + dropout).
* :class:`SklearnHead` -- wraps any scikit-learn classifier, with optional
  standardization of the features.

Both follow scikit-learn's conventions (parameters stored untouched in ``__init__``,
validation in ``fit``, learned attributes ending in ``_``), so they work inside
:class:`~sklearn.pipeline.Pipeline` and :class:`~sklearn.model_selection.GridSearchCV`.
Both accept the same labels: integers or strings, or one-hot rows (soft labels are
refused; see ``transferkit._labels``).

A fitted head (a DenseHead, or a linear scikit-learn classifier in a SklearnHead, bare
or at the end of a Pipeline of StandardScalers) becomes a Keras model with
:func:`head_to_keras`, to warm-start fine-tuning or export it as one network.

Heads are saved to a single zip file with :meth:`DenseHead.save` /
:meth:`SklearnHead.save` and read back with :func:`load_head`. TensorFlow and Keras
are imported only when a :class:`DenseHead` is fitted, used or loaded.

Examples
--------
>>> from sklearn.linear_model import LogisticRegression
>>> from transferkit.heads import SklearnHead, load_head
>>> head = SklearnHead(LogisticRegression(max_iter=2000)).fit(f_train, y_train)  # doctest: +SKIP
>>> head.score(f_test, y_test)  # doctest: +SKIP
>>> head.save("head.tkhead")  # doctest: +SKIP
>>> load_head("head.tkhead").predict(f_test)  # doctest: +SKIP
"""

# The package's modules:
#
# * ``_common``: what both heads share (fitted check, feature, label and scalar checks,
#   ``score``);
# * ``dense``: DenseHead;  ``sklearn_head``: SklearnHead;
# * ``_format``: the head file format (layout and invariants in its docstring), ``load_head``
#   and the functions tools use instead of opening head files themselves:
#   ``save_head(head, path, provenance=...)``, ``read_head_metadata(path)`` and
#   ``read_head_provenance(path)`` (importable from here, not part of ``__all__``);
#   likewise, from ``_common``, ``class_probabilities(head, X)`` (``predict_proba``, or the
#   ``softmax`` of the decision function for classifiers without it) and ``softmax``;
# * ``_keras``: ``head_to_keras`` (a fitted head as a Keras model, for fine-tuning).

from __future__ import annotations

from ._common import class_probabilities as class_probabilities
from ._common import softmax as softmax
from ._format import HEAD_FORMAT_VERSION, load_head
from ._format import read_head_metadata as read_head_metadata
from ._format import read_head_provenance as read_head_provenance
from ._format import save_head as save_head
from ._keras import head_to_keras
from .dense import DenseHead
from .sklearn_head import SklearnHead

__all__ = ["DenseHead", "SklearnHead", "load_head", "head_to_keras", "HEAD_FORMAT_VERSION"]

# Until the split into modules these lived in ``transferkit.heads`` itself, and pickles
# of heads record ``transferkit.heads.DenseHead``: keep that the classes' home, so old
# and new pickles load alike and the public path is the one shown.
for _public in (DenseHead, SklearnHead, load_head, head_to_keras):
    _public.__module__ = __name__
del _public
