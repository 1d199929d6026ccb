"""The classical oil-painting and pencil-drawing styles of chapter 6.2 (aigc_lab.styles)."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage import data, transform

from aigc_lab.styles import (
    STYLES,
    kuwahara,
    line_kernel,
    oil_painting,
    opencv_pencil_sketch,
    opencv_stylization,
    pencil_drawing,
    pencil_texture,
    reference_image,
    render_style,
    stroke_map,
    texture_exponent,
    tone_distribution,
    tone_map,
)

pytestmark = pytest.mark.usefixtures("one_thread")

LUMA = np.array([0.299, 0.587, 0.114])


def _photo(size: int = 48, gray: bool = False) -> torch.Tensor:
    """``skimage.data.astronaut`` resized to ``size x size``, as a ``1 x C x H x W`` float32 tensor."""
    array = transform.resize(data.astronaut(), (size, size), anti_aliasing=True)
    if gray:
        return torch.from_numpy(array @ LUMA).float()[None, None]
    return torch.from_numpy(array).float().permute(2, 0, 1)[None]


def _dithered_photo(size: int = 48) -> np.ndarray:
    """An RGB photo plus faint continuous noise: a photo's 8-bit values make exact ties between
    two quadrants' variances common, and which tied quadrant wins depends on float rounding."""
    rng = np.random.default_rng(0)
    array = transform.resize(data.astronaut(), (size, size), anti_aliasing=True)
    return np.clip(array + rng.uniform(-1e-3, 1e-3, array.shape), 0, 1)


# --------------------------------------------------------------------------------------------
# Kuwahara
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("radius", [1, 2, 4, 7])
def test_kuwahara_matches_pykuwahara_on_gray_everywhere(radius):
    pykuwahara = pytest.importorskip("pykuwahara")
    gray = _dithered_photo() @ LUMA
    reference = pykuwahara.kuwahara(gray, method="mean", radius=radius)
    ours = kuwahara(torch.from_numpy(gray)[None, None], radius)[0, 0].numpy()
    np.testing.assert_allclose(ours, reference, atol=1e-9)  # borders included: both reflect about the edge pixel


@pytest.mark.parametrize("radius", [2, 4])
def test_kuwahara_matches_pykuwahara_on_colour(radius):
    pykuwahara = pytest.importorskip("pykuwahara")
    cv2 = pytest.importorskip("cv2")
    rgb = _dithered_photo()
    # pykuwahara measures the variance on cv2.cvtColor(image, grayconv); ours on the BT.601 luma,
    # which is what COLOR_RGB2GRAY computes, so the two definitions agree for RGB arrays:
    np.testing.assert_allclose(cv2.cvtColor(rgb.astype(np.float32), cv2.COLOR_RGB2GRAY), rgb @ LUMA, atol=1e-6)
    reference = pykuwahara.kuwahara(rgb, method="mean", radius=radius, image_2d=rgb @ LUMA)
    ours = kuwahara(torch.from_numpy(rgb).permute(2, 0, 1)[None], radius)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(ours, reference, atol=1e-9)


def test_kuwahara_keeps_a_step_edge_sharp_and_smooths_the_flat_sides():
    radius, side, edge = 3, 48, 24
    clean = torch.full((1, 1, side, side), 0.3)
    clean[..., edge:] = 0.7
    noisy = (clean + 0.05 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)

    def flat_variance(images):  # the noise on both sides, away from the edge and the border
        left = images[0, 0, radius:-radius, radius : edge - radius - 1]
        right = images[0, 0, radius:-radius, edge + radius + 1 : -radius]
        return float(torch.cat([left.flatten() - 0.3, right.flatten() - 0.7]).var())

    filtered = kuwahara(noisy, radius)
    assert flat_variance(filtered) < flat_variance(noisy) / 5  # measured: about 18 times smaller
    # the step stays one pixel wide: every pixel keeps its side, and the columns next to the edge keep their level
    assert bool((filtered[..., :edge] < 0.5).all()) and bool((filtered[..., edge:] > 0.5).all())
    columns = filtered[0, 0].mean(dim=0)
    assert abs(float(columns[edge - 1]) - 0.3) < 0.03 and abs(float(columns[edge]) - 0.7) < 0.03
    # whereas a box filter over the same 7 x 7 window smears the step over several columns
    blurred = F.avg_pool2d(F.pad(noisy, (radius,) * 4, mode="reflect"), 2 * radius + 1, stride=1)
    assert abs(float(blurred[0, 0, :, edge - 1].mean()) - 0.3) > 0.03


def test_oil_painting_is_kuwahara_then_more_saturated():
    photo = _photo()
    np.testing.assert_allclose(oil_painting(photo, radius=3, saturation=1.0), kuwahara(photo, 3), atol=0)
    painted, filtered = oil_painting(photo, radius=3, saturation=1.3), kuwahara(photo, 3)
    luma = torch.tensor(LUMA, dtype=torch.float32).view(1, 3, 1, 1)

    def chroma(images):
        return (images - (images * luma).sum(1, keepdim=True)).abs().mean()

    assert float(chroma(painted)) > 1.1 * float(chroma(filtered))
    # the brightness is kept, up to the clipping of saturated colours
    assert float(((painted - filtered) * luma).sum(1).abs().mean()) < 0.01


