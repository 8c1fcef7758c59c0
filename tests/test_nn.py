from __future__ import annotations

import gc
import itertools
import math
import random

import pytest
import torch
from torch import nn

from bnexp.nn import BatchNorm, BatchRenorm, LpBatchNorm, NaiveBatchNorm, NoisyBatchNorm, convert_momentum
from bnexp.nn.batchnorm import _BatchNormTrain

TORCH_BN = {2: nn.BatchNorm1d, 3: nn.BatchNorm1d, 4: nn.BatchNorm2d, 5: nn.BatchNorm3d}
TOL = {torch.float64: {"rtol": 1e-10, "atol": 1e-10}, torch.float32: {"rtol": 1e-5, "atol": 1e-5}}


def random_cases(count: int, seed: int):
    """Randomized shapes and settings covering the issue's grid: N 2..64, C 1..256, spatial sizes incl. 1."""
    rng = random.Random(seed)
    settings = list(itertools.product([True, False], [0.1, 0.01, None], [True, False]))
    cases = []
    for i in range(count):
        ndim = [2, 3, 4, 5][i % 4]
        n = rng.choice([2, 3, 7, 16, 64])
        c = rng.choice([1, 3, 16, 64, 256])
        spatial = [rng.choice([1, 2, 5]) for _ in range(ndim - 2)]
        if n * max(1, c) * max(1, int(torch.tensor(spatial).prod().item()) if spatial else 1) > 400_000:
            n = 2
        affine, momentum, track = settings[i % len(settings)]
        channels_last = ndim == 4 and i % 3 == 0
        cases.append((n, c, tuple(spatial), affine, momentum, track, channels_last))
    return cases


def pair(c: int, ndim: int, dtype, affine: bool, momentum, track: bool):
    ref = TORCH_BN[ndim](c, momentum=momentum, affine=affine, track_running_stats=track).to(dtype)
    ours = BatchNorm(c, momentum=momentum, affine=affine, track_running_stats=track).to(dtype)
    if affine:
        with torch.no_grad():
            ref.weight.uniform_(0.5, 1.5)
            ref.bias.uniform_(-0.5, 0.5)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("case", random_cases(24, seed=0))
def test_parity_with_torch(case, dtype):
    n, c, spatial, affine, momentum, track, channels_last = case
    torch.manual_seed(hash(case) % 2**31)
    shape = (n, c, *spatial)
    ref, ours = pair(c, len(shape), dtype, affine, momentum, track)
    tol = TOL[dtype]
    for _ in range(3):  # several steps: running statistics accumulate
        x = torch.randn(shape, dtype=dtype) * 3 + 1.5
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        dy = torch.randn(shape, dtype=dtype)
        xs = [x.clone().requires_grad_(), x.clone().requires_grad_()]
        outs = [m(xi) for m, xi in zip((ref, ours), xs, strict=True)]
        torch.testing.assert_close(outs[1], outs[0], **tol)
        for o in outs:
            o.backward(dy)
        # dx is a difference of terms of size |w * dy / sigma|; in float32 (with N=2 the exact dx is ~0)
        # the tolerance is relative to that scale, not to the tiny result
        dims = [0, *range(2, len(shape))]
        w = ref.weight.detach().abs().max() if affine else 1.0
        scale = (w * dy.abs().max() / torch.sqrt(x.var(dims, correction=0).min() + 1e-5)).item()
        dx_tol = tol if dtype == torch.float64 else {"rtol": 1e-5, "atol": 1e-5 * max(1.0, scale)}
        torch.testing.assert_close(xs[1].grad, xs[0].grad, **dx_tol)
        if affine:
            torch.testing.assert_close(ours.weight.grad, ref.weight.grad, **tol)
            torch.testing.assert_close(ours.bias.grad, ref.bias.grad, **tol)
            ref.zero_grad(), ours.zero_grad()
        if channels_last:
            assert outs[1].is_contiguous(memory_format=torch.channels_last)
            assert xs[1].grad.is_contiguous(memory_format=torch.channels_last)
    if track:
        torch.testing.assert_close(ours.running_mean, ref.running_mean, **tol)
        torch.testing.assert_close(ours.running_var, ref.running_var, **tol)
        assert int(ours.num_batches_tracked) == int(ref.num_batches_tracked) == 3
    ref.eval(), ours.eval()
    x = torch.randn(shape, dtype=dtype)
    torch.testing.assert_close(ours(x), ref(x), **tol)


