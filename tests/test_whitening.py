from __future__ import annotations

import pytest
import torch

from bnexp.nn import BatchNorm, DecorrelatedBatchNorm
from bnexp.nn.whitening import inverse_sqrt

TOL = {"rtol": 1e-9, "atol": 1e-9}


def correlated(n: int, c: int, seed: int, spatial: tuple[int, ...] = ()) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(c, c, generator=g, dtype=torch.float64)
    z = torch.randn(n, *spatial, c, generator=g, dtype=torch.float64) @ mix.T + 3.0
    return z.movedim(-1, 1).contiguous()


@pytest.mark.parametrize(("c", "group", "spatial"), [(6, 16, ()), (16, 16, (3, 3)), (10, 4, ()), (7, 3, (2, 2))])
def test_the_output_covariance_of_each_group_is_the_identity(c, group, spatial):
    x = correlated(64, c, seed=c, spatial=spatial)
    layer = DecorrelatedBatchNorm(c, group_size=group, eps=1e-12).double()
    y = layer(x).transpose(0, 1).reshape(c, -1)
    cov = (y - y.mean(1, keepdim=True)) @ (y - y.mean(1, keepdim=True)).T / y.shape[1]
    start = 0
    for size in layer.sizes:
        block = cov[start : start + size, start : start + size]
        torch.testing.assert_close(block, torch.eye(size, dtype=torch.float64), rtol=0, atol=1e-7)
        start += size
    assert sum(layer.sizes) == c and all(s <= group for s in layer.sizes)
    # BN alone leaves the channels correlated: the test can fail
    z = BatchNorm(c, eps=1e-12).double()(x).transpose(0, 1).reshape(c, -1)
    assert (z @ z.T / z.shape[1] - torch.eye(c, dtype=torch.float64)).abs().max() > 0.1


def test_groups_of_one_channel_are_batchnorm_in_training_eval_gradients_and_running_statistics():
    torch.manual_seed(0)
    dbn, bn = DecorrelatedBatchNorm(5, group_size=1).double(), BatchNorm(5).double()
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5), bn.bias.uniform_(-0.5, 0.5)
        dbn.weight.copy_(bn.weight), dbn.bias.copy_(bn.bias)
    for step in range(3):
        x = (correlated(8, 5, seed=step, spatial=(2, 3)) * (step + 1)).requires_grad_()
        x2 = x.detach().clone().requires_grad_()
        y1, y2 = dbn(x), bn(x2)
        torch.testing.assert_close(y1, y2, **TOL)
        weights = torch.arange(y1.numel(), dtype=torch.float64).view_as(y1).cos()
        (y1 * weights).sum().backward(), (y2 * weights).sum().backward()
        torch.testing.assert_close(x.grad, x2.grad, **TOL)
    torch.testing.assert_close(dbn.weight.grad, bn.weight.grad, **TOL)
    torch.testing.assert_close(dbn.running_mean, bn.running_mean, **TOL)
    torch.testing.assert_close(dbn.running_cov.flatten(), bn.running_var, **TOL)
    x = correlated(4, 5, seed=9, spatial=(2, 3))
    torch.testing.assert_close(dbn.eval()(x), bn.eval()(x), **TOL)


@pytest.mark.parametrize(("c", "group", "affine"), [(4, 4, True), (5, 2, True), (3, 2, False)])
def test_gradcheck_in_float64(c, group, affine):
    x = correlated(6, c, seed=1, spatial=(2,)).requires_grad_()
    layer = DecorrelatedBatchNorm(c, group_size=group, affine=affine).double()
    if affine:
        with torch.no_grad():
            layer.weight.uniform_(0.5, 1.5), layer.bias.uniform_(-0.5, 0.5)
    assert torch.autograd.gradcheck(layer, (x,))
    assert torch.autograd.gradcheck(layer.eval(), (x,))


def test_the_inverse_square_root_is_right_and_its_gradient_is_finite_at_repeated_eigenvalues():
    a = torch.randn(4, 4, dtype=torch.float64)
    s = a @ a.T + torch.eye(4, dtype=torch.float64)
    w = inverse_sqrt(s)
    torch.testing.assert_close(w @ s @ w, torch.eye(4, dtype=torch.float64), **TOL)
    assert torch.autograd.gradcheck(lambda m: inverse_sqrt((m + m.T) / 2), (s.clone().requires_grad_(),))
    # at 2 I every eigenvalue is repeated: autograd through eigh divides by zero there, the closed form does not;
    # d(S^-1/2) = -1/2 * 2^(-3/2) dS, so the gradient of sum(W) is -1/2 * 2^(-3/2) * ones
    eye = (2 * torch.eye(3, dtype=torch.float64)).requires_grad_()
    inverse_sqrt(eye).sum().backward()
    torch.testing.assert_close(eye.grad, torch.full((3, 3), -0.5 * 2**-1.5, dtype=torch.float64), **TOL)


def test_eval_mode_whitens_with_the_running_estimates():
    layer = DecorrelatedBatchNorm(3, group_size=3, momentum=None, affine=False).double()
    batches = [correlated(20, 3, seed=s) for s in range(4)]
    for x in batches:
        layer(x)
    mean = torch.stack([x.mean(0) for x in batches]).mean(0)
    cov = torch.stack([torch.cov(x.T) for x in batches]).mean(0)  # unbiased, as BN's running variance
    torch.testing.assert_close(layer.running_mean, mean, **TOL)
    torch.testing.assert_close(layer.running_cov[0], cov, **TOL)
    x = correlated(5, 3, seed=7)
    lam, d = torch.linalg.eigh(cov + 1e-5 * torch.eye(3, dtype=torch.float64))
    expected = (x - mean) @ (d @ torch.diag(lam.rsqrt()) @ d.T).T
    torch.testing.assert_close(layer.eval()(x), expected, **TOL)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="more than 1 value"):
        DecorrelatedBatchNorm(3)(torch.randn(1, 3))
    with pytest.raises(ValueError, match="expects input"):
        DecorrelatedBatchNorm(3)(torch.randn(4, 5))


def test_reset_running_stats_gives_mean_zero_and_identity_covariance():
    layer = DecorrelatedBatchNorm(5, group_size=2)
    layer(correlated(16, 5, seed=3).float())
    layer.reset_running_stats()
    assert layer.running_mean.abs().sum() == 0 and int(layer.num_batches_tracked) == 0
    assert torch.equal(layer.running_cov, torch.eye(2).repeat(2, 1, 1))
    assert torch.equal(layer.running_cov_rest, torch.eye(1))
