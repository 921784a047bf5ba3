"""deepisp.conditioning: what a full model's input is made from any raw (exposure, white balance, highlights,
camera colour), its use in training and `deepisp process`, and the finished rendering of JDD output."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from deepisp.cfa import sample
from deepisp.checkpoint import save_checkpoint
from deepisp.cli import main
from deepisp.conditioning import (
    condition,
    estimate_white_balance,
    metering_gain,
    model_input,
    neutral_ceiling,
    prepare,
    reference_matrix,
    render_linear,
)
from deepisp.data.dng import write_dng
from deepisp.data.photos import PhotoDataset
from deepisp.data.synthetic import BLACK_LEVEL, WHITE_LEVEL
from deepisp.input_contract import HEADROOM, METER_GAIN_RANGE, METER_TARGET, WB_ESTIMATE_NORM, describe
from deepisp.model import DeepISP, ModelConfig
from deepisp.raw import read_raw
from deepisp.reference_camera import M_CAM_FROM_SRGB, M_CAM_FROM_XYZ, M_XYZ_FROM_SRGB, camera_from_srgb
from deepisp.white_balance import REFERENCE_WB
from tests.conftest import smooth_photo

# Canon EOS 5D Mark IV's XYZ->camera matrix (LibRaw's colordata.cpp): far from the S7's.
CANON = np.array([[6446, -366, -864], [-4436, 12204, 2513], [-952, 2496, 6348]]) / 10000.0
WB = (2.1, 1.0, 1.6)
NEUTRAL = tuple(1 / np.asarray(WB))  # the DNG's AsShotNeutral for WB
TINY_METERED = ModelConfig(mode="full", n_ll=2, n_hl=1, width=8, hl_width=8, white_balance="as_shot", exposure="metered")


def scene_mosaic(linear: np.ndarray, cam_from_srgb: np.ndarray, wb=WB) -> np.ndarray:
    """Linear sRGB [H,W,3] as a camera records it: camera RGB divided by the white balance, RGGB."""
    return sample((linear @ cam_from_srgb.T) / np.asarray(wb), "RGGB").astype(np.float32)


def write_scene(path, mosaic, xyz_to_camera=M_CAM_FROM_XYZ, neutral=NEUTRAL):
    dn = np.round(BLACK_LEVEL + np.clip(mosaic, 0, 1) * (WHITE_LEVEL - BLACK_LEVEL)).astype(np.uint16)
    write_dng(path, dn, black_level=BLACK_LEVEL, white_level=WHITE_LEVEL, color_matrix=xyz_to_camera, as_shot_neutral=neutral)
    return path


def test_metering_brings_any_exposure_to_the_trained_level():
    mosaic = np.random.default_rng(0).uniform(0, 1, (64, 64)).astype(np.float32)
    for scale in (1 / 16, 1 / 4, 1.0):
        gain = metering_gain(mosaic * scale, stride=1)
        assert np.percentile(mosaic * scale * gain, 99) == pytest.approx(METER_TARGET, rel=1e-4)
    assert metering_gain(np.zeros((8, 8), np.float32)) == METER_GAIN_RANGE[1]  # black: the most gain, no division by 0
    assert metering_gain(np.ones((8, 8), np.float32)) == METER_GAIN_RANGE[0]  # all clipped


def test_clipped_sites_are_neutral_in_every_channel():
    """A site clipped in any channel comes out at the neutral ceiling: white or grey, never a colour."""
    sat = np.ones((4, 4), np.float32)  # fully clipped
    out = condition(sat, WB)
    r, g, b = out[0, 0], out[0, 1], out[1, 1]
    neutral = 1 / np.asarray(REFERENCE_WB)  # the model's neutral: the reference balance's grey
    assert r / g == pytest.approx(neutral[0]) and b / g == pytest.approx(neutral[2])
    # one channel clipped (green), the others below: green is cut to the ceiling, no site exceeds it
    part = np.full((4, 4), 0.3, np.float32)
    part[0, 1] = part[1, 0] = 1.0
    out = condition(part, WB)
    assert out[0, 1] == pytest.approx(neutral_ceiling(WB)[1]) and (out <= np.tile([[1, 1], [1, 1]], (2, 2))).all()
    # a gain above 1 (a dark frame brightened) keeps highlights neutral and within full scale
    out = condition(sat, WB, gain=8.0)
    assert out.max() <= 1.0 and out[0, 0] / out[0, 1] == pytest.approx(neutral[0])


def test_another_cameras_colours_arrive_as_the_reference_cameras():
    """A scene of flat colours shot by another camera, conditioned with its matrix, equals the reference
    camera's conditioned shot of the same scene (exactly inside each flat patch)."""
    linear = np.zeros((32, 32, 3))
    linear[:, :16] = (0.3, 0.1, 0.05)  # saturated orange
    linear[:, 16:] = (0.05, 0.12, 0.2)  # blue
    canon = camera_from_srgb(CANON)
    got = condition(scene_mosaic(linear, canon), WB, reference_matrix(canon))
    want = condition(scene_mosaic(linear, M_CAM_FROM_SRGB), WB)
    inner = np.r_[2:14, 18:30]
    np.testing.assert_allclose(got[:, inner], want[:, inner], rtol=1e-4, atol=1e-6)
    assert np.abs(got - want).max() > 1e-3  # the raw itself differed: the map did the work
    np.testing.assert_allclose(reference_matrix(M_CAM_FROM_SRGB), np.eye(3), atol=1e-12)
    assert np.array_equal(reference_matrix(None), np.eye(3))


