"""White balance of "as_shot" models: another camera's neutral arrives as the training camera's, and the
synthetic DNGs carry exactly the balance their photo-simulated twins are balanced with."""

import json

import numpy as np
import pytest

from deepisp.conditioning import condition
from deepisp.data.s7 import S7Dataset
from deepisp.data.synthetic import MANIFEST_NAME
from deepisp.model import ModelConfig
from deepisp.raw import read_raw
from deepisp.reference_camera import WB_GAIN_RANGE
from deepisp.white_balance import REFERENCE_WB, balance


def grey_mosaic(camera_wb: tuple[float, float, float], h: int = 6, w: int = 8) -> np.ndarray:
    """A grey scene as a camera with as-shot balance `camera_wb` records it: channel c at 0.4 / wb_c."""
    rgb = 0.4 / np.asarray(camera_wb)
    return np.tile(np.array([[rgb[0], rgb[1]], [rgb[1], rgb[2]]], dtype=np.float32), (h // 2, w // 2))


def test_grey_of_another_camera_arrives_with_the_reference_balance():
    for wb in [(1.2, 1.0, 1.1), (3.1, 1.0, 1.4), REFERENCE_WB]:
        out = balance(grey_mosaic(wb), wb)
        r, g, b = out[0, 0], out[0, 1], out[1, 1]
        assert np.isclose(r / g, 1 / REFERENCE_WB[0], rtol=1e-5) and np.isclose(b / g, 1 / REFERENCE_WB[2], rtol=1e-5)
        assert (out <= grey_mosaic(wb) + 1e-7).all()  # gains <= 1: nothing pushed past full scale
        assert out.dtype == np.float32


def test_reference_is_the_middle_of_the_training_range():
    for c, ch in ((0, "R"), (2, "B")):
        lo, hi = WB_GAIN_RANGE[ch]
        assert REFERENCE_WB[c] == pytest.approx(np.sqrt(lo * hi))


def test_synthetic_dngs_carry_their_drawn_white_balance(s7_root):
    manifest = json.loads((s7_root / MANIFEST_NAME).read_text())["scenes"]
    for name, scene in manifest.items():
        wb = read_raw(s7_root / name / "short_exposure.dng").camera_wb
        assert np.allclose(wb, scene["wb_gains"], rtol=1e-4), name
    as_shot = ModelConfig(mode="full", white_balance="as_shot")
    plain, balanced = S7Dataset(s7_root, split="all"), S7Dataset(s7_root, split="all", model_config=as_shot)
    name = plain.name(0)
    wb = manifest[name]["wb_gains"]
    expected = balance(plain.frame(0)[0], wb)
    # an as_shot model's input: the balanced raw, only sites above the neutral ceiling (clipped highlights) cut
    got = balanced.frame(0)[0]
    assert np.allclose(got, np.minimum(expected, got.max()), atol=1e-6)
    assert np.allclose(got, condition(plain.frame(0)[0], wb), atol=1e-6)


def test_as_shot_is_a_full_model_contract():
    assert ModelConfig(mode="full", white_balance="as_shot").white_balance == "as_shot"
    with pytest.raises(ValueError):
        ModelConfig(mode="jdd", white_balance="as_shot")
    with pytest.raises(ValueError):
        ModelConfig(mode="full", white_balance="grey-world")
