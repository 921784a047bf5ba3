"""Export a DeepISP checkpoint to ONNX: `python export/to_onnx.py --help` (see deepisp/export/cli.py)."""

import sys

from deepisp.export.cli import run

if __name__ == "__main__":
    sys.exit(run("onnx"))
