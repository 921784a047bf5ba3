"""benchmarks/quality.py and its quality_* modules: each classical pipeline is fed and read back in the right
frame, phase and scale, the metrics are the MSR protocol's, and the benchmark runs end to end (with a tiny JDD
checkpoint)."""

import json

import cv2
import numpy as np
import pytest
import rawpy
import torch
from PIL import Image

from benchmarks import colour_photos, common, dead_leaves, quality, quality_crops, quality_full, quality_jdd, quality_methods
from deepisp.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint, save_checkpoint
from deepisp.color import histogram_stretch, srgb_to_linear
from deepisp.data.s7 import S7Dataset
from deepisp.data.synthetic import make_synthetic
from deepisp.metrics import psnr, psnr_linear_and_srgb
from deepisp.model import DeepISP, ModelConfig
from tests.conftest import smooth_photo

SHIFTS = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]


def edgy_photo(h: int, w: int, seed: int) -> np.ndarray:
    """[H,W,3] uint8: a smooth photo with sharp-edged 8x8 blocks on it, where demosaicers differ."""
    blocks = np.random.default_rng(seed).integers(0, 2, (h // 8, w // 8, 1))
    return np.clip(0.7 * smooth_photo(h, w, seed) + 60 * np.kron(blocks, np.ones((8, 8, 1))), 0, 255).astype(np.uint8)


def linear(photo: np.ndarray) -> np.ndarray:
    """[H,W,3] uint8 sRGB -> [3,H,W] float64 linear, the JDD ground truth."""
    return srgb_to_linear(torch.from_numpy(photo / 255.0).permute(2, 0, 1)).numpy()


def best_shift(out: torch.Tensor, target: torch.Tensor) -> tuple[int, int]:
    """The (dy, dx) roll of `out` that matches `target` best, borders ignored."""
    scores = {s: psnr(torch.roll(out, s, (1, 2))[:, 4:-4, 4:-4], target[:, 4:-4, 4:-4]) for s in SHIFTS}
    return max(scores, key=scores.get)


def need_colour_demosaicing() -> None:
    if quality_methods.colour_demosaicing is None:
        pytest.skip(f"benchmarks/quality.py needs colour-demosaicing: {quality_methods.INSTALL_HINT}")


@pytest.fixture(scope="module")
def methods(tmp_path_factory):
    """The classical JDD rows by name."""
    need_colour_demosaicing()
    return {m.name: m for m in quality_methods.classical_methods(tmp_path_factory.mktemp("dng"))}


def test_opencv_bg_code_is_rggb():
    """OpenCV's "BG" codes demosaic deepisp's RGGB mosaic: a constant colour comes back as itself, in
    R,G,B order, while the literally named "RG" code swaps red and blue."""
    rgb = np.array([0.1, 0.4, 0.8])
    cfa = quality_jdd.noisy_mosaics(np.broadcast_to(rgb.reshape(3, 1, 1), (3, 24, 32)).copy(), [0.0], (0, 0))[0.0]
    inside = (slice(None), slice(2, -2), slice(2, -2))
    for code in (quality_methods.OPENCV_RGGB["bilinear"], quality_methods.OPENCV_RGGB["EA"]):
        out = quality_methods.opencv_demosaic(cfa, code)[inside]
        assert np.abs(out - rgb.reshape(3, 1, 1)).max() < 1e-4
    vng = quality_methods.opencv_vng(cfa)[inside]  # through 8-bit sRGB: within one 8-bit step
    assert np.abs(vng - rgb.reshape(3, 1, 1)).max() < 0.01
    swapped = quality_methods.opencv_demosaic(cfa, cv2.COLOR_BayerRG2RGB)[inside]
    assert np.allclose(swapped.mean((1, 2)), rgb[::-1], atol=1e-3)


def test_libraw_reads_the_mosaic_at_its_scale_and_phase(methods, tmp_path):
    """LibRaw's bilinear on the written DNG equals deepisp's own (no black/white-level offset or scale, no
    phase error), and its AHD/DCB rows reconstruct a clean smooth image well and without a shift."""
    target = linear(smooth_photo(64, 96, 0))
    cfa = quality_jdd.noisy_mosaics(target, [0.0], (0, 0))[0.0]
    libraw_bilinear = quality_methods.libraw_demosaic(cfa, tmp_path / "m.dng", demosaic_algorithm=rawpy.DemosaicAlgorithm.LINEAR)
    inside = (slice(None), slice(1, -1), slice(1, -1))  # LibRaw's own border rule differs at the edge
    assert np.abs(libraw_bilinear - quality_methods.deepisp_bilinear(cfa))[inside].max() < 1e-4

    edgy = linear(edgy_photo(64, 96, 1))
    ref = quality_jdd.reference(edgy)
    edgy_cfa = quality_jdd.noisy_mosaics(edgy, [0.0], (0, 0))[0.0]
    for name in ("LibRaw AHD", "LibRaw DCB"):
        assert quality_jdd.jdd_metrics(methods[name].run(cfa), quality_jdd.reference(target))["psnr_linear"] > 45
        out = methods[name].run(edgy_cfa)
        assert best_shift(torch.from_numpy(out), torch.from_numpy(edgy)) == (0, 0)
        assert quality_jdd.jdd_metrics(out, ref)["psnr_linear"] > 30


def test_every_method_is_sane_and_edge_aware_ones_beat_bilinear(methods):
    """On a smooth image every method is near-exact (nothing is mis-scaled or mis-phased); on sharp edges
    the edge-directed demosaicers beat bilinear, as they do in the literature."""
    smooth, edgy = linear(smooth_photo(64, 96, 2)), linear(edgy_photo(64, 96, 3))
    score = {}
    for name, target in (("smooth", smooth), ("edgy", edgy)):
        cfa, ref = quality_jdd.noisy_mosaics(target, [0.0], (0, 0))[0.0], quality_jdd.reference(target)
        score[name] = {m: quality_jdd.jdd_metrics(method.run(cfa), ref)["psnr_linear"] for m, method in methods.items()}
    assert min(score["smooth"].values()) > 45, score["smooth"]
    for name in ("Malvar-He-Cutler", "Menon", "OpenCV VNG", "LibRaw AHD", "LibRaw DCB"):
        assert score["edgy"][name] > score["edgy"]["bilinear"] + 1, (name, score["edgy"])
    assert score["edgy"]["OpenCV bilinear"] == pytest.approx(score["edgy"]["bilinear"], abs=0.05)


def test_jdd_metrics_are_the_msr_protocol():
    rng = np.random.default_rng(0)
    target = rng.random((3, 40, 48))
    pred = target + 0.05 * rng.standard_normal(target.shape)  # overshoots [0,1]: both must clip
    got = quality_jdd.jdd_metrics(pred, quality_jdd.reference(target))
    lin, srgb = psnr_linear_and_srgb(pred, target, border=quality_jdd.BORDER)
    assert got["psnr_linear"] == pytest.approx(lin, abs=1e-9) and got["psnr_srgb"] == pytest.approx(srgb, abs=1e-9)


def test_noise_is_clipped_linear_gaussian():
    target = np.full((3, 64, 64), 0.5)
    mosaics = quality_jdd.noisy_mosaics(target, [0.0, 10.0], (0, 0))
    assert np.all(mosaics[0.0] == round(0.5 * quality_methods.U16))
    noise = mosaics[10.0] / quality_methods.U16 - 0.5
    assert noise.std() == pytest.approx(10 / 255, rel=0.05) and abs(noise.mean()) < 2e-3


@pytest.mark.parametrize("pattern", ["GRBG", "BGGR"])
def test_rawpy_render_lands_in_the_targets_frame(pattern, tmp_path):
    """rawpy's default render of a flipped-CFA raw is brought to the canonical frame: no shift against the
    target, and close to it (rawpy has the generator's own colour matrix and white balance)."""
    photo = tmp_path / "p.png"
    Image.fromarray(edgy_photo(64, 80, 4)).save(photo)
    make_synthetic([photo], tmp_path / "s7", pattern=pattern, progress=False)
    dataset = S7Dataset(tmp_path / "s7", split="all")
    _, target = dataset.frame(0)
    out = quality_full.rawpy_default(dataset.scenes[0].files[("short_exposure", "raw")], target)
    assert out.shape == target.shape
    stretched, stretched_target = histogram_stretch(out), histogram_stretch(target)
    assert best_shift(stretched, stretched_target) == (0, 0)
    assert psnr(stretched, stretched_target) > 18


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    for i in range(3):
        Image.fromarray(edgy_photo(48, 64, 10 + i)).save(folder / f"p{i}.png")
    return folder


def test_main_end_to_end_with_a_jdd_checkpoint(photos, s7_root, tmp_path):
    need_colour_demosaicing()
    torch.manual_seed(0)
    cfg = ModelConfig(mode="jdd", n_ll=2, width=8)
    save_checkpoint(tmp_path / "jdd.pt", DeepISP(cfg), cfg)
    save_checkpoint(tmp_path / "jdd2.pt", DeepISP(cfg), cfg)
    as_shot = ModelConfig(mode="full", n_ll=2, n_hl=1, width=8, hl_width=8, white_balance="as_shot")
    save_checkpoint(tmp_path / "as_shot.pt", DeepISP(as_shot), as_shot)
    out = tmp_path / "results"
    args = ["--photos", str(photos), "--limit", "2", "--sigmas", "0", "5", "--figure", "p1", "5", "--s7", str(s7_root), "--out", str(out)]
    args += ["--second-set", str(photos)]
    assert (
        quality.main(
            [*args, "--jdd-model", str(tmp_path / "jdd.pt"), str(tmp_path / "jdd2.pt"), "--full-model", str(DEFAULT_CHECKPOINT), str(tmp_path / "as_shot.pt")]
        )
        == 0
    )

    report = json.loads((out / "quality.json").read_text())
    jdd, full = report["jdd"], report["full"]
    names = list(jdd["methods"])
    assert len(names) == 12 and names[-2:] == ["DeepISP custom (jdd.pt)", "DeepISP custom (jdd2.pt)"]  # one row per --jdd-model
    assert len(jdd["per_image"]) == 2 * 2 * 12 and jdd["n_images"] == 2
    assert set(jdd["mean"][names[-1]]) == {"0", "5"}
    assert jdd["mean"]["LibRaw DCB"]["0"]["psnr_linear"] > jdd["mean"]["LibRaw DCB"]["5"]["psnr_linear"]
    shipped = common.model_label(DEFAULT_CHECKPOINT, load_checkpoint(DEFAULT_CHECKPOINT))
    assert full["n_scenes"] == 2 and list(full["mean"]) == [quality_full.NO_ISP, quality_full.RAWPY, shipped, "DeepISP custom (as_shot.pt)"]
    assert "8 pixels are cropped" in jdd["protocol"] and "histogram stretch" in full["protocol"]
    (second,) = report["jdd_second"]
    assert second["n_images"] == 2 and list(second["mean"]) == names and len(second["per_image"]) == 2 * 2 * 12

    md = (out / "quality.md").read_text()
    assert all(f"| {name} |" in md for name in [*names, *full["mean"]])
    assert md.count("| method | σ=0 | σ=5 | s/image |") == 2 and "No JDD checkpoint" not in md and "second test set" in md
    assert sorted(p.name for p in out.iterdir()) == ["quality.json", "quality.md", "quality_crops.jpg"]  # no temp files left
    # truth, the three classical rows, the two models: two rows of three 2x-zoomed 32-px crops (48x64 photos)
    assert Image.open(out / "quality_crops.jpg").size == (3 * 64, quality_crops.FIGURE_LABEL + 2 * (64 + quality_crops.FIGURE_LABEL))
    assert jdd["figure"]["photo"] == "p1" and jdd["figure"]["sigma"] == 5 and jdd["figure"]["crop_y_x_size"][2] == 32


def test_the_colour_photographs_are_scikit_images_own_cut_to_whole_quads(tmp_path):
    folder = colour_photos.make_colour_photos(tmp_path / "cp")
    names = sorted(p.name for p in folder.iterdir())
    assert names == sorted(f"{name.rsplit('.', 1)[0]}.png" for name in colour_photos.COLOUR_PHOTOS)
    for path in folder.iterdir():
        with Image.open(path) as im:
            assert im.mode == "RGB" and im.width % 2 == 0 and im.height % 2 == 0


def test_dead_leaves_cover_the_image_with_saturated_colours_per_seed(tmp_path):
    image = dead_leaves.dead_leaves(64, seed=3)
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    assert np.array_equal(image, dead_leaves.dead_leaves(64, seed=3)) and not np.array_equal(image, dead_leaves.dead_leaves(64, seed=4))
    # Covered: every pixel is some disc's colour (value >= 0.2), blurred: never the empty canvas's black.
    assert image.max(axis=2).min() >= 0.15 * 255
    spread = image.astype(float).max(axis=2) - image.astype(float).min(axis=2)  # HSV saturation x value, 0-255
    assert np.median(spread) > 60
    folder = dead_leaves.make_dead_leaves(tmp_path / "dl", count=2, size=32)
    assert sorted(p.name for p in folder.iterdir()) == ["dead_leaves.json", "dead_leaves_00.png", "dead_leaves_01.png"]
    stamp = (folder / "dead_leaves_00.png").stat().st_mtime_ns
    dead_leaves.make_dead_leaves(folder, count=2, size=32)  # the same settings: kept
    assert (folder / "dead_leaves_00.png").stat().st_mtime_ns == stamp


def test_the_figure_crop_is_where_bilinear_fails_most():
    truth = np.zeros((3, 200, 300))
    bilinear = truth.copy()
    bilinear[:, 120:140, 200:230] = 0.5
    y, x = quality_crops.hardest_crop(truth, bilinear, 64)
    assert y <= 120 and y + 64 >= 140 and x <= 200 and x + 64 >= 230
    bilinear[:, : quality_jdd.BORDER, :] = 1.0  # a larger error, but in the border no metric looks at
    bilinear[:, :, -quality_jdd.BORDER :] = 1.0
    y, x = quality_crops.hardest_crop(truth, bilinear, 64)
    assert y >= quality_jdd.BORDER and x + 64 <= 300 - quality_jdd.BORDER


def test_a_run_without_the_figure_photo_leaves_no_stale_figure(tmp_path, monkeypatch, capsys):
    """The numbers and the figure come from one run: an earlier quality_crops.jpg is removed, and the
    run says why there is none."""
    monkeypatch.setattr(quality, "benchmark", lambda args: ({"seconds": 0.0}, None))
    monkeypatch.setattr(quality, "to_markdown", lambda report: "")
    (tmp_path / "quality_crops.jpg").write_bytes(b"an earlier run's figure")
    assert quality.main(["--out", str(tmp_path), "--figure", "kodim99", "5"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["quality.json", "quality.md"]
    assert "--figure photo kodim99 is not among the photos run" in capsys.readouterr().err


def test_the_figure_sigma_must_be_one_that_is_run(capsys):
    assert quality.parse_args([]).figure == quality_crops.FIGURE_DEFAULT
    assert quality.parse_args(["--sigmas", "0", "2"]).figure is None  # no figure asked for, none refused
    for sigma, error in (("5", "must be one of --sigmas 0 2"), ("five", "must be a number")):
        with pytest.raises(SystemExit):
            quality.parse_args(["--sigmas", "0", "2", "--figure", "kodim19", sigma])
        assert f"--figure SIGMA {error}" in capsys.readouterr().err


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_missing_photos_give_one_line_error(tmp_path, capsys):
    need_colour_demosaicing()
    assert quality.main(["--photos", str(tmp_path / "nope"), "--out", str(tmp_path / "r")]) == 2
    assert "photos folder" in one_line_error(capsys)
    assert not (tmp_path / "r").exists()


def test_missing_colour_demosaicing_says_what_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(quality_methods, "colour_demosaicing", None)
    assert quality.main(["--out", str(tmp_path / "r")]) == 2
    assert quality_methods.INSTALL_HINT in one_line_error(capsys)
    assert not (tmp_path / "r").exists()
