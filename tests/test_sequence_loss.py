"""SoftmaxCrossEntropy on a language model's (B, T, V) logits with (B, T) integer targets: the mean over all B*T
positions, as PyTorch's cross_entropy(logits.view(-1, V), targets.view(-1)); any number of leading axes; its
gradient against torch autograd (float64, 1e-10) and finite differences; operations independent of B and T;
and accuracy on such outputs, the fraction of positions right."""

from __future__ import annotations

import collections

import numpy as np
import pytest

import xpnet
from xpnet import SoftmaxCrossEntropy, metrics, to_numpy

SHAPES = [(2, 3, 5), (3, 5), (2, 2, 3, 4)]  # (B, T, V), one position per row, two leading axes besides the batch


def _data(shape, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(0.0, 3.0, shape), rng.integers(0, shape[-1], shape[:-1])


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_value_and_gradient_equal_torch_autograd_in_float64(dev, shape):
    torch = pytest.importorskip("torch")
    z, t = _data(shape)
    loss = SoftmaxCrossEntropy()
    value = loss.forward(dev.asarray(z, "float64"), dev.asarray(t, "int64"))
    grad = to_numpy(loss.backward())
    zt = torch.tensor(z, requires_grad=True)
    want = torch.nn.functional.cross_entropy(zt.reshape(-1, shape[-1]), torch.tensor(t).reshape(-1))
    want.backward()
    assert float(to_numpy(value)) == pytest.approx(want.item(), rel=1e-10)
    np.testing.assert_allclose(grad, zt.grad.numpy(), rtol=1e-10, atol=1e-15)
    assert grad.shape == shape


def test_soft_targets_shaped_like_the_logits_equal_torch():
    """Probability rows over (B, T, V), as torch's cross_entropy with class probabilities."""
    torch = pytest.importorskip("torch")
    z, _ = _data((2, 3, 4))
    p = np.random.default_rng(1).dirichlet(np.ones(4), size=(2, 3))
    loss = SoftmaxCrossEntropy()
    value = loss.forward(z, p)
    zt = torch.tensor(z, requires_grad=True)
    want = torch.nn.functional.cross_entropy(zt.reshape(-1, 4), torch.tensor(p).reshape(-1, 4))
    want.backward()
    assert float(value) == pytest.approx(want.item(), rel=1e-10)
    np.testing.assert_allclose(loss.backward(), zt.grad.numpy(), rtol=1e-10, atol=1e-15)


def test_gradient_equals_finite_differences():
    z, t = _data((2, 3, 4), seed=2)
    loss = SoftmaxCrossEntropy()
    loss.forward(z, t)
    grad = loss.backward()
    eps, numeric = 1e-6, np.empty_like(z)
    for i in np.ndindex(z.shape):
        up, down = z.copy(), z.copy()
        up[i] += eps
        down[i] -= eps
        numeric[i] = (float(loss.forward(up, t)) - float(loss.forward(down, t))) / (2 * eps)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9)


def test_float32_stays_float32_and_huge_logits_stay_finite(dev):
    z, t = _data((2, 3, 5))
    loss = SoftmaxCrossEntropy()
    value = loss.forward(dev.asarray(z * 1e4, "float32"), dev.asarray(t, "int64"))
    grad = loss.backward()
    assert value.dtype == dev.dtype("float32") and grad.dtype == dev.dtype("float32")
    assert np.isfinite(float(to_numpy(value))) and np.isfinite(to_numpy(grad)).all()


def test_the_operations_do_not_depend_on_batch_or_positions():
    pytest.importorskip("array_api_strict")
    import opcount

    dev = xpnet.device("cpu", backend="array-api-strict")
    tallies = []
    for shape in [(2, 3, 5), (16, 64, 5)]:
        z, t = _data(shape)
        z, t = dev.asarray(z, "float32"), dev.asarray(t, "int64")
        loss = SoftmaxCrossEntropy()
        with opcount.counting() as tally:
            loss.forward(z, t)
            loss.backward()
        assert tally.syncs == []
        tallies.append(tally.ops)
    assert tallies[0] == tallies[1]
    assert sum(tallies[0].values()) <= 17, tallies[0]  # today's count: a new operation shows here


@pytest.mark.parametrize("target_shape, message", [
    ((2, 4), r"integer targets of shape \(2, 4\) for logits of shape \(2, 3, 5\): expected \(2, 3\), one class "
             r"id per position"),
    ((2, 3, 4), r"targets of shape \(2, 3, 4\) do not match logits of shape \(2, 3, 5\)"),
])
def test_targets_of_the_wrong_shape_say_which_shape_fits(target_shape, message):
    z = np.zeros((2, 3, 5))
    t = np.zeros(target_shape, np.int64 if len(target_shape) == 2 else np.float64)
    with pytest.raises(ValueError, match="^SoftmaxCrossEntropy: " + message):
        SoftmaxCrossEntropy().forward(z, t)


def test_accuracy_and_top_k_count_positions_not_rows(dev):
    """Each row's hit is the fraction of its positions right: summed over rows and divided by the rows, the
    fraction of all B*T positions (the rows of one batch may have different counts right)."""
    z, t = _data((3, 4, 5), seed=3)
    out, target = dev.asarray(z, "float32"), dev.asarray(t, "int64")
    hits = to_numpy(metrics.Accuracy().hits(out, target, 0.5))
    assert hits.shape == (3,)
    np.testing.assert_allclose(hits, (z.argmax(-1) == t).mean(axis=1), rtol=1e-6)
    above = (z > np.take_along_axis(z, t[..., None], -1)).sum(-1)
    top2 = to_numpy(metrics.TopKAccuracy(2).hits(out, target, 0.5))
    np.testing.assert_allclose(top2, (above < 2).mean(axis=1), rtol=1e-6)
    assert collections.Counter(np.round(hits * 4).astype(int).tolist()) != collections.Counter([4, 4, 4])
