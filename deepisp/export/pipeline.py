"""What every export does after building a variant's graphs, whatever the backend: embed metadata, check
delegates, measure accuracy against the float model, and publish only what passes.

A variant's files are first written to a hidden staging folder inside the output folder; they are moved
into place (each with an atomic rename) only when the variant meets its accuracy floor and every graph
delegates fully to the processor it targets. A refused variant leaves no model file behind.

Files of variant v: `deepisp_tile_<v>.<ext>`, `deepisp_color_<v>.<ext>` (full models), the sidecar
`deepisp_<v>.json` (TFLite) or `deepisp_onnx_<v>.json` (ONNX), and `deepisp_<v>_error.png` (TFLite) /
`deepisp_onnx_<v>_error.png`: the float model's output beside a heat map of the variant's error.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from deepisp.atomic import make_folder
from deepisp.export.backends import BACKENDS, Backend, BuiltVariant, Exporter
from deepisp.export.gate import MIN_PSNR, compare
from deepisp.export.metadata import ExportMetadata, Measured, describe
from deepisp.runtime import ExportedModel


@dataclass(frozen=True)
class ExportOptions:
    """Shared export settings. tile: nominal core (rows, cols); frame: the sensor frame the plan is for;
    noise_profile: the (S, O) a noise-aware model was folded at (deepisp.model.fold_noise_level), or None."""

    out: Path
    tile: tuple[int, int]
    frame: tuple[int, int]
    min_psnr: float | None = None
    threads: int | None = None
    noise_profile: tuple[float, float] | None = None


class HeldOut(NamedTuple):
    """What a variant's accuracy is checked on: held-out frames (name, [H,W] mosaic) and the float model's
    outputs for them (deepisp.export.gate.reference_outputs)."""

    frames: list[tuple[str, np.ndarray]]
    references: list[torch.Tensor]


def publish(built: BuiltVariant, backend: Backend, exporter: Exporter, opts: ExportOptions, held_out: HeldOut) -> dict:
    """Stage, verify and (if accepted) publish one variant `exporter` built; returns its report: the sidecar's
    JSON (`ExportMetadata.to_json`)."""
    cfg = exporter.model.cfg
    files = {g: f"deepisp_{g}_{built.variant}{backend.extension}" for g in built.graphs}
    meta = describe(cfg, exporter.window, opts.frame, opts.tile, backend.name, built.variant, files, opts.noise_profile)
    name = backend.stem(built.variant)
    make_folder(opts.out)
    with tempfile.TemporaryDirectory(dir=opts.out, prefix=".staging-") as tmp:
        staging = Path(tmp)
        sizes = {}
        for g, blob in built.graphs.items():
            data = backend.embed(blob, meta.to_json())
            (staging / files[g]).write_bytes(data)
            sizes[g] = len(data)
        meta.write(staging / f"{name}.json")
        delegates = {g: verdicts for g, blob in built.graphs.items() if (verdicts := exporter.check(blob))}
        exported = ExportedModel(staging / f"{name}.json", opts.threads)
        accuracy = compare(exported, held_out.frames, held_out.references, error_map=staging / f"{name}_error.png")
        floor = opts.min_psnr if opts.min_psnr is not None else MIN_PSNR[built.variant]
        problems = []
        if accuracy["psnr_min"] < floor:
            problems.append(f"PSNR vs float {accuracy['psnr_min']:.1f} dB < floor {floor:.1f} dB (--min-psnr to override)")
        for g, target in built.targets.items():
            if target in ("gpu", "npu") and not delegates[g][target]["ok"]:
                fallback = delegates[g][target]["fallback"]
                problems.append(f"{g} graph does not run wholly on the {target.upper()}: {len(fallback)} op(s) fall back to CPU, first: {fallback[0]}")
        measured = Measured(
            bytes=sizes,
            targets=built.targets,
            accuracy={**accuracy, "floor_psnr": floor},
            delegates=delegates,
            extra=built.extra,
            accepted=not problems,
            problems=problems,
        )
        report = replace(meta, measured=measured)
        if not problems:
            report.write(staging / f"{name}.json")
            for f in staging.iterdir():
                os.replace(f, opts.out / f.name)
    return report.to_json()


def delegate_verdict(measured: Measured) -> str:
    """'tile->gpu ok, color->gpu ok' from a variant's targets and delegate checks ('->cpu': not gated)."""
    if not measured.delegates:
        return "n/a"
    return ", ".join(
        f"{g}->{t} {'ok' if measured.delegates[g][t]['ok'] else 'CPU FALLBACK'}" if t in ("gpu", "npu") else f"{g}->cpu" for g, t in measured.targets.items()
    )


def summary_line(report: dict, out: Path) -> str:
    """One line per variant (`publish`'s report): files, size, accuracy against float, delegate verdicts, accepted or why not."""
    meta = ExportMetadata.from_json(report, "export report")
    measured = meta.measured
    acc = measured.accuracy
    size = sum(measured.bytes.values()) / 1024
    status = "ok" if measured.accepted else "REFUSED: " + "; ".join(measured.problems)
    where = out / f"{BACKENDS[meta.backend].stem(meta.variant)}.json"
    return (
        f"{meta.variant:<9} {size:8.1f} kB  PSNR vs float {acc['psnr']:6.2f} dB (min {acc['psnr_min']:.2f}, floor {acc['floor_psnr']:.0f})"
        f"  SSIM {acc['ssim']:.4f}  delegates [{delegate_verdict(measured)}]  {status}" + (f"\n          -> {where}" if measured.accepted else "")
    )
