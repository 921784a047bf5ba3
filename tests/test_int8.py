"""The int8 simulation (deepisp.export.int8): its grids, and the exported int8 graph rounding where and how it
does, at the calibrated ranges."""

import copy
from dataclasses import replace

import numpy as np
import pytest
import torch

from deepisp.cfa import mosaic as rggb_mosaic
from deepisp.demosaic import bilinear_demosaic
from deepisp.export import quant_points
from deepisp.export.int8 import TANH_STEP, ActivationQuant, QuantizedTile, calibrated_ranges, int8_weight_grid, quantize_tanh, quantize_weight
from deepisp.model import DeepISP, ModelConfig
from tests.conftest import smooth_photo
from tests.test_micro import PACKED_FULL, PACKED_JDD
from tests.test_tiling import trained_like


def rms(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).pow(2).mean().sqrt())


def test_int8_grids():
    t = quantize_tanh(torch.tanh(torch.randn(1000)))
    assert torch.allclose(t / TANH_STEP, (t / TANH_STEP).round(), atol=1e-4)
    w = quantize_weight(torch.randn(4, 3, 3, 3))
    for row in w:  # symmetric per output channel: max |w| is code 127
        step = row.abs().max() / 127
        assert torch.allclose(row / step, (row / step).round(), atol=1e-3)
    q = ActivationQuant()
    x = torch.rand(10000) * 0.3 + 0.1
    q.hi.fill_(float(x.max()))  # [0, max]: calibrated_ranges includes zero (tested below)
    q.active = False
    assert torch.equal(q(x), x)  # inactive: no rounding
    q.active = True
    y = q(x)
    assert len(torch.unique(y)) <= 256
    assert rms(y, x) < (x.max() / 255).item()


def test_calibrated_ranges_are_the_percentiles_of_every_points_values():
    """Each point's range is the exact (100 - p)th..p-th percentile (p = RANGE_PERCENTILE, as order statistics:
    floor((1 - p/100) n) values beyond each end) of all its values over the windows, zero included; the
    network's input and output keep their min and max."""
    from deepisp.export import int8

    model = trained_like(PACKED_JDD, seed=4)
    windows = [np.random.default_rng(k).uniform(0, 0.4, (64, 96)).astype(np.float32) for k in range(3)]
    values = {}
    sim = QuantizedTile(model).eval()
    sim.round_weights = sim.round_tanh = False
    for name, q in sim.ranges.items():
        q.active = False
        q.register_forward_hook(lambda m, i, out, name=name: values.setdefault(name, []).append(out.flatten()))
    with torch.no_grad():
        for w in windows:
            sim.tile(bilinear_demosaic(torch.from_numpy(w)[None, None]))
    ranges = calibrated_ranges(model, windows)
    tail = (100 - int8.RANGE_PERCENTILE) / 100
    clipped = 0
    for name, parts in values.items():
        v = torch.cat(parts).sort().values
        beyond = 0 if name in (quant_points.INPUT, quant_points.OUTPUT) else int(tail * v.numel())
        clipped += beyond > 0
        want = (min(float(v[beyond]), 0.0), max(float(v[-1 - beyond]), 0.0))
        assert ranges[name] == (want[0], max(want[1], want[0] + int8.MIN_RANGE)), name
    assert clipped > len(values) // 2  # the points' ranges really leave out their extremes


def int8_tile_graph(tmp_path, model, calibration, window, ranges=None):
    """The full-integer int8 tile graph of `model` (TFLite's converter, calibrated on `calibration`), with
    `ranges` fixed in it or the converter's own, as a runner."""
    from deepisp.export.tf_graphs import tf_graphs
    from deepisp.export.tflite_export import convert
    from deepisp.runtime import TfliteRunner

    path = tmp_path / f"tile_{'own' if ranges else 'converter'}.tflite"
    path.write_bytes(convert(tf_graphs(model, ranges), "int8", window, model.cfg.hl_width, calibration).graphs["tile"])
    return TfliteRunner(model.cfg, {"tile": path})


