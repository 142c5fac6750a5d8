"""Fine-tuning: from a frozen backbone and its cached head to a fine-tuned classifier.

* :class:`FineTuner` -- trains the top blocks of a backbone together with the head
  fitted on its cached features (the warm start), scikit-learn style.
* :class:`FineTunedExtractor` -- the fine-tuned backbone as an extractor again, with
  its own fingerprint (so the cache keeps its features apart from the frozen ones).

The package's modules: ``_estimator`` (FineTuner), ``_model`` (the network a
fine-tune trains: augmentation, backbone, gradient scale, head; which layers train),
``_checkpoint`` (per-epoch checkpoints and resuming, format in its docstring),
``_extractor`` (FineTunedExtractor and its file format).
"""

from __future__ import annotations

from ._estimator import FineTuner
from ._extractor import FineTunedExtractor

__all__ = ["FineTuner", "FineTunedExtractor"]
