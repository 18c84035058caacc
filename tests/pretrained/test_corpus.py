"""The corpus stream: blind degradations, per-input normalisation, blur, seeded batches, the corpus manifest."""

import math

import numpy as np
import torch

from napari_skd.pretrained.corpus import (
    NATURAL_HELD_OUT,
    CorpusStream,
    build_corpus,
    degrade_blind,
    gaussian_blur,
    normalise_pair,
)
from napari_skd.pretrained.natural import sha256


def test_normalisation_maps_the_noisy_percentiles_to_0_and_1():
    noisy = torch.linspace(0, 999, 1000).view(1, 1, 10, 100)
    clean = torch.full_like(noisy, 500.0)
    x, y = normalise_pair(noisy, clean)
    # torch.quantile interpolates linearly: the 1st percentile of 0..999 is 9.99, the 99.8th is 997.002
    lo, hi = 9.99, 997.002
    assert math.isclose(float(x.flatten()[0]), (0 - lo) / (hi - lo), rel_tol=1e-5)
    assert math.isclose(float(y.flatten()[0]), (500 - lo) / (hi - lo), rel_tol=1e-5)


def test_blur_kernel_is_a_normalised_gaussian():
    impulse = torch.zeros(1, 1, 15, 15)
    impulse[0, 0, 7, 7] = 1
    out = gaussian_blur(impulse, torch.tensor([1.0]).view(1, 1, 1, 1))[0, 0]
    k = np.exp(-(np.arange(-3, 4) ** 2) / 2.0)
    k /= k.sum()
    np.testing.assert_allclose(out[4:11, 4:11].numpy(), np.outer(k, k), atol=1e-6)
    flat = torch.full((2, 1, 9, 9), 0.3)
    np.testing.assert_allclose(gaussian_blur(flat, torch.tensor([0.5, 1.0]).view(2, 1, 1, 1)).numpy(), 0.3, atol=1e-6)


def test_degradations_are_seeded_and_cover_the_noise_range():
    clean = torch.full((256, 1, 16, 16), 0.5)
    a = degrade_blind(clean, torch.Generator().manual_seed(1))
    b = degrade_blind(clean, torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, b)
    noise = (a - clean).flatten(1).std(dim=1)
    assert torch.isfinite(a).all() and noise.min() < 0.03 and noise.max() > 0.15  # blind: weak to strong noise


def test_stream_batches_are_a_pure_function_of_seed_and_step():
    corpus = build_corpus(4, size=64, seed=3, natural_crops=0, n_val=2)
    stream = CorpusStream(corpus, 32, torch.device("cpu"), seed=0, val_patches=4)
    b1, b2, b3 = stream.batch(5, 3), stream.batch(5, 3), stream.batch(6, 3)
    assert b1.input.shape == b1.target.shape == (3, 1, 32, 32)
    torch.testing.assert_close(b1.input, b2.input)
    assert not torch.equal(b1.input, b3.input)
    assert stream.validation["synthetic"].input.shape == (4, 1, 32, 32)


def test_corpus_manifest_lists_the_photographs_it_used():
    corpus = build_corpus(2, size=64, seed=0, natural_crops=4, n_val=2)
    natural = corpus.manifest["natural"]
    assert natural, "scikit-image ships photographs: the corpus must find them"
    from napari_skd.pretrained.natural import NATURAL_FILES, locate

    by_path = {f.path: f for f in NATURAL_FILES}
    for entry in natural:
        assert sha256(locate(by_path[entry["path"]])) == entry["sha256"]
    assert corpus.val_natural.shape[0] == len(natural)  # one held-out crop per photograph
    assert corpus.manifest["natural_held_out_rows"] == NATURAL_HELD_OUT