def test_remosaic_at_half_resolution_equals_mixing_the_full_bilinear_image():
    """The camera-colour step as the module doc states it: demosaic bilinearly, mix per pixel, sample on RGGB."""
    from deepisp.cfa import mosaic as sample_rggb
    from deepisp.conditioning import remosaic
    from deepisp.demosaic import bilinear_demosaic

    rng = np.random.default_rng(3)
    raw = rng.random((34, 50), dtype=np.float32)
    matrix = np.eye(3) + rng.normal(0, 0.2, (3, 3))
    rgb = bilinear_demosaic(torch.from_numpy(raw)[None, None])
    expected = sample_rggb(torch.einsum("ij,bjhw->bihw", torch.from_numpy(matrix).float(), rgb))[0, 0].numpy()
    assert np.abs(remosaic(raw, matrix) - expected).max() < 1e-6


def test_white_balance_estimate_recovers_a_cast():
    photo = smooth_photo(64, 96, 3) / 255.0
    norms = (photo**WB_ESTIMATE_NORM).mean((0, 1)) ** (1 / WB_ESTIMATE_NORM)
    grey = photo / norms * norms.mean()  # a scene that is grey in the estimate's norm, as shades of grey assumes
    wb = estimate_white_balance(scene_mosaic(grey * 0.5, np.eye(3)))
    np.testing.assert_allclose(wb, WB, rtol=0.03)


def test_prepare_reads_the_file_and_warns_what_it_had_to_guess(tmp_path):
    linear = smooth_photo(48, 64, 1) / 255.0 * 0.5
    canon = camera_from_srgb(CANON)
    xyz_to_canon = canon @ np.linalg.inv(M_XYZ_FROM_SRGB)
    full = read_raw(write_scene(tmp_path / "a.dng", scene_mosaic(linear, canon), xyz_to_canon))
    assert full.camera_wb == pytest.approx(WB, rel=1e-4)
    np.testing.assert_allclose(full.camera_matrix, canon, atol=2e-4)
    mosaic, done = prepare(full, "metered")
    assert done.white_balance == "as_shot" and done.color == "file" and not done.warnings
    assert done.gain == pytest.approx(metering_gain(full.mosaic)) and mosaic.dtype == np.float32
    bare = read_raw(write_scene(tmp_path / "b.dng", scene_mosaic(linear, canon), xyz_to_canon, neutral=None))
    assert bare.camera_wb is None
    _, done = prepare(bare, "metered")
    assert done.white_balance == "estimated" and len(done.warnings) == 1 and "white balance" in done.warnings[0]
    off, done = prepare(full, "as_is", "off")
    assert off is full.mosaic and done.white_balance == "off"
    jdd = ModelConfig(mode="jdd", n_ll=2, width=8, hl_width=8)
    assert model_input(full, jdd) == (full.mosaic, None)


def test_jdd_output_is_finished_with_the_files_colour():
    """A neutral surface in the camera's own RGB comes out neutral sRGB; highlights stay white."""
    canon = camera_from_srgb(CANON)
    grey = torch.tensor([0.4, 0.4, 0.4]).view(3, 1, 1) / torch.tensor(WB).view(3, 1, 1)  # what the camera records
    out = render_linear(grey.expand(3, 2, 2).float(), WB, canon)
    assert torch.allclose(out[:, 0, 0], torch.full((3,), 0.4), atol=1e-5)
    clipped = render_linear(torch.ones(3, 2, 2), WB, canon)
    assert torch.allclose(clipped, torch.ones_like(clipped), atol=1e-5)


