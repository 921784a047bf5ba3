"""PNG reading and writing: exact 16-bit round trips, RGB channel order, interop with Pillow, errors."""

import os

import numpy as np
import pytest
from PIL import Image

import deepisp.atomic
import deepisp.pngio
from deepisp.errors import DeepISPError
from deepisp.pngio import read_png, write_png


def _rgb16() -> np.ndarray:
    """[40,50,3] uint16 with distinct R, G, B planes: ramps and a band of noise, mostly > 255 and not k*257."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:40, 0:50]
    img = np.stack([yy * 900 + xx * 13 + 300, xx * 1200 + 7, (yy * xx * 37) % 65536], -1).astype(np.uint16)
    img[10:15] = rng.integers(0, 65536, (5, 50, 3))
    return img


def test_16_bit_rgb_and_grey_round_trip_exactly(tmp_path):
    img = _rgb16()
    assert np.mean(img > 255) > 0.9 and np.mean(img % 257 != 0) > 0.9  # would not survive an 8-bit detour
    for arr in (img, img[..., 1], img[5:30, ::-1]):  # last: a non-contiguous view
        path = tmp_path / "x.png"
        write_png(path, arr)
        back = read_png(path)
        assert back.dtype == np.uint16 and back.shape == arr.shape and np.array_equal(back, arr)


def test_8_bit_round_trip(tmp_path):
    img = (_rgb16() >> 8).astype(np.uint8)
    for arr in (img, img[..., 2]):
        write_png(tmp_path / "x.png", arr)
        back = read_png(tmp_path / "x.png")
        assert back.dtype == np.uint8 and np.array_equal(back, arr)


def test_channel_order_is_rgb(tmp_path):
    h, w = 6, 8
    img = np.zeros((h, w, 3), np.uint16)
    img[..., 0], img[..., 1], img[..., 2] = 40000, 20000, 1000  # R, G, B
    img[0, 0] = (65535, 0, 0)  # a pure red pixel
    write_png(tmp_path / "rgb16.png", img)
    back = read_png(tmp_path / "rgb16.png")
    assert np.array_equal(back, img)
    assert tuple(back[0, 0]) == (65535, 0, 0) and tuple(back[1, 1]) == (40000, 20000, 1000)
    # Pillow, an independent decoder, sees R first: in our 8-bit file exactly, and in our 16-bit RGB file as
    # the high bytes (it truncates 16-bit RGB to 8 bits, which is why pngio does not use it).
    img8 = np.zeros((h, w, 3), np.uint8)
    img8[..., 0], img8[..., 1], img8[..., 2] = 200, 100, 10
    write_png(tmp_path / "rgb8.png", img8)
    pil = np.asarray(Image.open(tmp_path / "rgb8.png"))
    assert pil.dtype == np.uint8 and np.array_equal(pil, img8) and tuple(pil[0, 0]) == (200, 100, 10)
    full = _rgb16()
    write_png(tmp_path / "full16.png", full)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "full16.png")), (full >> 8).astype(np.uint8))


def test_reads_files_written_by_pillow(tmp_path):
    img = _rgb16()
    Image.fromarray(img[..., 0]).save(tmp_path / "grey16.png")  # 16-bit grey
    assert np.array_equal(read_png(tmp_path / "grey16.png"), img[..., 0])
    rgba = np.concatenate([(img >> 8).astype(np.uint8), np.full(img.shape[:2] + (1,), 128, np.uint8)], -1)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    assert np.array_equal(read_png(tmp_path / "rgba.png"), rgba[..., :3])  # alpha dropped, RGB order
    Image.fromarray(rgba[..., [0, 3]], "LA").save(tmp_path / "la.png")
    assert np.array_equal(read_png(tmp_path / "la.png"), rgba[..., 0])  # grey + alpha -> [H,W] grey


def test_unreadable_files_raise_deepisp_error(tmp_path):
    with pytest.raises(DeepISPError, match="exists"):
        read_png(tmp_path / "missing.png")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(DeepISPError, match="not a PNG"):
        read_png(bad)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "jpeg.png", format="JPEG")
    with pytest.raises(DeepISPError, match="not a PNG"):
        read_png(tmp_path / "jpeg.png")
    write_png(bad, _rgb16())
    data = bad.read_bytes()
    for cut in (8, 40, len(data) // 2, len(data) - 5):  # signature only, header only, half the data, no IEND
        bad.write_bytes(data[:cut])
        with pytest.raises(DeepISPError, match="truncated or corrupt"):
            read_png(bad)
    corrupt = bytearray(data)
    corrupt[len(data) // 2] ^= 0xFF  # a flipped byte in the compressed data
    bad.write_bytes(bytes(corrupt))
    with pytest.raises(DeepISPError, match="truncated or corrupt"):
        read_png(bad)


def test_write_rejects_wrong_dtype_or_shape(tmp_path):
    for arr in (
        np.zeros((4, 4), np.float32),
        np.zeros((4, 4), np.int32),
        np.zeros((4, 4), bool),
        np.zeros((4, 4, 4), np.uint8),
        np.zeros((4, 4, 1), np.uint16),
        np.zeros((4,), np.uint8),
        np.zeros((0, 4), np.uint8),
    ):
        with pytest.raises(ValueError):
            write_png(tmp_path / "x.png", arr)
    assert list(tmp_path.iterdir()) == []


def test_failed_write_leaves_no_partial_or_temp_file(tmp_path, monkeypatch):
    img = _rgb16()
    # A real failure: the target name is taken by a folder, so the final rename fails.
    (tmp_path / "taken.png").mkdir()
    with pytest.raises(DeepISPError, match="cannot write"):
        write_png(tmp_path / "taken.png", img)
    assert [p.name for p in tmp_path.iterdir()] == ["taken.png"] and not any((tmp_path / "taken.png").iterdir())
    with pytest.raises(DeepISPError, match="folder exists"):
        write_png(tmp_path / "no_such_folder" / "x.png", img)
    # A failure after the temporary file is complete keeps the previous file intact.
    good = tmp_path / "good.png"
    write_png(good, img)

    def fail(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(deepisp.atomic.os, "replace", fail)
    with pytest.raises(DeepISPError, match="No space left"):
        write_png(good, img[..., 0])
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.png", "taken.png"]
    assert np.array_equal(read_png(good), img)
    assert os.path.getsize(good) > 0
