"""Chapter 6.4's tools: interpolation, path length, the GIF writer and the stereo view."""

import io
import math

import numpy as np
import pytest
import torch

from aigc_lab import synthesis


def test_interpolation_ends_at_both_codes_and_slerp_keeps_the_norm():
    g = torch.Generator().manual_seed(0)
    z0, z1 = torch.randn(64, generator=g), torch.randn(64, generator=g)
    z1 = z1 * z0.norm() / z1.norm()  # equal norms: the great circle stays on the sphere
    for method in ("linear", "slerp"):
        path = synthesis.interpolate(z0, z1, 9, method=method)
        assert path.shape == (9, 64)
        assert torch.allclose(path[0], z0, atol=1e-5) and torch.allclose(path[-1], z1, atol=1e-5)
    linear, slerp = synthesis.interpolate(z0, z1, 9, method="linear"), synthesis.interpolate(z0, z1, 9)
    assert torch.allclose(linear[4], (z0 + z1) / 2)
    assert torch.allclose(slerp.norm(dim=1), z0.norm().expand(9), rtol=1e-4)
    assert linear[4].norm() < 0.85 * z0.norm()  # the straight line cuts inside the sphere
    # equal angles between consecutive codes
    cos = torch.nn.functional.cosine_similarity(slerp[1:], slerp[:-1], dim=1)
    assert torch.allclose(cos, cos[0].expand(8), atol=1e-5)


def test_slerp_of_parallel_codes_is_the_line_and_works_on_image_shaped_codes():
    z0 = torch.ones(2, 3)
    assert torch.allclose(synthesis.interpolate(z0, 2 * z0, 3), torch.stack([z0, 1.5 * z0, 2 * z0]))
    assert synthesis.interpolate(torch.randn(4, 2, 2), torch.randn(4, 2, 2), 5).shape == (5, 4, 2, 2)


