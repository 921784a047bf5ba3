"""Export a DeepISP checkpoint to ONNX: `python export/to_onnx.py --help` (see deepisp/export/commands.py)."""

import sys

from deepisp.export.commands import run

if __name__ == "__main__":
    sys.exit(run("onnx"))