# --------------------------------------------------------------------------------------------
# Every style keeps the book's conventions
# --------------------------------------------------------------------------------------------

RENDERERS = {
    "kuwahara": lambda x: kuwahara(x, 2),
    "oil_painting": lambda x: oil_painting(x, radius=2),
    "opencv_stylization": opencv_stylization,
    "pencil_drawing": pencil_drawing,
    "pencil_drawing_colour": lambda x: pencil_drawing(x, colour=True),
    "opencv_pencil_sketch": opencv_pencil_sketch,
}


@pytest.mark.parametrize("gray", [True, False], ids=["gray", "rgb"])
@pytest.mark.parametrize("name", sorted(RENDERERS))
def test_styles_keep_shape_dtype_and_range(name, gray):
    photo = _photo(32, gray=gray)
    images = torch.cat([photo, photo.flip(-1)])  # a batch of two
    out = RENDERERS[name](images)
    assert out.shape == images.shape and out.dtype == torch.float32
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    assert not torch.equal(out, images)
    assert RENDERERS[name](images.double()).dtype == torch.float64
    assert RENDERERS[name](images[:0]).shape == (0, *images.shape[1:])


@pytest.mark.parametrize("fn", [stroke_map, tone_map])
def test_the_maps_are_gray(fn):
    out = fn(_photo(32))
    assert out.shape == (1, 1, 32, 32) and out.dtype == torch.float32
    assert float(out.min()) >= 0 and float(out.max()) <= 1


def test_pencil_drawing_returns_the_gray_drawing_in_every_channel():
    out = pencil_drawing(_photo(32))
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 0], out[:, 2])
    np.testing.assert_allclose(out[:, :1], pencil_drawing(_photo(32, gray=True)), atol=1e-5)
    coloured = pencil_drawing(_photo(32), colour=True)
    assert float((coloured[:, 0] - coloured[:, 2]).abs().max()) > 0.05


@pytest.mark.parametrize("name", sorted(RENDERERS))
def test_bad_images_are_refused_with_the_expected_form(name):
    fn = RENDERERS[name]
    photo = _photo(16)
    with pytest.raises(ValueError, match="N x C x H x W"):
        fn(photo[0])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        fn(photo * 2)
    with pytest.raises(ValueError, match="floating-point"):
        fn((photo * 255).to(torch.uint8))
    with pytest.raises(ValueError, match="1 or 3 channel"):
        fn(photo[:, :2])


def test_bad_options_are_refused():
    photo = _photo(16)
    with pytest.raises(ValueError, match="radius must be an integer >= 1"):
        kuwahara(photo, 0)
    with pytest.raises(ValueError, match="radius must be an integer"):
        kuwahara(photo, 2.5)
    with pytest.raises(ValueError, match=r"sigma_r must be a number in \[0.001, 1\]"):
        opencv_stylization(photo, sigma_r=2)
    with pytest.raises(ValueError, match="shade_factor"):
        opencv_pencil_sketch(photo, shade_factor=0.5)
    with pytest.raises(ValueError, match="texture must be 1 x 1"):
        pencil_drawing(photo, texture=pencil_texture(8))
    with pytest.raises(ValueError, match="three non-negative numbers"):
        tone_distribution(weights=(1, 2))
    with pytest.raises(ValueError, match="seed must be an int or a torch.Generator"):
        pencil_texture(8, seed="zero")


def test_render_style_dispatches_and_names_the_known_styles():
    photo = _photo(24)
    assert set(STYLES) == {"oil", "pencil"}
    assert torch.equal(render_style(photo, "oil"), oil_painting(photo))
    assert torch.equal(render_style(photo, "pencil", seed=1), pencil_drawing(photo, seed=1))
    with pytest.raises(ValueError, match="unknown style 'watercolour'; choose one of: oil, pencil"):
        render_style(photo, "watercolour")


# --------------------------------------------------------------------------------------------
# Pencil drawing: its parts against their formulas
# --------------------------------------------------------------------------------------------


def test_line_kernels_are_lines_of_equal_weight_in_every_direction():
    horizontal, vertical = line_kernel(5, 0.0), line_kernel(5, math.pi / 2)
    np.testing.assert_allclose(horizontal[2], 0.2)
    np.testing.assert_allclose(horizontal.sum(0), 0.2)
    np.testing.assert_allclose(vertical, horizontal.T, atol=1e-12)
    for i in range(8):
        kernel = line_kernel(9, math.pi * i / 8)
        assert kernel.sum() == pytest.approx(1)
        np.testing.assert_allclose(kernel, kernel[::-1, ::-1], atol=1e-12)  # a line through the centre
    up_right = line_kernel(5, math.pi / 4)
    assert up_right[0, 4] > 0 and up_right[4, 0] > 0 and up_right[0, 0] == 0  # 45 degrees rises to the right


