"""Training on a ``tf.distribute.Strategy``: checks and helpers shared by the trainable models.

:class:`~transferkit.extractors.CifarCNN` and :class:`~transferkit.heads.DenseHead` take a
``strategy`` parameter (``None`` or a ``tf.distribute.Strategy``, e.g.
``tf.distribute.MirroredStrategy()`` for several GPUs of one machine, or
``tf.distribute.MultiWorkerMirroredStrategy()`` across machines). Their ``fit`` builds and
compiles the Keras model inside ``strategy.scope()`` and multiplies the per-replica
``batch_size`` by :func:`num_replicas` to get the global batch Keras splits over the
replicas.

A strategy object holds devices, threads and (for several workers) a live cluster
connection: it cannot be pickled, and ``copy.deepcopy`` either refuses it (the default
strategy) or makes a second strategy over the same devices. So estimators keep the *same*
strategy object in
``sklearn.base.clone`` (:func:`clone_keeping_strategy`), and drop it (``strategy=None``)
when pickled or saved. TensorFlow is imported only when a strategy is actually given.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from ._validation import describe
from .exceptions import InvalidInputError, InvalidTypeError

__all__ = [
    "check_strategy",
    "clone_keeping_strategy",
    "even_sample_count",
    "fit_model",
    "num_replicas",
    "spans_workers",
    "strategy_scope",
    "without_strategy",
]


def check_strategy(strategy: Any) -> Any:
    """Return ``strategy`` if it is None or a ``tf.distribute.Strategy``; raise otherwise.

    Parameters
    ----------
    strategy : None or tf.distribute.Strategy
        The value of an estimator's ``strategy`` parameter.

    Returns
    -------
    None or tf.distribute.Strategy
        ``strategy``, unchanged.

    Raises
    ------
    InvalidTypeError
        If ``strategy`` is anything else (a name such as ``"mirrored"``, a number...).
    """
    if strategy is None:
        return None
    from ._lazy import import_tf

    tf = import_tf()
    if isinstance(strategy, tf.distribute.Strategy):
        return strategy
    hint = ""
    if isinstance(strategy, str):
        hint = (
            " Strategies are objects, not names: pass e.g. "
            "`strategy=tf.distribute.MirroredStrategy()`."
        )
    raise InvalidTypeError(
        "`strategy` must be None or a tf.distribute.Strategy instance (e.g. "
        "tf.distribute.MirroredStrategy() or tf.distribute.MultiWorkerMirroredStrategy()); "
        f"received {describe(strategy)}.{hint}"
    )


def strategy_scope(strategy: Any) -> contextlib.AbstractContextManager[Any]:
    """``strategy.scope()``, or a context that does nothing when ``strategy`` is None."""
    if strategy is None:
        return contextlib.nullcontext()
    return strategy.scope()


def num_replicas(strategy: Any) -> int:
    """Replicas that train in sync: ``strategy.num_replicas_in_sync``, 1 for None.

    With ``MultiWorkerMirroredStrategy`` it counts the replicas of every worker.
    """
    if strategy is None:
        return 1
    return int(strategy.num_replicas_in_sync)


def even_sample_count(n_samples: int, replicas: int, *, name: str | None = None) -> int:
    """The largest number of samples <= ``n_samples`` that is divisible by ``replicas``.

    ``tf.distribute`` splits a partial global batch (the last of an epoch, or the only
    one of a small set) over the replicas ``ceil(r / replicas)`` samples at a time, so
    some replicas can get *no* sample (batch normalisation then fails in training),
    or fewer than others: averaging per-replica mean losses then weights samples
    unevenly, and Keras fails to build its metrics from an uneven first batch. With a
    multiple of ``replicas`` samples every global batch splits evenly. At most
    ``replicas - 1`` samples are left out.

    Parameters
    ----------
    n_samples : int
        Samples available.
    replicas : int
        ``strategy.num_replicas_in_sync``.
    name : str, optional
        The argument that holds the samples. When given, a result of 0 raises.

    Raises
    ------
    InvalidInputError
        If ``name`` is given and there are fewer samples than replicas.
    """
    if replicas <= 1:
        return n_samples
    kept = n_samples - n_samples % replicas
    if kept == 0 and name is not None:
        raise InvalidInputError(
            f"`{name}` must hold at least as many samples as the strategy has replicas "
            f"({replicas}), so that every replica gets one; received {n_samples}."
        )
    return kept


def spans_workers(strategy: Any) -> bool:
    """Whether ``strategy`` has replicas on other workers (MultiWorkerMirroredStrategy)."""
    if strategy is None:
        return False
    try:
        local = len(strategy.extended.worker_devices)
    except (AttributeError, NotImplementedError, RuntimeError):
        return False
    return num_replicas(strategy) > local


_MULTI_WORKER_NOTE = (
    "transferkit: this strategy spans several workers. Keras 3's `Model.fit` fails with "
    "MultiWorkerMirroredStrategy across workers in some versions (at least Keras 3.15 with "
    "TensorFlow 2.21: https://github.com/keras-team/keras/issues/20585). Train on one "
    "machine with tf.distribute.MirroredStrategy, or use a Keras release that fixes it."
)


def fit_model(model: Any, strategy: Any, *args: Any, **kwargs: Any) -> Any:
    """``model.fit(*args, **kwargs)``; errors of a multi-worker run get a note saying why."""
    try:
        return model.fit(*args, **kwargs)
    except Exception as exc:
        if spans_workers(strategy) and hasattr(exc, "add_note"):  # Python >= 3.11
            exc.add_note(_MULTI_WORKER_NOTE)
        raise


@contextlib.contextmanager
def without_strategy(estimator: Any) -> Iterator[Any]:
    """Set ``estimator.strategy`` to None for the block; yield the strategy it had."""
    strategy = estimator.__dict__.get("strategy")
    if strategy is None:
        yield None
        return
    estimator.strategy = None
    try:
        yield strategy
    finally:
        estimator.strategy = strategy


def clone_keeping_strategy(estimator: Any) -> Any:
    """``sklearn.base.clone`` that gives the clone the same strategy object.

    scikit-learn deep-copies parameters that are not estimators; a strategy cannot be
    deep-copied reliably (the default strategy raises, others would duplicate devices
    and cluster connections), and two estimators meant to train on the same devices
    should share one. Everything else is cloned as usual.
    """
    from sklearn.base import BaseEstimator

    with without_strategy(estimator) as strategy:
        new = BaseEstimator.__sklearn_clone__(estimator)
    if strategy is not None:
        new.strategy = strategy
    return new
