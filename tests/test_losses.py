"""The paper's formulas against small hand-computed tensors."""

import math

import pytest
import torch

from napari_skd.distillation.losses import (
    Projections,
    channel_cross_attention,
    contrastive_ratio,
    gaussian_kernel_distance,
    mca_gk_loss,
    pool_positions,
    spatial_cross_attention,
)

T = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # (B=1, C=2, N=2)
S = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
a, b = math.exp(1) / (math.exp(1) + math.exp(3)), math.exp(3) / (math.exp(1) + math.exp(3))  # softmax(1, 3)
c, d = math.exp(2) / (math.exp(2) + math.exp(4)), math.exp(4) / (math.exp(2) + math.exp(4))  # softmax(2, 4)


def test_channel_cross_attention_by_hand():
    # T S^T = [[1, 3], [2, 4]]; row softmax = [[a, b], [c, d]]; times S
    expected = torch.tensor([[[a * 1 + b * 3, a * 2 + b * 4], [c * 1 + d * 3, c * 2 + d * 4]]])
    torch.testing.assert_close(channel_cross_attention(T, S, lam=1.0), expected)


def test_spatial_cross_attention_by_hand():
    # T^T S = [[1, 2], [3, 4]] (N x N); softmax over student positions (columns) = [[a, c], [b, d]]; S times it
    expected = torch.tensor([[[1 * a + 2 * b, 1 * c + 2 * d], [3 * a + 4 * b, 3 * c + 4 * d]]])
    torch.testing.assert_close(spatial_cross_attention(T, S, lam=1.0), expected)


def test_lambda_scales_the_logits():
    # lambda = 2 halves the logits: softmax(0.5, 1.5) instead of softmax(1, 3)
    p = math.exp(0.5) / (math.exp(0.5) + math.exp(1.5))
    out = channel_cross_attention(T, S, lam=2.0)
    assert out[0, 0, 0].item() == pytest.approx(p * 1 + (1 - p) * 3, rel=1e-6)
    # the default is sqrt of the summed dimension: N = 2 for the channel map
    torch.testing.assert_close(channel_cross_attention(T, S), channel_cross_attention(T, S, lam=math.sqrt(2)))


def test_mca_shapes_on_realistic_features():
    t, s = torch.rand(2, 16, 64), torch.rand(2, 16, 64)
    assert channel_cross_attention(t, s).shape == (2, 16, 64)
    assert spatial_cross_attention(t, s).shape == (2, 16, 64)


def test_gaussian_kernel_by_hand():
    x, y = torch.zeros(4), torch.ones(4)
    assert gaussian_kernel_distance(x, y, sigma=1.0).item() == pytest.approx(1 - math.exp(-0.5))
    assert gaussian_kernel_distance(x, 2 * y, sigma=2.0).item() == pytest.approx(1 - math.exp(-4 / 8))
    assert gaussian_kernel_distance(y, y).item() == 0.0


def test_gaussian_kernel_stays_in_unit_interval():
    g = torch.Generator().manual_seed(0)
    for scale in (1e-3, 1.0, 10.0, 1e3):
        x, y = scale * torch.randn(50, generator=g), scale * torch.randn(50, generator=g)
        v = gaussian_kernel_distance(x, y).item()
        assert 0.0 <= v < 1.0 or (scale >= 10 and v == 1.0)  # saturates only for huge distances


def test_l_gk_combines_the_three_terms():
    t, s = torch.rand(1, 4, 6, 6), torch.rand(1, 4, 6, 6)
    terms = mca_gk_loss(t, s, sigma=0.5, alpha1=0.3, lam=1.5)
    tm, sm = t.reshape(1, 4, 36), s.reshape(1, 4, 36)
    gk = gaussian_kernel_distance(sm, tm, 0.5)
    fc = gaussian_kernel_distance(channel_cross_attention(tm, sm, 1.5), tm, 0.5)
    ft = gaussian_kernel_distance(spatial_cross_attention(tm, sm, 1.5), tm, 0.5)
    torch.testing.assert_close(terms["total"], gk + 0.3 * (fc + ft))
    no_mca = mca_gk_loss(t, s, sigma=0.5, use_mca=False)
    torch.testing.assert_close(no_mca["total"], gk)


def test_identical_features_give_zero_gk():
    t = torch.rand(1, 4, 8, 8)
    assert mca_gk_loss(t, t.clone(), use_mca=False)["total"].item() == 0.0


def test_spatial_term_is_pooled_to_the_cap():
    f = torch.arange(64.0).reshape(1, 1, 8, 8)
    pooled = pool_positions(f, 16)
    assert pooled.shape == (1, 1, 4, 4)
    assert pooled[0, 0, 0, 0].item() == pytest.approx((0 + 1 + 8 + 9) / 4)
    assert pool_positions(torch.rand(1, 2, 10, 12, 14), 100).flatten(2).shape[-1] <= 100
    assert pool_positions(f, 64) is f


def test_contrastive_ratio_by_hand_and_falls_towards_the_positive():
    p, n = [torch.ones(3)], [3 * torch.ones(3)]
    assert contrastive_ratio([torch.zeros(3)], p, n, [1.0]).item() == pytest.approx(1 / 3)
    values = [contrastive_ratio([torch.full((3,), t)], p, n, [1.0]).item() for t in (0.0, 0.5, 0.9, 1.0)]
    assert values == sorted(values, reverse=True) and values[-1] == 0.0
    two = contrastive_ratio([torch.zeros(3), torch.zeros(2)], [torch.ones(3), torch.ones(2)],
                            [3 * torch.ones(3), 2 * torch.ones(2)], [0.5, 2.0])  # fmt: skip
    assert two.item() == pytest.approx(0.5 / 3 + 2.0 / 2)


def test_projections_map_student_width_to_teacher_width():
    proj = Projections([8, 16], [16, 16], spatial_dims=2)
    out = proj([torch.rand(1, 8, 4, 4), torch.rand(1, 16, 4, 4)])
    assert [o.shape[1] for o in out] == [16, 16]
    assert isinstance(proj.maps[1], torch.nn.Identity)