def test_naive_matches_torch_too():
    torch.manual_seed(0)
    ref, naive = nn.BatchNorm2d(8).double(), NaiveBatchNorm(8).double()
    x = torch.randn(4, 8, 5, 5, dtype=torch.float64)
    for _ in range(3):
        xs = [x.clone().requires_grad_() for _ in range(2)]
        ys = [ref(xs[0]), naive(xs[1])]
        torch.testing.assert_close(ys[1], ys[0], **TOL[torch.float64])
        for y in ys:
            (y**2).sum().backward()
        torch.testing.assert_close(xs[1].grad, xs[0].grad, **TOL[torch.float64])
    torch.testing.assert_close(naive.running_var, ref.running_var, **TOL[torch.float64])


@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 5), (3, 2, 3, 4), (2, 2, 2, 3, 2)])
@pytest.mark.parametrize("affine", [True, False])
def test_gradcheck(shape, affine):
    torch.manual_seed(1)
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    w = torch.rand(shape[1], dtype=torch.float64, requires_grad=True) + 0.5 if affine else None
    b = torch.randn(shape[1], dtype=torch.float64, requires_grad=True) if affine else None
    dims = [0, *range(2, len(shape))]

    def bn(x, *wb):
        var, mean = torch.var_mean(x.detach(), dims, correction=0)  # stats recomputed per perturbation
        m = x.numel() // x.shape[1]
        return _BatchNormTrain.apply(x, *(wb or (None, None)), mean, torch.rsqrt(var + 1e-5), m, None)

    inputs = (x, w, b) if affine else (x,)
    assert torch.autograd.gradcheck(bn, inputs)
    # and through the module, in training mode
    m = BatchNorm(shape[1], affine=affine).double()
    assert torch.autograd.gradcheck(m, (x,))


def test_running_stats_carry_no_autograd_history_and_memory_is_flat():
    m = BatchNorm(16)
    x = torch.randn(32, 16, 4, 4, requires_grad=True)
    for _ in range(5):
        m(x).sum().backward()
    for buf in (m.running_mean, m.running_var):
        assert not buf.requires_grad and buf.grad_fn is None

    def live_tensors() -> int:
        gc.collect()
        return sum(1 for o in gc.get_objects() if type(o) in (torch.Tensor, nn.Parameter))

    start = live_tensors()
    for _ in range(1000):
        m(x).sum().backward()
    assert live_tensors() - start <= 2


def test_train_mode_needs_two_values_per_channel():
    m = BatchNorm(4)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        m(torch.randn(1, 4))
    m(torch.randn(1, 4, 2))  # two spatial values per channel are enough
    m.eval()
    m(torch.randn(1, 4))  # eval uses running statistics


def test_wrong_channel_count():
    with pytest.raises(ValueError, match=r"expects input \(N, 4, ...\)"):
        BatchNorm(4)(torch.randn(3, 5))


def test_state_dict_round_trip_with_torch():
    torch.manual_seed(2)
    ref = nn.BatchNorm2d(6)
    for _ in range(4):
        ref(torch.randn(8, 6, 3, 3) * 2 + 1)
    with torch.no_grad():
        ref.weight.uniform_(0.5, 2)
        ref.bias.normal_()
    ours = BatchNorm(6)
    ours.load_state_dict(ref.state_dict())
    back = nn.BatchNorm2d(6)
    back.load_state_dict(ours.state_dict())
    x = torch.randn(5, 6, 3, 3)
    for m in (ref, ours, back):
        m.eval()
    assert torch.equal(back(x), ref(x))
    torch.testing.assert_close(ours(x), ref(x), rtol=1e-6, atol=1e-6)
    assert set(ours.state_dict()) == set(ref.state_dict())


def test_cumulative_momentum_is_the_plain_average():
    m = BatchNorm(3, momentum=None)
    batches = [torch.randn(10, 3) + i for i in range(4)]
    for b in batches:
        m(b)
    torch.testing.assert_close(m.running_mean, torch.stack([b.mean(0) for b in batches]).mean(0))


def test_no_running_stats_uses_batch_statistics_in_eval():
    m = BatchNorm(3, track_running_stats=False).eval()
    x = torch.randn(20, 3) * 5 + 2
    y = m(x)
    torch.testing.assert_close(y.mean(0), torch.zeros(3), atol=1e-5, rtol=0)
    assert m.running_mean is None and "running_mean" not in m.state_dict()


