"""Export a DeepISP checkpoint to TFLITE: `python export/to_tflite.py --help` (see deepisp/export/cli.py)."""

import sys

from deepisp.export.cli import run

if __name__ == "__main__":
    sys.exit(run("tflite"))