@pytest.mark.parametrize(
    "args, kwargs, match",
    [((torch.zeros(3), torch.zeros(3), 1), {}, "steps must be an integer >= 2"),
     ((torch.zeros(3), torch.zeros(4), 5), {}, r"same shape, got \(3,\) and \(4,\)"),
     ((torch.zeros(3), torch.zeros(3), 5), {"method": "cubic"}, "method must be 'linear' or 'slerp'"),
     ((torch.tensor([float("nan")]), torch.zeros(1), 5), {}, "finite")],
)  # fmt: skip
def test_interpolate_rejects_bad_arguments(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        synthesis.interpolate(*args, **kwargs)


def test_path_lengths_of_an_even_fade_are_equal_and_of_a_jump_concentrated():
    fade = torch.linspace(0, 1, 11).view(-1, 1, 1, 1).expand(11, 1, 4, 4).contiguous()
    mean_pixel = lambda x: x.flatten(1).mean(1, keepdim=True)  # noqa: E731
    terms = synthesis.path_lengths(fade, mean_pixel)
    assert terms.shape == (10,) and torch.allclose(terms, torch.ones(10, dtype=torch.float64))  # (0.1 / 0.1)^2
    jump = torch.cat([torch.zeros(5, 1, 4, 4), torch.ones(6, 1, 4, 4)])
    terms = synthesis.path_lengths(jump, mean_pixel)
    assert terms.argmax() == 4 and float(terms.sum()) == float(terms[4]) == pytest.approx(100)  # all the change in one step of 0.1
    with pytest.raises(ValueError, match="at least 2 frames"):
        synthesis.path_lengths(fade[:1], mean_pixel)


def test_gif_has_the_frames_and_size_asked_for(tmp_path):
    from PIL import Image

    frames = torch.rand(6, 1, 8, 10, generator=torch.Generator().manual_seed(0))
    data = synthesis.save_gif(frames, tmp_path / "a" / "anim.gif", fps=10, scale=3)
    assert (tmp_path / "a" / "anim.gif").read_bytes() == data and not list((tmp_path / "a").glob("*.tmp"))
    gif = Image.open(io.BytesIO(data))
    assert gif.size == (30, 24) and gif.n_frames == 6 + 4  # forwards, then back without repeating the ends
    assert gif.info["duration"] == 100 and gif.info["loop"] == 0
    gif.seek(0)
    first = torch.tensor(np.array(gif.convert("L"))).float() / 255
    assert torch.allclose(first[::3, ::3], frames[0, 0], atol=1 / 255 + 1e-6)  # gray levels kept exactly
    once = Image.open(io.BytesIO(synthesis.save_gif([f for f in torch.rand(4, 3, 5, 5)], loop=False, scale=1)))
    assert once.n_frames == 4 and once.size == (5, 5)


@pytest.mark.parametrize(
    "frames, kwargs, match",
    [(torch.rand(1, 1, 4, 4), {}, "at least 2 frames"),
     (torch.rand(3, 1, 4, 4) * 2, {}, r"\[0, 1\]"),
     (torch.rand(3, 1, 4, 4), {"scale": 0}, "scale must be an integer >= 1"),
     (torch.rand(3, 1, 4, 4), {"fps": 0}, "fps must be positive")],
)  # fmt: skip
def test_gif_writer_rejects_bad_input(frames, kwargs, match):
    with pytest.raises(ValueError, match=match):
        synthesis.save_gif(frames, **kwargs)


def test_render_view_moves_pixels_left_by_their_disparity_and_the_nearest_wins():
    image = torch.arange(12.0).view(1, 1, 12).expand(1, 2, 12) / 12
    view, covered = synthesis.render_view(image, torch.full((2, 12), 2.0))
    assert torch.equal(view[0, :, :10], image[0, :, 2:]) and covered[:, :10].all() and not covered[:, 10:].any()
    # column 5 is near (d = 3) and lands on column 2, where column 2's own pixel (d = 0) would stay
    disparity = torch.zeros(2, 12)
    disparity[:, 5] = 3
    view, covered = synthesis.render_view(image, disparity)
    assert torch.equal(view[0, :, 2], image[0, :, 5])
    assert not covered[:, 5].any() and covered.sum() == 2 * 11  # the hole it leaves behind (a disocclusion)
    # a pixel of unknown disparity is left out, and so is one moved past the left edge
    disparity[:, 0], disparity[:, 1] = float("nan"), 4
    view, covered = synthesis.render_view(image, disparity)
    assert covered[0].tolist() == [False, False, True, True, True, False] + [True] * 6
    assert torch.equal(view[0, :, 2], image[0, :, 5]) and (view[:, :, :2] == 0).all()


def test_render_view_is_a_z_buffer_like_a_loop_over_pixels():
    g = torch.Generator().manual_seed(0)
    image = torch.rand(3, 9, 30, generator=g)
    disparity = torch.randint(0, 8, (9, 30), generator=g).float() + 0.25 * torch.rand(9, 30, generator=g)
    disparity[2, 3] = float("nan")
    view, covered = synthesis.render_view(image, disparity)
    expected, depth = torch.zeros_like(image), torch.full((9, 30), -1.0)
    for y in range(9):
        for x in range(30):  # far to near, left to right: a later pixel at the same depth wins, as a stable sort does
            d = float(disparity[y, x])
            target = x - round(d) if d == d else -1
            if target >= 0 and d >= depth[y, target]:
                depth[y, target] = d
                expected[:, y, target] = image[:, y, x]
    assert torch.equal(covered, depth >= 0)
    assert torch.equal(view, expected)  # every channel of a pixel comes from the same source pixel


def test_render_view_and_fill_holes_check_their_input():
    with pytest.raises(ValueError, match=r"disparity must be H x W = \(4, 5\)"):
        synthesis.render_view(torch.rand(3, 4, 5), torch.zeros(5, 4))
    with pytest.raises(ValueError, match="disparity must be >= 0"):
        synthesis.render_view(torch.rand(3, 4, 5), -torch.ones(4, 5))
    with pytest.raises(ValueError, match=r"holes must be H x W = \(4, 5\)"):
        synthesis.fill_holes(torch.rand(3, 4, 5), torch.zeros(4, 4, dtype=torch.bool))


def test_fill_holes_changes_only_the_holes():
    image = torch.linspace(0, 1, 40).view(1, 1, 40).expand(3, 30, 40).contiguous()
    holes = torch.zeros(30, 40, dtype=torch.bool)
    holes[10:14, 15:19] = True
    damaged = torch.where(holes, torch.zeros_like(image), image)
    filled = synthesis.fill_holes(damaged, holes)
    assert filled.shape == image.shape
    assert torch.allclose(filled[:, ~holes], image[:, ~holes], atol=0.5 / 255 + 1e-6)  # 8-bit rounding only
    assert (filled[:, holes] - image[:, holes]).abs().max() < 0.05  # a smooth ramp is filled nearly exactly
    gray = synthesis.fill_holes(damaged[:1], holes)
    assert gray.shape == (1, 30, 40)


def test_masked_psnr():
    a, b = torch.zeros(1, 2, 2), torch.full((1, 2, 2), 0.1)
    mask = torch.tensor([[True, False], [False, False]])
    assert synthesis.masked_psnr(a, b, mask) == pytest.approx(20.0)
    assert math.isinf(synthesis.masked_psnr(a, a, mask))
    with pytest.raises(ValueError, match="selects no pixel"):
        synthesis.masked_psnr(a, b, torch.zeros(2, 2, dtype=torch.bool))


def test_the_motorcycle_disparity_is_the_left_views():
    left, right, disparity = synthesis.stereo_motorcycle()
    assert left.shape == right.shape == (3, 500, 741) and disparity.shape == (500, 741)
    known = torch.isfinite(disparity)
    assert 0.9 < float(known.float().mean()) < 1 and float(disparity[known].min()) > 0
    view, covered = synthesis.render_view(left, disparity)
    psnr_minus = synthesis.masked_psnr(view, right, covered)
    # the other reading, right[x] = left[x - d], moves pixels to the right instead
    view_plus, covered_plus = synthesis.render_view(left.flip(-1), disparity.flip(-1))
    psnr_plus = synthesis.masked_psnr(view_plus.flip(-1), right, covered_plus.flip(-1))
    assert psnr_minus > psnr_plus + 5
