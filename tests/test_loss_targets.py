"""Losses called directly, with every form of target their docstrings accept, against float64 NumPy.

The training loop hands the losses targets that ``prepare_xy`` has already shaped; these tests call the
losses the way a user of the public classes does: integer labels of any integer dtype, ``(batch,)``
float targets for one output, 0/1 integer labels for one output, float64 targets for a float32 model.
Also: loss names and aliases, the errors naming the loss, and ``one_hot`` / ``as_targets`` on their own.
"""

from __future__ import annotations

import numpy as np
import pytest

import xpnet
from xpnet import MSE, BinaryCrossEntropy, CrossEntropy, SoftmaxCrossEntropy, to_numpy
from xpnet import losses

Z = np.array([[2.0, -1.0, 0.5], [0.1, 0.2, -3.0], [-1.0, 4.0, 1.0], [0.0, 0.0, 0.0]])
LABELS = np.array([0, 2, 1, 1])
Z1 = np.array([[3.0], [-2.0], [0.5], [-0.25]])  # one output
T1 = np.array([1.0, 0.0, 0.0, 1.0])


def _sce(z, labels):
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return -log_p[np.arange(len(labels)), labels].mean()


def _bce(z, t):
    s = 1 / (1 + np.exp(-z))
    return (-(t * np.log(s) + (1 - t) * np.log(1 - s))).mean()


def _value(loss, dev, pred, target):
    return float(to_numpy(loss(dev.asarray(pred, "float32"), dev.asarray(target, None))))  # keep int labels


@pytest.mark.parametrize("int_dtype", ["uint8", "int32", "int64", "uint64"])
def test_integer_labels_of_any_integer_dtype(dev, int_dtype):
    """uint8 is what IDX files hold; uint64 and int64 have no common type in the standard (array-api-strict
    refuses to compare them), so the class indices must take the labels' dtype."""
    labels = dev.asarray(LABELS, int_dtype)
    z = dev.asarray(Z, "float32")
    assert float(to_numpy(SoftmaxCrossEntropy()(z, labels))) == pytest.approx(_sce(Z, LABELS), rel=1e-6)
    t = np.eye(3)[LABELS]
    assert float(to_numpy(MSE()(z, labels))) == pytest.approx(0.5 * ((Z - t) ** 2).sum() / 4, rel=1e-6)


@pytest.mark.parametrize("target", ["float-1d", "float-column", "int-labels"])
def test_one_output_targets_as_a_vector_a_column_or_labels(dev, target):
    t = {"float-1d": T1, "float-column": T1.reshape(-1, 1), "int-labels": T1.astype(np.int64)}[target]
    assert _value(BinaryCrossEntropy(), dev, Z1, t) == pytest.approx(_bce(Z1, T1.reshape(-1, 1)), rel=1e-6)
    assert _value(MSE(), dev, Z1, t) == pytest.approx(0.5 * ((Z1[:, 0] - T1) ** 2).sum() / 4, rel=1e-6)
    loss = BinaryCrossEntropy()
    loss(dev.asarray(Z1, "float32"), dev.asarray(t, None))
    grad = loss.backward()
    assert tuple(grad.shape) == (4, 1) and grad.dtype == dev.dtype("float32")
    np.testing.assert_allclose(to_numpy(grad)[:, 0], (1 / (1 + np.exp(-Z1[:, 0])) - T1) / 4, rtol=1e-6)


def test_float64_targets_are_cast_to_the_prediction_dtype(dev):
    t = np.eye(3)[LABELS]  # float64
    loss = SoftmaxCrossEntropy()
    value = loss(dev.asarray(Z, "float32"), dev.asarray(t, "float64"))
    assert value.dtype == dev.dtype("float32")
    grad = loss.backward()
    assert grad.dtype == dev.dtype("float32")
    p = np.exp(Z) / np.exp(Z).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(to_numpy(grad), (p - t) / 4, rtol=1e-5, atol=1e-7)
    for cls in (MSE, CrossEntropy, BinaryCrossEntropy):
        assert cls()(dev.asarray(1 / (1 + np.exp(-Z)), "float32"), dev.asarray(t, "float64")).dtype == \
            dev.dtype("float32"), cls.__name__


