"""Chapter 6.4's view synthesis: held-out azimuths never reach training; inputs and baselines."""

import pytest
import torch

from aigc_lab import view_study as vs


def test_held_out_azimuths_never_appear_in_training():
    assert len(vs.HELD_OUT) == 12 and len(vs.TRAIN_AZIMUTHS) == 36
    assert not set(vs.HELD_OUT) & set(vs.TRAIN_AZIMUTHS)
    used = {vs.AZIMUTHS[k] for triple in vs.training_triples() for k in triple}
    assert used <= set(vs.TRAIN_AZIMUTHS) and not used & set(vs.HELD_OUT)
    data = vs.training_data(size=16)
    assert not set(data.attributes["azimuth"].tolist()) & set(vs.HELD_OUT)
    # every input view of every example is a rendered training view: compare with the turntable
    turntable = vs.views(size=16)
    held = torch.tensor([vs.AZIMUTHS.index(a) for a in vs.HELD_OUT])
    held_views = turntable[:, :, held].reshape(-1, 3, 16, 16)
    for channels in (slice(0, 3), slice(3, 6), slice(10, 13)):
        images = data.images[:, channels]
        distance = torch.cdist(images.flatten(1), held_views.flatten(1)).min(1).values
        assert (distance > 0).all()


def test_training_triples_span_at_most_the_sector_gap():
    for i1, i, i2 in vs.training_triples():
        a1, a, a2 = vs.AZIMUTHS[i1], vs.AZIMUTHS[i], vs.AZIMUTHS[i2]
        assert a1 < a < a2 and a2 - a1 <= vs.MAX_SPAN
    for i1, i, i2 in vs.held_out_triples():
        assert vs.AZIMUTHS[i] in vs.HELD_OUT and vs.AZIMUTHS[i2] - vs.AZIMUTHS[i1] == vs.MAX_SPAN
        assert vs.AZIMUTHS[i1] in vs.TRAIN_AZIMUTHS and vs.AZIMUTHS[i2] in vs.TRAIN_AZIMUTHS


def test_model_input_and_baselines():
    first, second = torch.zeros(2, 3, 8, 8), torch.ones(2, 3, 8, 8)
    t = torch.tensor([0.25, 0.75])
    x = vs.model_input(first, second, t)
    assert x.shape == (2, 10, 8, 8)
    assert torch.equal(x[:, 6:9], vs.cross_fade(first, second, t)) and torch.equal(x[:, 9], t.view(2, 1, 1).expand(2, 8, 8))
    assert torch.equal(vs.nearest_view(first, second, t), torch.stack([first[0], second[1]]))
    assert torch.allclose(vs.cross_fade(first, second, t)[:, 0, 0, 0], t)
    with pytest.raises(ValueError, match="t must lie in"):
        vs.model_input(first, second, 1.5)
    with pytest.raises(ValueError, match=r"both be N x 3 x H x W"):
        vs.model_input(first[:, :1], second[:, :1], 0.5)
