import pytest
import torch

from batchsampler.integrations.vision import AugmentConfig, simclr_view
from batchsampler.integrations.vision.augment import (
    color_jitter,
    random_grayscale,
    random_resized_crop,
)

IDENTITY = AugmentConfig(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), flip_prob=0.0, jitter_prob=0.0, grayscale_prob=0.0)


def _images(channels, b=8, size=28):
    return torch.rand(b, channels, size, size, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("channels,size", [(1, 28), (3, 32)])
def test_views_keep_shape_dtype_and_range(channels, size):
    x = _images(channels, size=size)
    view = simclr_view(x, torch.Generator().manual_seed(1))
    assert view.shape == x.shape and view.dtype == x.dtype
    assert float(view.min()) >= 0.0 and float(view.max()) <= 1.0
    assert not torch.allclose(view, x)


def test_views_depend_only_on_the_generator():
    x = _images(3)
    rng_state = torch.get_rng_state()
    a = simclr_view(x, torch.Generator().manual_seed(5))
    b = simclr_view(x, torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    assert not torch.allclose(a, simclr_view(x, torch.Generator().manual_seed(6)))
    assert torch.equal(torch.get_rng_state(), rng_state)  # the global RNG is never used
    g = torch.Generator().manual_seed(5)
    first, second = simclr_view(x, g), simclr_view(x, g)
    assert not torch.allclose(first, second)  # two views of the same batch differ


def test_identity_settings_return_the_images():
    x = _images(3, size=32)
    assert torch.allclose(simclr_view(x, torch.Generator().manual_seed(0), IDENTITY), x, atol=1e-5)


def test_full_crop_with_certain_flip_mirrors_the_images():
    x = _images(1)
    out = random_resized_crop(x, torch.Generator().manual_seed(0), (1.0, 1.0), (1.0, 1.0), flip_prob=1.0)
    assert torch.allclose(out, x.flip(-1), atol=1e-5)


def test_small_crops_zoom_in():
    x = torch.zeros(4, 1, 28, 28)
    x[..., :, 14:] = 1.0  # left half black, right half white
    out = random_resized_crop(x, torch.Generator().manual_seed(0), (0.04, 0.04), (1.0, 1.0), flip_prob=0.0)
    # A 20 % wide box lies mostly in one half, so most views are (nearly) uniform.
    spread = (out.amax(dim=(1, 2, 3)) - out.amin(dim=(1, 2, 3)))
    assert (spread < 0.5).sum() >= 2 and out.shape == x.shape


def test_grayscale_uses_luma_and_leaves_grey_images_alone():
    x = _images(3)
    grey = random_grayscale(x, torch.Generator().manual_seed(0), prob=1.0)
    luma = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    for c in range(3):
        assert torch.allclose(grey[:, c], luma, atol=1e-6)
    single = _images(1)
    assert torch.equal(random_grayscale(single, torch.Generator().manual_seed(0), prob=1.0), single)


def test_hue_rotation_keeps_grey_pixels_and_changes_colours():
    g = torch.Generator().manual_seed(0)
    grey = torch.rand(4, 1, 8, 8, generator=g).expand(4, 3, 8, 8).contiguous()
    out = color_jitter(grey, g, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.5, prob=1.0)
    assert torch.allclose(out, grey, atol=1e-5)  # grey has no chroma to rotate
    red = torch.zeros(4, 3, 8, 8)
    red[:, 0] = 0.8
    shifted = color_jitter(red, g, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.5, prob=1.0)
    assert (shifted[:, 1:] > 0.05).any()


def test_jitter_probability_zero_is_identity_and_brightness_scales():
    x = _images(1) * 0.5
    assert torch.allclose(color_jitter(x, torch.Generator().manual_seed(0), prob=0.0), x)
    out = color_jitter(x, torch.Generator().manual_seed(0), brightness=0.5, contrast=0.0, prob=1.0)
    ratio = out.flatten(1).sum(1) / x.flatten(1).sum(1)
    assert ((ratio > 0.5 - 1e-4) & (ratio < 1.5 + 1e-4)).all() and ratio.std() > 0.01


@pytest.mark.parametrize("kwargs", [{"crop_scale": (0.0, 1.0)}, {"crop_scale": (0.5, 0.2)}, {"flip_prob": 1.5},
                                    {"brightness": 1.0}, {"hue": 0.6}, {"crop_ratio": (2.0, 1.0)}])
def test_augment_config_validation(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        AugmentConfig(**kwargs)


def test_wrong_shapes_are_refused():
    with pytest.raises(ValueError, match="images"):
        simclr_view(torch.rand(2, 2, 8, 8), torch.Generator())
    with pytest.raises(ValueError, match="images"):
        simclr_view(torch.rand(1, 8, 8), torch.Generator())
