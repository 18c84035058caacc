"""The Restormer family: exact published size, official compatibility, 2D/3D shapes, features, FLOPs budget."""

import json

import pytest
import torch
import torch.nn.functional as F

from conftest import DATA
from napari_skd.models import FEATURE_LEVELS, PRESETS, ModelConfig, build_model, count_flops, count_params
from napari_skd.models.layers import PixelShuffle3d, PixelUnshuffle3d, _pad_axis, pad_to_multiple

OFFICIAL = json.loads((DATA / "restormer_official_keys.json").read_text())


def test_teacher_has_the_published_parameter_count():
    model = build_model("teacher", in_channels=3, out_channels=3, layernorm_type="WithBias")
    assert count_params(model) == 26_126_644 == OFFICIAL["rgb_withbias_params"]


@pytest.mark.parametrize(
    ("variant", "kwargs"),
    [
        ("rgb_withbias", dict(in_channels=3, out_channels=3, layernorm_type="WithBias")),
        ("grey_biasfree", dict(in_channels=1, out_channels=1, layernorm_type="BiasFree")),
    ],
)
def test_parameter_names_and_shapes_match_the_official_implementation(variant, kwargs):
    with torch.device("meta"):
        model = build_model("teacher", **kwargs)
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert ours == OFFICIAL[variant]
    assert count_params(model) == OFFICIAL[variant + "_params"]


def test_official_weights_give_the_official_output():
    """A tiny network saved by the official code, with its input and output (tests/fixtures/README.md)."""
    from napari_skd.checkpoint import import_restormer

    ck = import_restormer(DATA / "restormer_official_tiny.pth")
    io = torch.load(DATA / "restormer_official_tiny_io.pt", weights_only=True)
    with torch.no_grad():
        out = ck.model(io["input"])
    torch.testing.assert_close(out, io["output"], rtol=1e-5, atol=1e-5)
    assert ck.config.bias and ck.config.layernorm_type == "BiasFree" and ck.config.num_blocks == (1, 1, 1, 2)


@pytest.mark.parametrize("shape", [(2, 1, 37, 53), (1, 1, 8, 8), (1, 1, 3, 70), (1, 1, 64, 64)])
def test_2d_any_size_keeps_shape(shape):
    model = build_model("student-tiny").eval()
    x = torch.rand(shape)
    with torch.no_grad():
        y = model(x)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("shape", [(1, 1, 9, 13, 11), (2, 1, 16, 16, 16), (1, 1, 2, 20, 17)])
def test_3d_any_size_keeps_shape(shape):
    model = build_model("student-tiny", spatial_dims=3).eval()
    x = torch.rand(shape)
    with torch.no_grad():
        y = model(x)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()


def test_3d_model_uses_3d_operators():
    model = build_model("student-tiny", spatial_dims=3)
    assert model.patch_embed.proj.weight.ndim == 5
    assert isinstance(model.down1_2.body[1], PixelUnshuffle3d)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_feature_taps_cover_every_level(spatial_dims):
    model = build_model("student-tiny", spatial_dims=spatial_dims).eval()
    size = 16
    x = torch.rand(1, 1, *([size] * spatial_dims))
    with torch.no_grad():
        y, feats = model(x, return_features=True)
        y_plain = model(x)
    torch.testing.assert_close(y, y_plain)
    assert len(feats) == len(FEATURE_LEVELS) == 7
    scales = [1, 2, 4, 8, 4, 2, 1]
    for f, c, s in zip(feats, model.config.feature_channels, scales, strict=True):
        assert f.shape == (1, c, *([size // s] * spatial_dims))


def test_channels_in_differ_from_channels_out():
    model = build_model("student-tiny", in_channels=2, out_channels=1)
    with torch.no_grad():
        assert model(torch.rand(1, 2, 24, 24)).shape == (1, 1, 24, 24)


def test_wrong_input_shape_is_explained():
    model = build_model("student-tiny")
    with pytest.raises(ValueError, match=r"expected a tensor \(N, 1, Y, X\)"):
        model(torch.rand(1, 3, 16, 16))


def test_pixel_shuffle_3d_is_the_inverse_of_unshuffle():
    x = torch.rand(2, 3, 4, 6, 8)
    down = PixelUnshuffle3d(2)(x)
    assert down.shape == (2, 24, 2, 3, 4)
    torch.testing.assert_close(PixelShuffle3d(2)(down), x)
    # one output channel holds one sub-lattice of the input: channel 1 = offset (0, 0, 1)
    torch.testing.assert_close(down[:, 1], x[:, 0, 0::2, 0::2, 1::2])


def test_mirror_padding_matches_reflect_and_extends_short_axes():
    x = torch.arange(5.0).view(1, 1, 5)
    torch.testing.assert_close(_pad_axis(x, 2, 3), F.pad(x, (0, 3), mode="reflect"))
    # an axis shorter than the pad keeps mirroring: 0 1 2 | 1 0 1 2 1 0
    assert _pad_axis(torch.arange(3.0).view(1, 1, 3), 2, 6).flatten().tolist() == [0, 1, 2, 1, 0, 1, 2, 1, 0]
    padded, shape = pad_to_multiple(torch.rand(1, 1, 9, 16), 8)
    assert padded.shape == (1, 1, 16, 16) and shape == (9, 16)


def test_mdta_matches_transposed_attention_written_out():
    """MDTA = project_out(softmax(q^ k^T * t) v) per head, with q, k L2-normalised over pixels (a C x C map)."""
    from napari_skd.models.restormer import MDTA

    attn = MDTA(dim=4, num_heads=2, bias=False, spatial_dims=2)
    with torch.no_grad():
        attn.temperature.copy_(torch.tensor([0.5, 2.0]).view(2, 1, 1))
    x = torch.rand(1, 4, 5, 6)
    q, k, v = attn.qkv_dwconv(attn.qkv(x)).chunk(3, dim=1)
    heads = []
    for h in range(2):
        qh, kh, vh = (t[0, 2 * h : 2 * h + 2].reshape(2, 30) for t in (q, k, v))
        qh = qh / qh.norm(dim=1, keepdim=True)
        kh = kh / kh.norm(dim=1, keepdim=True)
        a = torch.softmax(qh @ kh.T * attn.temperature[h, 0, 0], dim=1)  # 2 x 2: channels, not pixels
        heads.append(a @ vh)
    expected = attn.project_out(torch.cat(heads).reshape(1, 4, 5, 6))
    torch.testing.assert_close(attn(x), expected)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_cost_is_linear_in_pixels(spatial_dims):
    model = build_model("student-tiny", spatial_dims=spatial_dims)
    assert count_flops(model, 32) == 2**spatial_dims * count_flops(model, 16)


@pytest.mark.parametrize("student", [p for p in PRESETS if p.startswith("student")])
def test_student_presets_keep_at_most_a_quarter_of_the_teacher_flops(student):
    teacher_flops = count_flops(build_model("teacher"), 256)
    assert teacher_flops > 300e9  # the published size at 256 x 256, one channel
    assert count_flops(build_model(student), 256) <= 0.25 * teacher_flops


def test_config_errors_are_explained():
    with pytest.raises(ValueError, match="heads do not divide"):
        ModelConfig(dim=6, heads=(4, 2, 4, 8))
    with pytest.raises(ValueError, match="divisible by 4"):
        ModelConfig(dim=6, heads=(1, 1, 1, 1), spatial_dims=3)
    from napari_skd.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown model preset 'huge'; choose one of: teacher"):
        build_model("huge")