def test_exported_int8_graph_rounds_where_and_how_the_simulation_does(tmp_path):
    """With the calibrated ranges fixed in it, the real full-integer TFLite graph and the simulation give
    nearly the same values (the rounding differs only where integer and float arithmetic land on different
    sides of a step), and their error against float is the same size. The converter's own calibration widens
    each residual's range to the running image's; ours keeps the residual's own."""
    pytest.importorskip("tensorflow", reason="needs the export extras")
    from deepisp.export.calibration import calibration_windows
    from deepisp.tiling import TorchRunner

    model = trained_like(PACKED_FULL, seed=3)
    photo = torch.from_numpy(smooth_photo(160, 224, seed=5)).permute(2, 0, 1)[None].float() / 255
    mosaic = (0.25 * rggb_mosaic(photo))[0, 0].numpy()  # at a low-light level
    window = (64, 64)
    calibration = calibration_windows([mosaic[:, :128]], window, 8, input_max=0.25)
    ranges = calibrated_ranges(model, calibration)
    assert all(lo <= 0 <= hi for lo, hi in ranges.values())
    sim = QuantizedTile(model, ranges).eval()

    test = torch.from_numpy(mosaic[:64, 160:224].copy())  # not in the calibration windows
    float_out = TorchRunner(model).low_level(test)
    int8_out = int8_tile_graph(tmp_path, model, calibration, window, ranges).low_level(test)
    with torch.no_grad():
        sim_out = [t[0] for t in sim.tile(bilinear_demosaic(test[None, None]))]
    for sim_t, int8_t, float_t in zip(sim_out, int8_out, float_out):  # image, then cells
        err_sim, err_int8 = rms(sim_t, float_t), rms(int8_t, float_t)
        assert 0.8 < err_sim / err_int8 < 1.25, (err_sim, err_int8)
        # Independent roundings of this size would differ by ~1.4x err_int8; these mostly agree (the sim
        # does not round the mosaic before the demosaic, the graph does).
        assert rms(sim_t, int8_t) < 0.75 * err_int8, (rms(sim_t, int8_t), err_int8)

    from deepisp.runtime import tflite_interpreter_class

    def quantization(path, op_name, side="outputs"):
        """Per `op_name` op of the graph at `path`: the (scale, zero point) of its input or output tensors."""
        it = tflite_interpreter_class()(model_path=str(path))
        tensors = {d["index"]: d["quantization"] for d in it.get_tensor_details()}
        return [[tensors[t] for t in op[side]] for op in it._get_ops_details() if op["op_name"] == op_name]

    def mul_ranges(path):
        return [((-128 - zp) * scale, (127 - zp) * scale) for ((scale, zp),) in quantization(path, "MUL")]

    int8_tile_graph(tmp_path, model, calibration, window)  # the converter's own ranges, for comparison
    own, converter = mul_ranges(tmp_path / "tile_own.tflite"), mul_ranges(tmp_path / "tile_converter.tflite")
    # The int8 graph's last block has no MUL: its residual reaches the output through the residual sum only,
    # whose concatenation of the TANH outputs keeps TANH's grid (rounds nothing).
    assert len(own) + 1 == len(converter) == PACKED_FULL.n_ll
    (concat_in,), (concat_out,) = (quantization(tmp_path / "tile_own.tflite", "CONCATENATION", side) for side in ("inputs", "outputs"))
    assert len(concat_in) == PACKED_FULL.n_ll and set(concat_in + concat_out) == {(TANH_STEP, 0)}
    for k, ((lo, hi), (clo, chi)) in enumerate(zip(own, converter)):
        want = ranges[f"b{k}_scaled"]
        assert lo == pytest.approx(want[0], abs=(want[1] - want[0]) / 100) and hi == pytest.approx(want[1], abs=(want[1] - want[0]) / 100)
        assert chi - clo > hi - lo  # the converter's is wider


MIRRORED = [
    PACKED_FULL,
    PACKED_JDD,  # last block: no feature conv
    ModelConfig(mode="full", n_ll=2, n_hl=1, width=8, hl_width=8),  # unpacked, no residual scale, one high-level layer
    ModelConfig(mode="jdd", n_ll=2, width=8, residual_scale=True),
]


