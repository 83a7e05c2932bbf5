"""Data augmentations for DrAC (Raileanu et al., 2021, Sec. 3 and App. C), as batched torch ops.

Images are [N, C, H, W] tensors, uint8 in [0, 255] or float in [0, 1]; every augmentation returns
the same shape, dtype and value range. Each sample gets its own random parameters, drawn from the
`torch.Generator` passed in, so a given generator state gives the same output every time.

The eight image augmentations follow DrAC's `data_augs.py` definitions:
  crop          replicate-pad by 12 pixels, then a random 64x64 crop (offset 0..24 per axis)
  random-conv   a fresh 3x3 conv (3 -> 3 channels, no bias, zero padding, Xavier-normal weights)
                per sample
  grayscale     0.299 R + 0.587 G + 0.114 B, repeated over the three channels
  flip          with p = 0.5 per sample, flip along the image's height axis (DrAC flips axis 2
                of NCHW, i.e. upside down)
  rotate        rotate each sample by k * 90 degrees, k uniform in {0, 1, 2, 3}
  cutout        zero a box of h, w in [7, 21] whose top-left corner is (12 + h, 24 + w)
  cutout-color  the same box filled with a random RGB colour
  color-jitter  brightness, contrast and saturation factors in [0.6, 1.4] and a hue shift in
                [-0.5, 0.5] * 255 / 360 of the hue circle per sample, contrast applied before or
                after the HSV adjustments (one coin per batch)
Differences from DrAC's code (see README): random-conv outputs are clipped to the image range
(DrAC feeds the unclipped conv output to the network); cutout-color's colour is a proper pixel
value (DrAC's colour after the first minibatch is an integer 0..254 painted into a [0, 1] image).

Vector observations (CartPole) get one of VECTOR_AUGMENTATIONS:
  gaussian   x + N(0, 0.1^2)
  scale      x * U(0.8, 1.2), per sample and feature
  dropout    each feature zeroed with probability 0.2
  sign-flip  one random feature per sample negated (breaks the state's meaning on purpose)
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from common.cli import UsageError

PAD = 12                    # crop: replication padding on each side
CUTOUT_BOX = (7, 22)        # cutout box sides: randint(7, 22), i.e. 7..21 pixels
CUTOUT_PIVOT = (12, 24)     # cutout: box top-left = (pivot_h + h, pivot_w + w)
JITTER = 0.4                # brightness / contrast / saturation factor in [1 - 0.4, 1 + 0.4]
JITTER_HUE = 0.5            # hue factor in [-0.5, 0.5], applied as factor * 255 / 360
GRAY_WEIGHTS = (0.299, 0.587, 0.114)


def _rand(shape, generator: torch.Generator, device) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=generator.device).to(device)


def _randint(low: int, high: int, shape, generator: torch.Generator, device) -> torch.Tensor:
    return torch.randint(low, high, shape, generator=generator,
                         device=generator.device).to(device)


def _to_unit_float(obs: torch.Tensor) -> torch.Tensor:
    return obs.float() / 255.0 if obs.dtype == torch.uint8 else obs


def _from_unit_float(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    x = x.clamp(0.0, 1.0)
    if like.dtype == torch.uint8:
        return (x * 255.0).round_().to(torch.uint8)
    return x.to(like.dtype)


# ---------------------------------------------------------------------------- image augmentations

def crop(obs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random crop of the replicate-padded image back to its own size (clamped indices are
    exactly replication padding)."""
    n, _, h, w = obs.shape
    dy = _randint(0, 2 * PAD + 1, (n,), generator, obs.device)
    dx = _randint(0, 2 * PAD + 1, (n,), generator, obs.device)
    rows = (dy[:, None] + torch.arange(h, device=obs.device) - PAD).clamp_(0, h - 1)
    cols = (dx[:, None] + torch.arange(w, device=obs.device) - PAD).clamp_(0, w - 1)
    batch = torch.arange(n, device=obs.device)[:, None, None]
    out = obs[batch, :, rows[:, :, None], cols[:, None, :]]   # [N, H, W, C]
    return out.permute(0, 3, 1, 2).contiguous()


