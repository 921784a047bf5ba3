"""Shared fixtures: paths to ../shared/data and small S7-layout datasets made by the project itself."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deepisp.data import SHARED_DATA

REPO = Path(__file__).resolve().parents[1]


def shared_data(*parts: str) -> Path:
    """A path under ../shared/data, skipping the test with a clear reason if that folder is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared test data missing: {path} (the project expects ../shared/data beside the repo)")
    return path


def smooth_photo(h: int, w: int, seed: int) -> np.ndarray:
    """A smooth, colourful [H,W,3] uint8 test photograph."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    phases = rng.uniform(0, 2 * np.pi, 3)
    img = np.stack([0.5 + 0.4 * np.sin(4 * x + 3 * y + p) for p in phases], -1)
    return np.round(img * 255).astype(np.uint8)


@pytest.fixture(scope="session")
def s7_root(tmp_path_factory) -> Path:
    """A 4-scene S7-layout folder (short/medium DNG + JPEG) written by `make_synthetic` from smooth photos."""
    from deepisp.data.synthetic import make_synthetic

    photos_dir = tmp_path_factory.mktemp("photos")
    photos = []
    for i in range(4):
        p = photos_dir / f"p{i}.png"
        Image.fromarray(smooth_photo(100, 132, i)).save(p)
        photos.append(p)
    root = tmp_path_factory.mktemp("s7")
    make_synthetic(photos, root, seed=0, progress=False)
    return root
