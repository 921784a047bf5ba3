"""On-device benchmarking of exported DeepISP .tflite graphs on an Android phone over adb.

    python android_harness/bench.py --model out/deepisp_tile_fp16.tflite --delegate gpu
    python android_harness/bench.py --sweep out/

Modules, one concern each:
    adb.py               finding adb, picking a device, every adb call (with a timeout), device facts
    elf.py               which CPU/OS a benchmark_model binary was built for, and where to get the right one
    tflite_info.py       input/output tensors of a .tflite read straight from its flatbuffer (no runtime)
    benchmark_output.py  parsing TensorFlow Lite benchmark_model's log: timings, memory, delegation, op profile
    device_accuracy.py   raw tiles in, outputs pulled back: files for the accuracy comparison
    report.py            JSON / CSV / Markdown tables, and the 12 MP frame time implied by the tile count
    bench.py             the command line: push, run every variant x delegate x threads, clean up
"""