def random_conv(obs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A different random 3x3 convolution for every sample (one grouped conv call)."""
    n, c, h, w = obs.shape
    x = _to_unit_float(obs)
    std = (2.0 / (c * 9 + c * 9)) ** 0.5           # Xavier-normal for a 3x3, c -> c conv
    weight = torch.randn((n * c, c, 3, 3), generator=generator,
                         device=generator.device).to(x.device, x.dtype) * std
    out = F.conv2d(x.reshape(1, n * c, h, w), weight, padding=1, groups=n)
    return _from_unit_float(out.reshape(n, c, h, w), obs)


def grayscale(obs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    x = _to_unit_float(obs)
    weights = torch.tensor(GRAY_WEIGHTS, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    gray = (x * weights).sum(1, keepdim=True)
    return _from_unit_float(gray.expand_as(x), obs)


def flip(obs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    chosen = _rand((obs.shape[0],), generator, obs.device) < 0.5
    return torch.where(chosen.view(-1, 1, 1, 1), obs.flip(2), obs)


def rotate(obs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    k = _randint(0, 4, (obs.shape[0],), generator, obs.device).view(-1, 1, 1, 1)
    out = obs.clone()
    for turns in (1, 2, 3):
        out = torch.where(k == turns, torch.rot90(obs, turns, dims=(2, 3)), out)
    return out


def _cutout_mask(obs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    n, _, h, w = obs.shape
    box_h = _randint(*CUTOUT_BOX, (n,), generator, obs.device)
    box_w = _randint(*CUTOUT_BOX, (n,), generator, obs.device)
    top, left = CUTOUT_PIVOT[0] + box_h, CUTOUT_PIVOT[1] + box_w
    r = torch.arange(h, device=obs.device)[None, :]
    c = torch.arange(w, device=obs.device)[None, :]
    in_rows = (r >= top[:, None]) & (r < (top + box_h)[:, None])    # [N, H]
    in_cols = (c >= left[:, None]) & (c < (left + box_w)[:, None])  # [N, W]
    return (in_rows[:, :, None] & in_cols[:, None, :])[:, None]     # [N, 1, H, W]


def cutout(obs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return obs.masked_fill(_cutout_mask(obs, generator), 0)


def cutout_color(obs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    mask = _cutout_mask(obs, generator)
    n, c = obs.shape[:2]
    color = _randint(0, 256, (n, c, 1, 1), generator, obs.device)
    color = color.to(torch.uint8) if obs.dtype == torch.uint8 else (color / 255.0).to(obs.dtype)
    return torch.where(mask, color, obs)


def rgb_to_hsv(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """[N, 3, H, W] RGB in [0, 1] -> HSV with every channel in [0, 1]."""
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    cmax, argmax = x.max(1)
    cmin = x.min(1).values
    delta = cmax - cmin
    hue = torch.stack([((g - b) / (delta + eps)) % 6, (b - r) / (delta + eps) + 2,
                       (r - g) / (delta + eps) + 4], 1).gather(1, argmax[:, None])[:, 0]
    hue = torch.where(delta > 0, hue / 6.0, torch.zeros_like(hue))
    sat = torch.where(cmax > 0, delta / (cmax + eps), torch.zeros_like(cmax))
    return torch.stack([hue, sat, cmax], 1)


def hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """Inverse of `rgb_to_hsv`: channel n of RGB is V - V S clamp(min(k, 4 - k), 0, 1) with
    k = (n + 6 H) mod 6 and n = 5, 3, 1 for R, G, B."""
    x = x.clamp(0.0, 1.0)
    h, s, v = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    n = torch.tensor([5.0, 3.0, 1.0], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    k = (n + 6.0 * h) % 6.0
    return (v - v * s * torch.minimum(k, 4.0 - k).clamp(0.0, 1.0)).clamp(0.0, 1.0)


def color_jitter(obs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    n = obs.shape[0]
    x = _to_unit_float(obs)
    factors = _rand((4, n), generator, x.device).to(x.dtype)
    brightness, contrast, saturation = (1.0 - JITTER + 2 * JITTER * factors[:3]).view(3, n, 1, 1)
    hue_shift = (-JITTER_HUE + 2 * JITTER_HUE * factors[3]).view(n, 1, 1) * 255.0 / 360.0
    contrast_first = bool(_rand((1,), generator, "cpu")[0] >= 0.5)

    def adjust_contrast(img):
        mean = img.mean(dim=(2, 3), keepdim=True)
        return ((img - mean) * contrast[:, None] + mean).clamp(0.0, 1.0)

    def adjust_hsv(img):
        hsv = rgb_to_hsv(img)
        value = (hsv[:, 2] * brightness).clamp(0.0, 1.0)
        hue = (hsv[:, 0] + hue_shift) % 1.0
        sat = (hsv[:, 1] * saturation).clamp(0.0, 1.0)
        return hsv_to_rgb(torch.stack([hue, sat, value], 1))

    x = adjust_hsv(adjust_contrast(x)) if contrast_first else adjust_contrast(adjust_hsv(x))
    return _from_unit_float(x, obs)


# --------------------------------------------------------------------------- vector augmentations

def gaussian(obs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    noise = torch.randn(obs.shape, generator=generator, device=generator.device)
    return obs + 0.1 * noise.to(obs.device, obs.dtype)


def scale(obs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return obs * (0.8 + 0.4 * _rand(obs.shape, generator, obs.device).to(obs.dtype))


def dropout(obs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return obs.masked_fill(_rand(obs.shape, generator, obs.device) < 0.2, 0.0)


def sign_flip(obs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    flat = obs.reshape(obs.shape[0], -1)
    feature = _randint(0, flat.shape[1], (flat.shape[0],), generator, obs.device)
    sign = torch.ones_like(flat).scatter_(1, feature[:, None], -1.0)
    return (flat * sign).reshape(obs.shape)


IMAGE_AUGMENTATIONS: dict[str, Callable] = {
    "crop": crop, "random-conv": random_conv, "grayscale": grayscale, "flip": flip,
    "rotate": rotate, "cutout": cutout, "cutout-color": cutout_color,
    "color-jitter": color_jitter,
}
VECTOR_AUGMENTATION_FNS: dict[str, Callable] = {
    "gaussian": gaussian, "scale": scale, "dropout": dropout, "sign-flip": sign_flip,
}
AUGMENTATIONS: dict[str, Callable] = {**IMAGE_AUGMENTATIONS, **VECTOR_AUGMENTATION_FNS}


def augment(name: str, obs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Apply the augmentation `name` to the batch `obs` with randomness from `generator`."""
    if name not in AUGMENTATIONS:
        raise UsageError(f"unknown augmentation {name!r}; allowed: {', '.join(AUGMENTATIONS)}")
    if name in IMAGE_AUGMENTATIONS and (obs.dim() != 4 or obs.shape[1] != 3):
        raise UsageError(f"augmentation {name!r} needs RGB images [N, 3, H, W], "
                         f"got shape {tuple(obs.shape)}")
    if name in VECTOR_AUGMENTATION_FNS and not obs.is_floating_point():
        raise UsageError(f"augmentation {name!r} needs float vector observations, "
                         f"got {obs.dtype}")
    return AUGMENTATIONS[name](obs, generator)