def test_convert_momentum():
    assert convert_momentum(0.9, "article", "torch") == pytest.approx(0.1)
    assert convert_momentum(0.99, "keras", "torch") == pytest.approx(0.01)
    assert convert_momentum(0.1, "torch", "keras") == pytest.approx(0.9)
    assert convert_momentum(0.3, "torch", "torch") == 0.3


@pytest.mark.parametrize("ndim", [2, 4])
def test_bf16_input_keeps_float32_statistics_and_matches_torch(ndim):
    """Under autocast a BN layer gets bf16 activations: statistics and the gradient's per-channel sums must
    stay float32 (as in torch's BN), the output and input gradient come back in bf16."""
    torch.manual_seed(0)
    shape = (32, 8) if ndim == 2 else (16, 8, 6, 6)
    x32 = (torch.randn(shape) * 3 + 5).requires_grad_()  # an offset mean: bf16 statistics would lose it
    ref, ours = pair(8, ndim, torch.float32, True, 0.1, True)
    dy = torch.randn(shape)
    outputs = []
    for layer in (ref, ours):
        x = x32.detach().bfloat16().requires_grad_()
        y = layer(x)
        y.backward(dy.bfloat16())
        assert y.dtype == x.grad.dtype == torch.bfloat16 and layer.weight.grad.dtype == torch.float32
        assert layer.running_mean.dtype == torch.float32
        outputs.append((y.float(), x.grad.float(), layer.weight.grad, layer.running_mean, layer.running_var))
    for a, b in zip(*outputs, strict=True):
        torch.testing.assert_close(b, a, rtol=2e-2, atol=2e-2)
    # the running mean is the float32 mean of the bf16 values, not a bf16-rounded one
    expected = 0.1 * x32.detach().bfloat16().float().mean([0, *range(2, ndim)])
    torch.testing.assert_close(ours.running_mean, expected, rtol=1e-6, atol=1e-6)


# -- Batch Renormalization ---------------------------------------------------------------------------------


def _trained_pair(shape=(16, 5, 4, 4), steps=3):
    """A BatchNorm and a BatchRenorm(r_max=1, d_max=0) with the same parameters and a few batches seen."""
    torch.manual_seed(0)
    bn, brn = BatchNorm(shape[1]).double(), BatchRenorm(shape[1], r_max=1.0, d_max=0.0).double()
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
    brn.load_state_dict(bn.state_dict())
    for _ in range(steps):
        x = torch.randn(*shape, dtype=torch.float64) * 3 + 1
        bn(x), brn(x)
    return bn, brn


def test_batchrenorm_with_no_correction_is_batchnorm():
    bn, brn = _trained_pair()
    x = torch.randn(16, 5, 4, 4, dtype=torch.float64, requires_grad=True)
    x2 = x.detach().clone().requires_grad_()
    r = torch.randn(16, 5, 4, 4, dtype=torch.float64)
    (bn(x) * r).sum().backward()
    (brn(x2) * r).sum().backward()
    assert torch.equal(x.grad, x2.grad) and torch.equal(bn.weight.grad, brn.weight.grad)
    assert torch.equal(bn.bias.grad, brn.bias.grad)
    assert torch.equal(bn.running_mean, brn.running_mean) and torch.equal(bn.running_var, brn.running_var)
    bn.eval(), brn.eval()
    assert torch.equal(bn(x.detach()), brn(x.detach()))


def test_batchrenorm_corrects_towards_the_running_statistics():
    """y = gamma * (x_hat * r + d) + beta with r = sigma_B / sigma and d = (mu_B - mu) / sigma, clipped, and
    in training the output then equals the running-statistics output when nothing is clipped."""
    torch.manual_seed(1)
    m = BatchRenorm(3, r_max=100.0, d_max=100.0).double()
    with torch.no_grad():
        m.running_mean.copy_(torch.tensor([0.5, -1.0, 2.0]))
        m.running_var.copy_(torch.tensor([4.0, 0.25, 1.0]))
    x = torch.randn(64, 3, dtype=torch.float64) * 2 + 1
    expected = (x - m.running_mean) / torch.sqrt(m.running_var + m.eps)
    assert torch.allclose(m.train()(x), expected, atol=1e-10)
    clipped = BatchRenorm(3, r_max=1.5, d_max=0.1).double()
    clipped.load_state_dict(m.state_dict())
    r_max, d_max = clipped.limits()
    assert (r_max, d_max) == (1.5, 0.1)