@pytest.mark.parametrize("cfg", MIRRORED, ids=["packed-full", "packed-jdd", "full-n_hl1", "jdd"])
@pytest.mark.parametrize("fresh", [False, True], ids=["trained", "fresh"])
def test_tf_twin_rounds_at_the_same_points_as_the_simulation(cfg, fresh):
    """With ranges, the TF twin's FakeQuants are the simulation's points, by name and place, for every layout:
    both with only the activations rounded agree to float precision. A fresh model (residual convs at their
    zero init, so some points are zero everywhere) gets usable ranges too."""
    tf = pytest.importorskip("tensorflow", reason="needs the export extras")
    from deepisp.export.tf_graphs import tf_graphs

    model = DeepISP(cfg).eval() if fresh else trained_like(cfg, seed=6)
    windows = [np.random.default_rng(k).uniform(0, 0.3, (64, 96)).astype(np.float32) for k in range(2)]
    ranges = calibrated_ranges(model, windows)
    assert all(hi > lo for lo, hi in ranges.values())
    sim = QuantizedTile(model, ranges).eval()
    sim.round_weights = sim.round_tanh = False
    test = np.random.default_rng(9).uniform(0, 0.3, (64, 96)).astype(np.float32)
    rgb = bilinear_demosaic(torch.from_numpy(test)[None, None])
    out = tf_graphs(model, ranges)["tile"].serve(tf.constant(test[None, :, :, None]))
    with torch.no_grad():
        image, cells = sim.tile(rgb)
    tf_image = torch.from_numpy(out["image"].numpy()[0]).permute(2, 0, 1)
    step = (ranges[quant_points.OUTPUT][1] - ranges[quant_points.OUTPUT][0]) / 255
    # The same grid: outputs differ only where float round-off puts a value on the other side of a step.
    assert (tf_image - image[0]).abs().mean() < 0.05 * step
    with torch.no_grad():  # and that grid is really applied: both are away from the float network by rounding
        float_image = model.unpack(model.low_level(model.pack(rgb))[1])[0]
    assert (float_image - image[0]).abs().mean() > 0.1 * step
    if cells is not None:
        assert np.abs(out["cells"].numpy()[0].transpose(2, 0, 1) - cells[0].numpy()).mean() < 1e-3


@pytest.mark.parametrize("cfg", MIRRORED, ids=["packed-full", "packed-jdd", "full-n_hl1", "jdd"])
def test_int8_weight_grid_is_the_int8_graphs_weight_rounding(cfg):
    """A model whose weights are int8_weight_grid's computes what the int8 graph computes with only its weights
    rounded: the grid splits each conv as the graph does (features and image parts, each its own steps). Without
    residual scales, so the residual sum's own 1x1 weights (all 1) round to themselves."""
    model = trained_like(replace(cfg, residual_scale=False), seed=7)
    sim = QuantizedTile(model).eval()
    sim.round_tanh = False
    for q in sim.ranges.values():
        q.active = False
    gridded = copy.deepcopy(model)
    with torch.no_grad():
        grid = int8_weight_grid(model)
        assert len(grid) == sum(p.ndim == 4 for p in model.parameters())  # every conv weight
        gridded.load_state_dict({**model.state_dict(), **grid})
        assert all(torch.equal(w, g) for w, g in zip(int8_weight_grid(gridded).values(), grid.values()))  # on the grid
        rgb = bilinear_demosaic(torch.from_numpy(np.random.default_rng(3).uniform(0, 0.5, (64, 96)).astype(np.float32))[None, None])
        image, cells = sim.tile(rgb)
        features, low = gridded.low_level(gridded.pack(rgb))
        assert (gridded.unpack(low) - image).abs().max() < 1e-5
        assert (model.unpack(model.low_level(model.pack(rgb))[1]) - image).abs().max() > 1e-4  # the rounding is real
        if cells is not None:
            assert (gridded.high_level(torch.cat([features, low], dim=1)) - cells).abs().max() < 1e-5