def test_metered_training_pairs_cover_exposures_and_stay_in_range(tmp_path):
    for i in range(3):
        Image.fromarray(smooth_photo(96, 96, i)).save(tmp_path / f"p{i}.png")
    ds = PhotoDataset([tmp_path], "full", crop=64, balanced=True, exposure="metered")
    levels = []
    for step in range(40):
        rgb, target = ds.crop_pair(step % len(ds), np.random.default_rng(step))
        assert rgb.shape == target.shape == (3, 64, 64) and 0 <= rgb.min() and rgb.max() <= 1
        levels.append(float(rgb.mean()))
    again = ds.crop_pair(0, np.random.default_rng(0))[0]
    assert torch.equal(again, ds.crop_pair(0, np.random.default_rng(0))[0])  # a pure function of the rng
    assert np.std(levels) / np.mean(levels) < 0.5  # metering brings every exposure near one level
    with pytest.raises(Exception, match="metered"):
        PhotoDataset([tmp_path], "full", crop=64, balanced=False, exposure="metered")


def test_process_renders_any_exposure_alike(tmp_path, capsys):
    """The same scene at the automatic exposure and at 1/16 of it, noiseless: a metered model sees one input."""
    torch.manual_seed(0)
    model = DeepISP(TINY_METERED).eval()
    ckpt = tmp_path / "m.pt"
    save_checkpoint(ckpt, model, TINY_METERED)
    linear = smooth_photo(64, 96, 2) / 255.0
    clean = scene_mosaic(linear, M_CAM_FROM_SRGB)
    clean *= 0.8 / np.percentile(clean, 99)
    for name, ratio in (("auto", 1.0), ("dark", 1 / 16)):
        write_scene(tmp_path / f"{name}.dng", clean * ratio)
        assert main(["process", str(tmp_path / f"{name}.dng"), "-o", str(tmp_path / f"{name}.png"), "--model", str(ckpt), "--bits", "16"]) == 0
    out = capsys.readouterr().out
    assert "exposure x" in out
    auto, dark = (np.asarray(Image.open(tmp_path / f"{n}.png"), dtype=np.float64) / 65535 for n in ("auto", "dark"))
    assert np.abs(auto - dark).mean() < 0.01  # 10-bit quantisation of the dark frame is all that differs


def test_metered_input_keeps_its_headroom_and_the_metadata_says_so():
    """Metering never lifts a site above HEADROOM of the neutral ceiling, and the exported `input` entry
    carries every constant an app needs for it."""
    sat = np.ones((4, 4), np.float32)
    out = condition(sat, WB, gain=8.0, headroom=HEADROOM)
    ceiling = neutral_ceiling(WB)
    assert out[0, 0] == pytest.approx(HEADROOM * ceiling[0]) and out[0, 1] == pytest.approx(HEADROOM * ceiling[1])
    entry = describe(TINY_METERED)
    assert entry["headroom"] == HEADROOM and entry["meter_target"] == METER_TARGET and entry["exposure"] == "metered"
    assert describe(replace(TINY_METERED, exposure="as_is"))["headroom"] is None


def test_the_exported_white_balance_estimate_is_reproducible_from_its_constants():
    """An app that follows the `input` entry's step 1 with its constants gets deepisp's estimate."""
    entry = describe(TINY_METERED)
    p, k, top = entry["wb_estimate_norm"], entry["wb_estimate_pool"], entry["wb_estimate_ceiling"]
    mosaic = scene_mosaic(smooth_photo(40, 56, 5) / 255.0, M_CAM_FROM_SRGB)
    h, w = mosaic.shape[0] // (2 * k) * 2 * k, mosaic.shape[1] // (2 * k) * 2 * k
    q = mosaic[:h, :w].astype(np.float64).reshape(h // (2 * k), k, 2, w // (2 * k), k, 2).mean(axis=(1, 4))
    keep = q.max(axis=(1, 3)) < top
    r, g, b = q[:, 0, :, 0][keep], ((q[:, 0, :, 1] + q[:, 1, :, 0]) / 2)[keep], q[:, 1, :, 1][keep]
    mean_r, mean_g, mean_b = ((c**p).mean() ** (1 / p) for c in (r, g, b))
    np.testing.assert_allclose(estimate_white_balance(mosaic), (mean_g / mean_r, 1.0, mean_g / mean_b), rtol=1e-9)