def test_one_hot_and_as_targets_find_the_namespace_themselves(dev):
    labels = dev.asarray(np.array([2, 0, 1]), "int64")
    onehot = losses.one_hot(labels, 4, dev.dtype("float32"))
    np.testing.assert_array_equal(to_numpy(onehot), np.eye(4)[[2, 0, 1]])
    assert onehot.dtype == dev.dtype("float32") and xpnet.device_of(onehot) == dev
    pred = dev.asarray(np.zeros((3, 1)), "float32")
    t = losses.as_targets("X", pred, dev.asarray(np.array([0.0, 1.0, 1.0], dtype=np.float32)))
    assert tuple(t.shape) == (3, 1)
    np.testing.assert_array_equal(to_numpy(t)[:, 0], [0, 1, 1])


@pytest.mark.parametrize("cls", [MSE, SoftmaxCrossEntropy, CrossEntropy, BinaryCrossEntropy])
def test_target_errors_name_the_loss(cls):
    pred = np.zeros((4, 3), np.float32)
    name = cls.__name__
    with pytest.raises(ValueError, match=rf"^{name}: 3 targets for 4 predictions"):
        cls()(pred, np.zeros(3, np.int64))
    with pytest.raises(ValueError, match=rf"^{name}: targets of shape \(4, 2\) do not match"):
        cls()(pred, np.zeros((4, 2), np.float32))
    with pytest.raises(ValueError, match=rf"^{name}: targets of shape \(4,\) do not match"):
        cls()(pred, np.zeros(4, np.float32))  # a float vector is a target only for one output
    with pytest.raises(ValueError, match=rf"^{name}: integer labels must be 1-D"):
        cls()(pred, np.zeros((4, 3), np.int64))
    with pytest.raises(ValueError, match=rf"^{name}: predictions must be 2-D"):
        cls()(np.zeros(4, np.float32), np.zeros(4, np.int64))


@pytest.mark.parametrize("name, cls", [
    ("mse", MSE), ("MSE", MSE), ("softmax_cross_entropy", SoftmaxCrossEntropy),
    ("softmax-cross-entropy", SoftmaxCrossEntropy),
    ("cross_entropy", CrossEntropy), ("cross-entropy", CrossEntropy),
    ("categorical_crossentropy", CrossEntropy), ("sparse_categorical_crossentropy", CrossEntropy),
    ("bce", BinaryCrossEntropy), ("binary-cross-entropy", BinaryCrossEntropy),
])
def test_losses_by_name_and_alias(name, cls):
    """"softmax_" names take logits; the plain and Keras names take probabilities (Keras' own rule)."""
    assert type(losses.get(name)) is cls
    instance = cls()
    assert losses.get(instance) is instance


@pytest.mark.parametrize("name", ["ce", "CE", "xent", "crossentropy", "CrossEntropy"])
def test_ambiguous_cross_entropy_names_are_refused_with_both_choices(name):
    """They meant logits here, while "cross_entropy" meant probabilities: one spelling, two meanings."""
    with pytest.raises(ValueError, match=rf"^ambiguous loss '{name}': say which cross-entropy\. "
                                         r"loss='softmax_cross_entropy' takes logits .*loss='cross_entropy' takes "
                                         r"probabilities \(a model that ends in Softmax\(\)"):
        losses.get(name)


def test_unknown_loss_lists_the_choices():
    with pytest.raises(ValueError, match=r"unknown loss 'hinge': choose one of mse, softmax_cross_entropy, "
                                         r"cross_entropy, binary_cross_entropy or pass a Loss instance"):
        losses.get("hinge")
    with pytest.raises(ValueError, match="unknown loss 3"):
        losses.get(3)


def test_loss_repr_and_call():
    assert repr(MSE()) == "MSE()" and repr(BinaryCrossEntropy()) == "BinaryCrossEntropy()"
    z, t = np.array([[1.0, 3.0]], np.float32), np.array([[0.0, 1.0]], np.float32)
    assert float(MSE()(z, t)) == pytest.approx(0.5 * (1 + 4))


def test_binary_cross_entropy_gradient_stays_finite_for_huge_negative_logits(dev):
    """The clamp keeps exp finite; the gradient there is sigmoid(z) - t, about 0 - t."""
    z = np.array([[-1e4], [-100.0], [100.0]])
    loss = BinaryCrossEntropy()
    loss(dev.asarray(z, "float32"), dev.asarray(np.array([1.0, 0.0, 1.0], np.float32)))
    grad = to_numpy(loss.backward()).astype(np.float64)[:, 0]
    np.testing.assert_allclose(grad, [-1 / 3, 0.0, 0.0], atol=1e-30)
