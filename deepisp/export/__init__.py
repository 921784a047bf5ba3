"""Export of DeepISP to phone runtimes: ONNX and TFLite graphs for exact fused-tile inference.

A 12 MP frame cannot go through a full-resolution conv network in one piece on a phone, so a model is
exported as two fixed-shape graphs that follow the tile plan of `deepisp.tiling`:

    tile graph  (pass 1)  raw Bayer window [1,S_h,S_w,1] -> low-level image [1,S_h,S_w,3]
                          (+ high-level cell map [1,S_h/A,S_w/A,C] in full mode)
                          bilinear demosaicing is inside the graph, so the app hands in sensor data.
    color graph (pass 2)  low-level image block [1,S_h,S_w,3] + global mean [1,C] -> output [1,S_h,S_w,3]
                          (full mode only: the FC layer giving W and the per-pixel quadratic transform)

Between the passes the app keeps each window's core of the image and sums the cells each window owns;
the sum divided by the frame's cell count is the exact global mean of the paper's high-level stage. The
sum is done by the app (fp32), not the graph, which also sidesteps fp16 overflow in GPU reductions.

Modules: `graphs` (the two graphs in PyTorch, exported to ONNX), `tf_graphs` (the same graphs in
TensorFlow, NHWC, for the TFLite converter), `onnx_export`, `tflite_export` (quantization variants),
`calibration` (raw windows for int8), `int8` (the int8 tile graph simulated: its ranges and where it
loses), `delegates` (GPU / NNAPI compatibility rules), `metadata` (what an app needs to run the graphs),
`accuracy` (an exported variant against the float PyTorch model), `pipeline` (stage, check and publish a
variant), `cli` (export/to_tflite.py and export/to_onnx.py).
"""

import os

# TensorFlow's C++ INFO/WARNING chatter (converter logs, and the oneDNN notice it prints before its logging
# starts, silenced only by leaving oneDNN's CPU kernels off: the export runs TensorFlow for graph building and
# conversion, not for speed) would precede every export message and error line. Set before any submodule
# imports TensorFlow; a user's own setting wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
