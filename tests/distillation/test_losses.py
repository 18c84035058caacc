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
    unit_rms,
)

T = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # (B=1, C=2, N=2)
S = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
R5, R10, R20 = math.sqrt(5), math.sqrt(10), math.sqrt(20)


def softmax2(u: float, v: float) -> tuple[float, float]:
    return math.exp(u) / (math.exp(u) + math.exp(v)), math.exp(v) / (math.exp(u) + math.exp(v))


def test_channel_cross_attention_by_hand():
    # logits: cosines of teacher rows with student rows [1, 2]/sqrt5 and [3, 4]/5
    a, b = softmax2(1 / R5, 3 / 5)
    c, d = softmax2(2 / R5, 4 / 5)
    expected = torch.tensor([[[a * 1 + b * 3, a * 2 + b * 4], [c * 1 + d * 3, c * 2 + d * 4]]])
    torch.testing.assert_close(channel_cross_attention(T, S, lam=1.0), expected)


def test_spatial_cross_attention_by_hand():
    # logits[n, m] = cos(teacher position n, student position m); softmax over n for each output position m
    a, b = softmax2(1 / R10, 3 / R10)  # column m = 0: student position [1, 3]
    c, d = softmax2(2 / R20, 4 / R20)  # column m = 1: student position [2, 4]
    expected = torch.tensor([[[1 * a + 2 * b, 1 * c + 2 * d], [3 * a + 4 * b, 3 * c + 4 * d]]])
    torch.testing.assert_close(spatial_cross_attention(T, S, lam=1.0), expected)


def test_lambda_is_a_temperature_on_cosines():
    a, b = softmax2(1 / R5 / 0.1, 3 / 5 / 0.1)
    out = channel_cross_attention(T, S, lam=0.1)
    assert out[0, 0, 0].item() == pytest.approx(a * 1 + b * 3, rel=1e-5)
    torch.testing.assert_close(channel_cross_attention(T, S), out)  # 0.1 is the default
    # cosine logits ignore the features' scale: the maps are as sharp for features of RMS 0.01 as of RMS 1
    torch.testing.assert_close(channel_cross_attention(0.01 * T, S), channel_cross_attention(T, S))


def test_mca_shapes_on_realistic_features():
    t, s = torch.rand(2, 16, 64), torch.rand(2, 16, 64)
    assert channel_cross_attention(t, s).shape == (2, 16, 64)
    assert spatial_cross_attention(t, s).shape == (2, 16, 64)


def test_gaussian_kernel_per_position_by_hand():
    x, y = torch.zeros(1, 2, 2), torch.tensor([[[1.0, 2.0], [1.0, 2.0]]])  # d_n = 1 and 4
    expected = ((1 - math.exp(-1 / 2)) + (1 - math.exp(-4 / 2))) / 2
    assert gaussian_kernel_distance(x, y, sigma=1.0).item() == pytest.approx(expected)
    # sigma from the data: 2 sigma^2 = median(d_n) = 1 (the lower median of 1 and 4)
    expected = ((1 - math.exp(-1)) + (1 - math.exp(-4))) / 2
    assert gaussian_kernel_distance(x, y).item() == pytest.approx(expected)
    assert gaussian_kernel_distance(y, y).item() == 0.0


def test_gaussian_kernel_stays_in_unit_interval_at_any_scale():
    g = torch.Generator().manual_seed(0)
    for scale in (1e-3, 1.0, 10.0, 1e3):
        x, y = scale * torch.randn(1, 4, 50, generator=g), scale * torch.randn(1, 4, 50, generator=g)
        v = gaussian_kernel_distance(x, y).item()
        assert 0.3 < v < 1.0  # the median heuristic keeps the kernel in its sensitive range


