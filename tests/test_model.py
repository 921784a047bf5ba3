"""The DeepISP network: monomials, W layout, residual-sum semantics, shapes, receptive field, W init."""

from dataclasses import replace

import pytest
import torch

from deepisp.model import (
    MONOMIAL_ORDER,
    PRESETS,
    DeepISP,
    ModelConfig,
    apply_color_transform,
    count_parameters,
    fit_affine,
    flops_per_pixel,
    grow,
    quadratic_monomials,
)

TINY_FULL = ModelConfig(mode="full", n_ll=3, n_hl=1, width=8, hl_width=8)
TINY_JDD = ModelConfig(mode="jdd", n_ll=4, width=8)


def randomize(model: torch.nn.Module, std: float = 0.1, seed: int = 0) -> torch.nn.Module:
    """Non-zero weights everywhere (the default init zeroes the residual convs)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)
    return model


def test_monomial_order_is_triu_of_outer_product():
    assert MONOMIAL_ORDER == ("rr", "rg", "rb", "r", "gg", "gb", "g", "bb", "b", "1")
    r, g, b = 0.3, 0.5, 0.7
    got = quadratic_monomials(torch.tensor([r, g, b]).view(1, 3, 1, 1)).flatten().tolist()
    v = [r, g, b, 1.0]
    triu = [v[i] * v[j] for i in range(4) for j in range(i, 4)]
    assert got == pytest.approx(triu)
    assert got == pytest.approx([r * r, r * g, r * b, r, g * g, g * b, g, b * b, b, 1.0])


def test_color_transform_matches_hand_computation():
    # W row = output channel, column = monomial.
    w = torch.zeros(1, 3, 10)
    w[0, 0, 0] = 2.0  # out_r = 2 r^2
    w[0, 0, 9] = 0.1  # + 0.1
    w[0, 1, 5] = -1.0  # out_g = -g b
    w[0, 2, 3] = 0.5  # out_b = 0.5 r
    w[0, 2, 8] = 0.25  # + 0.25 b
    rgb = torch.tensor([[0.2, 0.9], [0.4, 0.1], [0.6, 0.3]]).view(1, 3, 1, 2)
    out = apply_color_transform(w, rgb)
    r, g, b = rgb[0, 0, 0], rgb[0, 1, 0], rgb[0, 2, 0]
    assert torch.allclose(out[0, 0, 0], 2 * r * r + 0.1)
    assert torch.allclose(out[0, 1, 0], -g * b)
    assert torch.allclose(out[0, 2, 0], 0.5 * r + 0.25 * b)


def test_fc_output_is_reshaped_row_per_output_channel():
    model = DeepISP(TINY_FULL)
    with torch.no_grad():
        model.to_w.weight.zero_()
        bias = torch.arange(30, dtype=torch.float32)
        model.to_w.bias.copy_(bias)
    w = model.color_head(torch.zeros(1, TINY_FULL.hl_width))
    assert w.shape == (1, 3, 10)
    assert torch.equal(w[0, 1], bias[10:20])  # row 1 (green) is FC outputs 10..19


def test_low_level_residuals_are_summed_at_every_block():
    model = randomize(DeepISP(TINY_JDD))
    x = torch.rand(1, 3, 12, 12)
    image, inp = x, x
    for block in model.low_level.blocks:
        features, residual = block(inp)
        image = image + residual
        if features is not None:
            inp = torch.cat([features, image], 1)
    assert torch.allclose(model(x), image)
    # Both convs of a block read the whole block input (features and image together).
    assert all(b.conv_residual.in_channels == b.conv_features.in_channels == 8 for b in model.low_level.blocks[1:-1])
    assert model.low_level.blocks[0].conv_residual.in_channels == 3
    assert model.low_level.blocks[-1].conv_features is None  # jdd: last features would be unused


def test_default_init_is_identity_on_the_image_path():
    x = torch.rand(1, 3, 16, 16)
    assert torch.equal(DeepISP(TINY_JDD)(x), x)


@pytest.mark.parametrize("h,w", [(17, 23), (31, 8), (64, 65)])
def test_shapes_for_odd_sizes(h, w):
    assert DeepISP(TINY_JDD)(torch.rand(2, 3, h, w)).shape == (2, 3, h, w)
    if min(h, w) >= TINY_FULL.min_size:
        out, wm = DeepISP(TINY_FULL).forward_with_w(torch.rand(2, 3, h, w))
        assert out.shape == (2, 3, h, w) and wm.shape == (2, 3, 10)


def test_too_small_input_is_refused():
    with pytest.raises(ValueError, match="minimum"):
        DeepISP(PRESETS["phone-full"])(torch.rand(1, 3, 40, 40))


def test_receptive_field_is_2n_plus_1():
    cfg = ModelConfig(mode="jdd", n_ll=5, width=8)
    model = randomize(DeepISP(cfg))
    x = torch.rand(1, 3, 41, 41, requires_grad=True)
    model(x)[0, :, 20, 20].sum().backward()
    touched = (x.grad.abs().sum(1)[0] > 0).nonzero()
    assert touched[:, 0].min() == 20 - cfg.n_ll and touched[:, 0].max() == 20 + cfg.n_ll
    assert touched[:, 1].min() == 20 - cfg.n_ll and touched[:, 1].max() == 20 + cfg.n_ll


def test_high_level_output_is_global():
    """Changing far-away pixels changes W, so every output pixel depends on the whole image."""
    model = randomize(DeepISP(TINY_FULL), std=0.3)
    x = torch.rand(1, 3, 32, 32)
    y = x.clone()
    y[..., 28:, 28:] = 0.0
    _, w1 = model.forward_with_w(x)
    _, w2 = model.forward_with_w(y)
    assert not torch.allclose(w1, w2)


def test_fit_affine_recovers_known_map():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(3, 4, generator=g)
    rgb = torch.rand(3, 20, 30, generator=g)
    target = (a[:, :3] @ rgb.reshape(3, -1) + a[:, 3:]).reshape(3, 20, 30)
    assert torch.allclose(fit_affine(rgb, target), a, atol=1e-4)


def test_set_color_init_places_affine_in_the_linear_columns():
    model = DeepISP(TINY_FULL)
    a = torch.arange(12, dtype=torch.float32).view(3, 4)
    model.set_color_init(a)
    w = model.to_w.bias.view(3, 10)
    assert torch.equal(w[:, [3, 6, 8, 9]], a)
    assert torch.equal(w[:, [0, 1, 2, 4, 5, 7]], torch.zeros(3, 6))


def test_paper_sizes_match_the_paper():
    # ~0.63 M parameters and ~1.06 MFLOP per pixel for n_ll=15, 64 channels (deployment notes).
    full = PRESETS["paper-full"]
    assert (full.n_ll, full.n_hl, full.width) == (15, 3, 64)
    assert PRESETS["paper-jdd"].n_ll == 20
    assert count_parameters(DeepISP(full)) == pytest.approx(0.63e6, rel=0.02)
    assert flops_per_pixel(full) == pytest.approx(1.06e6, rel=0.02)


def test_residual_scale_multiplies_each_blocks_tanh_residual():
    from deepisp.model import RESIDUAL_SCALE_INIT

    cfg = ModelConfig(mode="jdd", n_ll=3, width=8, residual_scale=True)
    torch.manual_seed(0)
    model = DeepISP(cfg).eval()
    scales = [0.3, 0.07, 1.5]
    with torch.no_grad():
        for block, s in zip(model.low_level.blocks, scales):
            assert float(block.residual_scale) == pytest.approx(RESIDUAL_SCALE_INIT)
            block.conv_residual.weight.normal_(0, 0.1)
            block.residual_scale.fill_(s)
    x = torch.rand(1, 3, 20, 24)
    image, inp = x, x
    for block, s in zip(model.low_level.blocks, scales):
        padded = torch.nn.functional.pad(inp, (1, 1, 1, 1), mode="reflect")
        image = image + s * torch.tanh(block.conv_residual(padded))
        if block.conv_features is not None:
            inp = torch.cat([torch.relu(block.conv_features(padded)), image], 1)
    assert torch.allclose(model(x), image, atol=1e-6)


def test_paper_presets_are_the_papers_network_and_phone_presets_fit_the_budget():
    assert not PRESETS["paper-full"].residual_scale and not PRESETS["paper-jdd"].residual_scale
    for name in ("phone-full", "phone-jdd"):
        assert flops_per_pixel(PRESETS[name]) <= 60e3, name


@pytest.mark.parametrize("mode", ["jdd", "full"])
@pytest.mark.parametrize("residual_scale", [False, True])
def test_host_inference_equals_the_forward(mode, residual_scale):
    cfg = ModelConfig(mode=mode, n_ll=4, n_hl=1, width=8, hl_width=8, residual_scale=residual_scale)
    model = randomize(DeepISP(cfg)).eval()
    rgb = torch.rand(1, 3, 21, 26)
    before = rgb.clone()
    with torch.no_grad():
        features, image = model.low_level(rgb)
    block_input, host_image = model.low_level.infer(rgb)
    assert torch.allclose(host_image, image, atol=1e-6)
    if mode == "jdd":
        assert block_input is None
    else:
        assert torch.allclose(block_input, torch.cat([features, image], 1), atol=1e-6)
    assert torch.equal(rgb, before)  # the in-place ops never touch the caller's tensor


@pytest.mark.parametrize("mode", ["jdd", "full"])
@pytest.mark.parametrize("packed", [False, True])
def test_grow_gives_a_wider_deeper_model_with_the_same_output(mode, packed):
    small_cfg = ModelConfig(mode=mode, n_ll=3, n_hl=1, width=16, hl_width=8, residual_scale=True, packed=packed)
    small = randomize(DeepISP(small_cfg), std=0.2).eval()
    big_cfg = replace(small_cfg, width=22, n_ll=7)
    big = grow(small, big_cfg).eval()
    assert big.cfg == big_cfg
    rgb = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(big(rgb), small(rgb), atol=1e-5)
    # the grown model is not a copy in disguise: its new channels train (they have non-zero incoming weights)
    assert big.low_level.blocks[0].conv_features.weight[small_cfg.n_features :].abs().sum() > 0


def test_grow_keeps_the_noise_input_and_refuses_what_is_not_growth():
    small_cfg = ModelConfig(mode="jdd", n_ll=2, width=8, residual_scale=True, noise_input=True)
    small = randomize(DeepISP(small_cfg)).eval()
    big = grow(small, replace(small_cfg, width=12, n_ll=5)).eval()
    rgb, noise = torch.rand(2, 3, 16, 16), torch.tensor([[0.03, 0.02], [0.0, 0.0]])
    with torch.no_grad():
        assert torch.allclose(big(rgb, noise), small(rgb, noise), atol=1e-5)
    # a blind model grows into a noise-aware one: its offsets start at zero, so the level changes nothing yet
    blind = randomize(DeepISP(replace(small_cfg, noise_input=False))).eval()
    aware = grow(blind, replace(small_cfg, width=12, n_ll=4)).eval()
    with torch.no_grad():
        assert torch.allclose(aware(rgb, noise), blind(rgb), atol=1e-5)
    packed = ModelConfig(mode="jdd", n_ll=2, width=16, residual_scale=True, packed=True)
    for other in (
        replace(small_cfg, width=6),
        replace(small_cfg, n_ll=1),
        replace(small_cfg, noise_input=False),
        replace(small_cfg, residual_scale=False),
        packed,
    ):
        with pytest.raises(ValueError, match="cannot grow"):
            grow(small, other)
    with pytest.raises(ValueError, match="cannot grow"):
        grow(small, ModelConfig(mode="full", n_ll=2, n_hl=1, width=8, hl_width=8))
    with pytest.raises(ValueError, match="cannot grow"):  # packed into a config too narrow to be packed: no traceback
        grow(randomize(DeepISP(packed)), replace(small_cfg, width=16))