def test_pencil_texture_is_deterministic_by_seed_and_light():
    a, b, c = pencil_texture(64, seed=3), pencil_texture(64, seed=3), pencil_texture(64, seed=4)
    assert a.shape == (1, 1, 64, 64) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(a, pencil_texture(64, seed=torch.Generator().manual_seed(3)))
    assert 0.7 <= float(a.mean()) <= 0.8 and float(a.min()) >= 0 and float(a.max()) <= 1
    assert pencil_texture((20, 30)).shape == (1, 1, 20, 30)


def test_pencil_texture_strokes_follow_the_hatching_angle():
    texture = pencil_texture(96, angle=45.0)[0, 0].double()
    texture = texture - texture.mean()
    along = float((texture[1:, :-1] * texture[:-1, 1:]).mean())  # one step up and to the right
    across = float((texture[1:, 1:] * texture[:-1, :-1]).mean())
    assert along > 3 * abs(across)


def test_pencil_drawing_is_deterministic_by_seed():
    photo = _photo(32)
    assert torch.equal(pencil_drawing(photo, seed=5), pencil_drawing(photo, seed=5))
    assert not torch.equal(pencil_drawing(photo, seed=5), pencil_drawing(photo, seed=6))


def test_stroke_map_is_dark_on_edges_and_white_on_flat_regions():
    square = torch.full((1, 1, 60, 60), 0.8)
    square[..., 20:40, 20:40] = 0.2
    strokes = stroke_map(square)[0, 0]
    # forward differences put the square's left and top sides on column and row 19
    edge = torch.cat([strokes[20:40, 19], strokes[19, 20:40]])
    flat = torch.cat([strokes[26:34, 26:34].flatten(), strokes[:8, :8].flatten()])  # its inside and a corner of the background
    assert float(edge.mean()) < 0.3 and float(flat.min()) > 0.95  # measured: 0.1 and 1


def test_tone_distribution_is_the_papers_mixture():
    v, p = tone_distribution()
    assert len(v) == 256 and p.sum() == pytest.approx(1)
    assert v[p.argmax()] == 1.0  # paper white is the most frequent tone
    v, uniform = tone_distribution(weights=(0, 1, 0))
    inside = (v >= 105 / 255 - 1e-9) & (v <= 225 / 255 + 1e-9)
    np.testing.assert_allclose(uniform[inside], 1 / inside.sum())
    np.testing.assert_allclose(uniform[~inside], 0)
    v, dark = tone_distribution(weights=(0, 0, 1))
    assert v[dark.argmax()] == pytest.approx(90 / 255, abs=0.5 / 255)
    assert float((dark * (v - 90 / 255) ** 2).sum()) == pytest.approx((11 / 255) ** 2, rel=0.05)
    v, bright = tone_distribution(weights=(1, 0, 0))
    assert bright[-10] / bright[-1] == pytest.approx(math.exp(-9 * 255 / 255 / 9), rel=1e-6)  # falls off as exp(-(255 - v) / 9)


def test_tone_map_moves_the_histogram_towards_the_pencil_distribution():
    photo = _photo(48)
    v, p = tone_distribution()
    target_cdf = np.cumsum(p)

    def cdf_distance(gray):
        cdf = np.searchsorted(np.sort(gray.flatten().numpy()), v, side="right") / gray.numel()
        return float(np.abs(cdf - target_cdf).mean())

    before = cdf_distance((photo * torch.tensor(LUMA, dtype=torch.float32).view(1, 3, 1, 1)).sum(1))
    after = cdf_distance(tone_map(photo))
    assert after < before / 10 and after < 0.01  # measured: 0.43 before, 0.0003 after


def test_texture_exponent_solves_the_papers_least_squares():
    rng = np.random.default_rng(0)
    texture = rng.uniform(0.5, 0.95, (12, 14))
    tone = rng.uniform(0.3, 1.0, (12, 14))
    np.testing.assert_allclose(texture_exponent(texture, tone, smoothness=0), np.log(tone) / np.log(texture), rtol=1e-5)
    beta = texture_exponent(texture, tone, smoothness=0.2)

    def objective(b):
        fit = ((b * np.log(texture) - np.log(tone)) ** 2).sum()
        return fit + 0.2 * ((np.diff(b, axis=0) ** 2).sum() + (np.diff(b, axis=1) ** 2).sum())

    # a minimum: no small change of one pixel or of the whole map lowers the objective
    for change in (np.eye(1, beta.size, 40).reshape(beta.shape), np.ones_like(beta), rng.normal(size=beta.shape)):
        for step in (1e-3, -1e-3):
            assert objective(beta + step * change) >= objective(beta) - 1e-9
    per_pixel = np.log(tone) / np.log(texture)
    assert np.abs(np.diff(beta, axis=1)).mean() < np.abs(np.diff(per_pixel, axis=1)).mean()


@pytest.mark.parametrize("style", sorted(STYLES))
def test_reference_image_is_a_rendered_photo(style):
    image = reference_image(style, 32)
    assert image.shape == (1, 3, 32, 32) and image.dtype == torch.float32
    assert float(image.min()) >= 0 and float(image.max()) <= 1
    assert torch.equal(image, reference_image(style, 32))
    with pytest.raises(ValueError, match="choose one of: oil, pencil"):
        reference_image("watercolour", 32)
