"""Export a DeepISP checkpoint to TFLITE: `python export/to_tflite.py --help` (see deepisp/export/commands.py)."""

import sys

from deepisp.export.commands import run

if __name__ == "__main__":
    sys.exit(run("tflite"))
