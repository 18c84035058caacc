"""Fast students: the U-Net learns from its first steps, methods run only what they need, the speed table and
the CPU warning for large teachers."""

import logging

import dask.array as da
import numpy as np
import pytest
import torch

from napari_skd import restore, train_teacher
from napari_skd.checkpoint import Checkpoint, load_checkpoint
from napari_skd.cli import main
from napari_skd.data.degrade import DegradationConfig
from napari_skd.data.sampler import PatchSampler
from napari_skd.data.stats import estimate_percentiles
from napari_skd.distillation.config import LossConfig
from napari_skd.distillation.objectives import METHOD_TERMS, DistillObjective, StudentWithProjections
from napari_skd.evaluation import heldout_pair, psnr_ssim, restore_whole
from napari_skd.models import FEATURE_LEVELS, ModelConfig, build_model
from napari_skd.models.layers import BiasFreeLayerNorm, WithBiasLayerNorm
from napari_skd.normalize import Normalization
from napari_skd.samples import load_sample

NOISE = {"kind": "poisson_gaussian", "peak": 20.0, "sigma": 0.05}


@pytest.fixture(scope="module")
def nuclei():
    image, _ = load_sample("nuclei2d")
    return image.astype(np.float32)


def test_unet_student_trained_alone_gains_several_db(tmp_path, nuclei):
    """The regression this guards: with torch's default init, unet-xs stayed within 1 dB of its input for about
    100 steps (dead ReLUs, shrinking features, a random starting correction)."""
    path = train_teacher({
        "data": {"clean": nuclei, "axes": "YX", "degradation": NOISE, "patch_size": 64, "batch_size": 8,
                 "val_fraction": 0.25},
        "model": "unet-xs", "output": str(tmp_path / "unet.pt"),
        "train": {"steps": 300, "lr": 1e-3, "warmup_steps": 20, "val_every": 100, "seed": 0},
    })  # fmt: skip
    ck = load_checkpoint(path)
    clean, noisy = heldout_pair(nuclei, ck.norm, DegradationConfig(**NOISE), 0.25, 1234)
    gain = psnr_ssim(clean, restore_whole(ck.model, noisy))[0] - psnr_ssim(clean, noisy)[0]
    assert gain > 7.0, f"unet-xs gained only {gain:.2f} dB over its input in 300 steps (measured: 9.5 dB)"


def test_fresh_unet_is_the_identity_with_every_channel_alive(nuclei):
    model = build_model("unet-xs")
    x = torch.from_numpy(nuclei[:128, :128] / nuclei.max())[None, None]
    with torch.no_grad():
        out, feats = model(x, return_features=True)
    torch.testing.assert_close(out, x, rtol=0, atol=0)
    for name, f in zip(FEATURE_LEVELS, feats, strict=True):
        dead = (f.amax(dim=(0, 2, 3)) == 0).float().mean().item()
        assert dead < 0.15, f"{dead:.0%} of the {name} channels are zero on the whole image"


def _objective(method: str, volume) -> tuple[DistillObjective, StudentWithProjections, list[int]]:
    teacher = build_model("teacher-tiny").eval()
    calls: list[int] = []
    teacher.register_forward_hook(lambda *_: calls.append(1))
    sampler = PatchSampler(None, [volume], estimate_percentiles([volume]), spatial_dims=2, patch_size=32,
                           degradation=DegradationConfig(), val_fraction=0)  # fmt: skip
    cfg = LossConfig(method=method, max_positions=64, cl_warmup=0, alpha3=0.1)
    module = StudentWithProjections(build_model("unet-xs"), teacher.config.feature_channels, cfg.levels, method)
    return DistillObjective(teacher, cfg, sampler, 2, torch.device("cpu")), module, calls


@pytest.mark.parametrize("method", list(METHOD_TERMS))
def test_each_method_runs_the_teacher_only_when_it_needs_it(nuclei, method):
    volume = da.from_array(nuclei[:128, :128][None, None, None])
    objective, module, calls = _objective(method, volume)
    loss, parts = objective(module, 0)
    loss.backward()
    terms = METHOD_TERMS[method]
    assert len(calls) == (0 if method == "scratch" else 1)  # the contrastive term uses teacher.encode, not forward
    assert ("gk" in parts) == (terms.features == "gk") and ("cl" in parts) == terms.contrastive
    assert ("feature_l2" in parts) == (terms.features == "l2")


def test_restore_runs_channels_last_without_touching_the_callers_model(nuclei):
    torch.manual_seed(0)
    model = build_model("student-tiny")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ck = Checkpoint(model=model, config=model.config, role="student", norm=Normalization(low=0.0, high=255.0))
    out = restore(nuclei[:96, :96], ck, axes="YX", tile=64, overlap=8)
    with torch.inference_mode():
        whole = model(torch.from_numpy(nuclei[:96, :96] / 255.0)[None, None]).numpy()[0, 0] * 255.0
    assert np.abs(out - whole).mean() < 0.05 * np.ptp(whole)  # tiles of a transformer differ a little at seams
    for k, v in model.state_dict().items():
        assert v.is_contiguous() and torch.equal(v, before[k]), k


@pytest.mark.parametrize("norm_cls", [BiasFreeLayerNorm, WithBiasLayerNorm])
def test_channel_layernorm_by_hand(norm_cls):
    x = torch.tensor([[1.0, 2.0], [3.0, 6.0]]).reshape(1, 2, 1, 2)  # channels (1, 3) and (2, 6) at two pixels
    ln = norm_cls(2)
    var = torch.tensor([1.0, 4.0]).reshape(1, 1, 1, 2)  # biased variance over the channel pair
    mean = torch.tensor([2.0, 4.0]).reshape(1, 1, 1, 2)
    centred = x if norm_cls is BiasFreeLayerNorm else x - mean
    torch.testing.assert_close(ln(x), centred / torch.sqrt(var + 1e-5))


def test_bench_presets_prints_the_speed_table(capsys):
    assert main(["bench", "--presets", "unet-xs", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("| `unet-xs`"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "unet" and int(cells[2].replace(",", "")) == 121_969
    assert float(cells[4]) > 0 and float(cells[7]) > 0 and float(cells[8]) > 0  # Mpx/s, train and distil steps/s
    assert "matmul" in out


def test_bench_presets_refuses_an_unknown_name(capsys):
    assert main(["bench", "--presets", "unet-xxl"]) == 2
    assert "unknown preset" in capsys.readouterr().err


def test_training_a_large_network_on_the_cpu_warns_with_an_estimate(tmp_path, nuclei, caplog):
    big = ModelConfig(dim=64, num_blocks=(1, 1, 1, 1), num_refinement_blocks=0)  # 1.7 M FLOPs per pixel
    messages = []
    with caplog.at_level(logging.WARNING, logger="napari_skd"):
        train_teacher(
            {"data": {"clean": nuclei[:128, :128], "axes": "YX", "degradation": {"kind": "gaussian"},
                      "patch_size": 32, "batch_size": 1, "val_patches": 1},
             "model": big, "output": str(tmp_path / "t.pt"), "train": {"steps": 1, "device": "cpu"}},
            progress=lambda e: messages.append(e.message),
        )  # fmt: skip
    warning = next(m for m in messages if m.startswith("warning:"))
    assert "for 1 steps" in warning and "GPU" in warning and warning in caplog.text