def test_batchrenorm_ramp_and_gradcheck():
    m = BatchRenorm(2, r_max=3.0, d_max=5.0, ramp=(10, 20)).double()
    assert m.limits() == (1.0, 0.0)
    m.num_batches_tracked.fill_(15)
    assert m.limits() == (2.0, 2.5)
    m.num_batches_tracked.fill_(25)
    assert m.limits() == (3.0, 5.0)
    # the gradient is the paper's: autograd through mu_B and sigma_B, with r and d as constants
    with torch.no_grad():
        m.running_mean.fill_(0.3)
        m.running_var.fill_(2.0)
        m.weight.uniform_(0.5, 1.5)
        m.bias.uniform_(-0.5, 0.5)
    x = torch.randn(6, 2, 3, dtype=torch.float64, requires_grad=True)
    probe = torch.randn(6, 2, 3, dtype=torch.float64)
    (m(x) * probe).sum().backward()
    grads = (x.grad.clone(), m.weight.grad.clone(), m.bias.grad.clone())
    x.grad = m.weight.grad = m.bias.grad = None
    mu, var = x.mean((0, 2)), x.var((0, 2), unbiased=False)
    sigma = torch.sqrt(torch.tensor(2.0, dtype=torch.float64) + m.eps)  # the running statistics before the step
    r = (torch.sqrt(var + m.eps) / sigma).clamp(1 / 3.0, 3.0).detach()
    d = ((mu - 0.3) / sigma).clamp(-5.0, 5.0).detach()
    x_hat = (x - mu[:, None]) / torch.sqrt(var[:, None] + m.eps) * r[:, None] + d[:, None]
    ((x_hat * m.weight[:, None] + m.bias[:, None]) * probe).sum().backward()
    for mine, reference in zip(grads, (x.grad, m.weight.grad, m.bias.grad), strict=True):
        assert torch.allclose(mine, reference, rtol=1e-10, atol=1e-12)


# -- ℓp batch norm ------------------------------------------------------------------------------------------


def lp_reference(x: torch.Tensor, p: float, eps: float = 1e-5) -> torch.Tensor:
    """The definition, one channel at a time in float64: centre, divide by sqrt(s_p^2 + eps)."""
    out = torch.empty_like(x, dtype=torch.float64)
    for c in range(x.shape[1]):
        v = x[:, c].double()
        d = v - v.mean()
        s = d.abs().max() if p == math.inf else d.abs().pow(p).mean().pow(1 / p)
        out[:, c] = d / math.sqrt(s.item() ** 2 + eps)
    return out


@pytest.mark.parametrize("p", [1, 2, math.inf])
@pytest.mark.parametrize("shape", [(16, 3), (5, 4, 3, 3)])
def test_lp_batchnorm_matches_its_definition(p, shape):
    torch.manual_seed(0)
    x = torch.randn(shape) * 3 + 1
    y = LpBatchNorm(shape[1], p=p)(x)
    torch.testing.assert_close(y.double(), lp_reference(x, p), rtol=1e-5, atol=1e-5)


def test_l2_batchnorm_is_batchnorm_in_training_eval_and_gradients():
    torch.manual_seed(1)
    lp, bn = LpBatchNorm(4, p=2).double(), BatchNorm(4).double()
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5), bn.bias.uniform_(-0.5, 0.5)
    lp.load_state_dict(bn.state_dict())
    for step in range(3):
        x = (torch.randn(8, 4, 3, 3, dtype=torch.float64) * (step + 1)).requires_grad_()
        x2 = x.detach().clone().requires_grad_()
        y_lp, y_bn = lp(x), bn(x2)
        torch.testing.assert_close(y_lp, y_bn, **TOL[torch.float64])
        (y_lp * torch.arange(y_lp.numel(), dtype=torch.float64).view_as(y_lp).sin()).sum().backward()
        (y_bn * torch.arange(y_bn.numel(), dtype=torch.float64).view_as(y_bn).sin()).sum().backward()
        torch.testing.assert_close(x.grad, x2.grad, **TOL[torch.float64])
    torch.testing.assert_close(lp.weight.grad, bn.weight.grad, **TOL[torch.float64])
    for name, buf in bn.state_dict().items():
        torch.testing.assert_close(lp.state_dict()[name], buf, **TOL[torch.float64])
    x = torch.randn(8, 4, 3, 3, dtype=torch.float64)
    torch.testing.assert_close(lp.eval()(x), bn.eval()(x), **TOL[torch.float64])