def test_l_gk_combines_the_three_terms_on_unit_rms_features():
    t, s = torch.rand(1, 4, 6, 6), torch.rand(1, 4, 6, 6)
    terms = mca_gk_loss(t, s, sigma=0.5, alpha1=0.3, lam=1.5)
    tm, sm = unit_rms(t.reshape(1, 4, 36)), unit_rms(s.reshape(1, 4, 36))
    gk = gaussian_kernel_distance(sm, tm, 0.5)
    fc = gaussian_kernel_distance(channel_cross_attention(tm, sm, 1.5), channel_cross_attention(tm, tm, 1.5), 0.5)
    ft = gaussian_kernel_distance(spatial_cross_attention(tm, sm, 1.5), spatial_cross_attention(tm, tm, 1.5), 0.5)
    torch.testing.assert_close(terms["total"], gk + 0.3 * (fc + ft))
    no_mca = mca_gk_loss(t, s, sigma=0.5, use_mca=False)
    torch.testing.assert_close(no_mca["total"], gk)


def test_every_term_is_zero_at_s_equal_t_and_positive_otherwise():
    g = torch.Generator().manual_seed(1)
    t = torch.randn(2, 8, 12, 12, generator=g)
    for sigma in (None, 1.0):
        same = mca_gk_loss(t, t.clone(), sigma=sigma, max_positions=64)
        assert all(same[k].item() == 0.0 for k in ("gk", "gk_fc", "gk_ft", "total"))
        scaled = mca_gk_loss(t, 5 * t, sigma=sigma, max_positions=64)  # normalised features: scale is not a mismatch
        assert scaled["total"].item() == pytest.approx(0.0, abs=1e-4)
        other = mca_gk_loss(t, t + 0.5 * torch.randn(t.shape, generator=g), sigma=sigma, max_positions=64)
        assert all(other[k].item() > 1e-4 for k in ("gk", "gk_fc", "gk_ft"))


def test_unit_rms_scales_each_item():
    m = torch.tensor([[[3.0, 4.0]], [[0.0, 2.0]]])  # RMS 3.54 and 1.41
    out = unit_rms(m)
    torch.testing.assert_close(out.pow(2).mean(dim=(1, 2)), torch.ones(2), rtol=1e-5, atol=1e-5)


def test_spatial_term_is_pooled_to_the_cap():
    f = torch.arange(64.0).reshape(1, 1, 8, 8)
    pooled = pool_positions(f, 16)
    assert pooled.shape == (1, 1, 4, 4)
    assert pooled[0, 0, 0, 0].item() == pytest.approx((0 + 1 + 8 + 9) / 4)
    assert pool_positions(torch.rand(1, 2, 10, 12, 14), 100).flatten(2).shape[-1] <= 100
    assert pool_positions(f, 64) is f


def test_contrastive_ratio_by_hand_and_falls_towards_the_positive():
    p, negs = [torch.ones(3)], [[3 * torch.ones(3)], [1.5 * torch.ones(3)]]
    # pull |0 - 1| = 1; push = mean(|0 - 3|, |0 - 1.5|) = 2.25
    assert contrastive_ratio([torch.zeros(3)], p, negs, [1.0]).item() == pytest.approx(1 / 2.25)
    values = [contrastive_ratio([torch.full((3,), t)], p, negs, [1.0]).item() for t in (0.0, 0.5, 0.9, 1.0)]
    assert values == sorted(values, reverse=True) and values[-1] == 0.0
    two = contrastive_ratio([torch.zeros(3), torch.zeros(2)], [torch.ones(3), torch.ones(2)],
                            [[3 * torch.ones(3), 2 * torch.ones(2)]], [0.5, 2.0])  # fmt: skip
    assert two.item() == pytest.approx(0.5 / 3 + 2.0 / 2)
    assert contrastive_ratio([torch.zeros(3, dtype=torch.bfloat16)], p, negs, [1.0]).dtype == torch.float32


def test_projections_map_student_width_to_teacher_width():
    proj = Projections([8, 16], [16, 16], spatial_dims=2)
    out = proj([torch.rand(1, 8, 4, 4), torch.rand(1, 16, 4, 4)])
    assert [o.shape[1] for o in out] == [16, 16]
    assert isinstance(proj.maps[1], torch.nn.Identity)