@pytest.mark.parametrize("p", [1, math.inf])
@pytest.mark.parametrize("affine", [True, False])
def test_lp_batchnorm_gradcheck(p, affine):
    torch.manual_seed(2)
    x = torch.randn(6, 3, 2, 2, dtype=torch.float64, requires_grad=True)
    m = LpBatchNorm(3, p=p, affine=affine).double()
    if affine:
        with torch.no_grad():
            m.weight.uniform_(0.5, 1.5), m.bias.uniform_(-0.5, 0.5)
    assert torch.autograd.gradcheck(m, (x,))


@pytest.mark.parametrize("p", [1, math.inf])
def test_lp_batchnorm_running_statistics_and_eval_mode(p):
    """momentum None: the running estimates are the plain averages of the batch means and of s_p^2 (no
    m / (m - 1) factor), and eval mode divides by sqrt(running s_p^2 + eps)."""
    torch.manual_seed(3)
    m = LpBatchNorm(2, p=p, momentum=None).double()
    batches = [torch.randn(10, 2, dtype=torch.float64) * (i + 1) + i for i in range(4)]
    for x in batches:
        m(x)
    means = torch.stack([x.mean(0) for x in batches]).mean(0)
    scales = [(x - x.mean(0)).abs() for x in batches]
    squares = torch.stack([(s.amax(0) if p == math.inf else s.mean(0)) ** 2 for s in scales]).mean(0)
    torch.testing.assert_close(m.running_mean, means, **TOL[torch.float64])
    torch.testing.assert_close(m.running_var, squares, **TOL[torch.float64])
    x = torch.randn(5, 2, dtype=torch.float64)
    torch.testing.assert_close(m.eval()(x), (x - means) / torch.sqrt(squares + 1e-5), **TOL[torch.float64])
    assert not m.running_var.requires_grad and m.running_var.grad_fn is None


def test_lp_batchnorm_state_dict_is_torchs_and_bad_p_is_refused():
    assert set(LpBatchNorm(3, p=1).state_dict()) == set(nn.BatchNorm1d(3).state_dict())
    with pytest.raises(ValueError, match="p must be 1, 2 or inf"):
        LpBatchNorm(3, p=3)
    with pytest.raises(ValueError, match="more than 1 value"):
        LpBatchNorm(3, p=1)(torch.randn(1, 3))


# -- noisy BN and scale invariance ----------------------------------------------------------------------------


def test_noisy_batchnorm_is_seeded_and_plain_bn_in_eval():
    x = torch.randn(8, 4, 3, 3)
    torch.manual_seed(3)
    a = NoisyBatchNorm(4)(x)
    torch.manual_seed(3)
    b = NoisyBatchNorm(4)(x)
    assert torch.equal(a, b) and not torch.allclose(a, BatchNorm(4)(x))
    noisy, plain = NoisyBatchNorm(4).eval(), BatchNorm(4).eval()
    assert torch.equal(noisy(x), plain(x))


@pytest.mark.parametrize("a", [1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0, 1e3])
def test_scale_invariance_of_the_output_and_the_inverse_scaling_of_the_gradient(a):
    """BN((aW)u) = BN(Wu) and dBN((aW)u)/d(aW) = (1/a) dBN(Wu)/dW, to float64 precision with eps = 0 (with
    eps > 0 the identity holds only while a^2 Var(Wu) >> eps: see analyses.scale_invariance)."""
    torch.manual_seed(0)
    u = torch.randn(32, 6, dtype=torch.float64)
    w = torch.randn(4, 6, dtype=torch.float64)
    direction = torch.randn(32, 4, dtype=torch.float64)
    bn = BatchNorm(4, eps=0.0).double()

    def out_and_grad(weight):
        weight = weight.clone().requires_grad_()
        y = bn(u @ weight.T)
        (g,) = torch.autograd.grad((y * direction).sum(), weight)
        return y.detach(), g

    y1, g1 = out_and_grad(w)
    ya, ga = out_and_grad(a * w)
    assert torch.allclose(ya, y1, rtol=1e-9, atol=1e-9)
    assert torch.allclose(ga * a, g1, rtol=1e-8, atol=1e-10)
