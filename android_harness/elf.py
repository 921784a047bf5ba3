"""Which phone a benchmark_model binary can run on, read from its ELF header, and where to get the right one.

A binary for the wrong CPU fails on the phone with a terse shell message ("not executable: 64-bit ELF
file"), and a desktop Linux build of the same CPU fails with an even less helpful "not found" (its
program interpreter /lib/ld-linux-*.so does not exist on Android). Both are caught here, before pushing:
e_machine gives the ABI, and PT_INTERP tells Android (/system/bin/linker*, or static) from desktop Linux.
"""

from __future__ import annotations

import struct
from pathlib import Path

from deepisp.errors import DeepISPError

# ELF e_machine -> Android ABI name (as in ro.product.cpu.abilist), by word size.
_ABIS = {(183, 64): "arm64-v8a", (40, 32): "armeabi-v7a", (62, 64): "x86_64", (3, 32): "x86", (243, 64): "riscv64"}
_PT_INTERP = 3
# Where the program-header fields sit (byte offset, struct format) in ELF32 and ELF64 files.
_LAYOUT = {
    32: {"e_phoff": (28, "I"), "e_phentsize": 42, "p_offset": (4, "I"), "p_filesz": (16, "I")},
    64: {"e_phoff": (32, "Q"), "e_phentsize": 54, "p_offset": (8, "Q"), "p_filesz": (32, "Q")},
}

# The LiteRT benchmark tool page (https://ai.google.dev/edge/litert/models/measurement, formerly
# tensorflow.org/lite/performance/measurement) links nightly prebuilt binaries for the two ARM ABIs.
NIGHTLY = "https://storage.googleapis.com/tensorflow-nightly-public/prod/tensorflow/release/lite/tools/nightly/latest/"
_PREBUILT = {"arm64-v8a": "android_aarch64_benchmark_model", "armeabi-v7a": "android_arm_benchmark_model"}
_BAZEL_CONFIG = {"arm64-v8a": "android_arm64", "armeabi-v7a": "android_arm", "x86_64": "android_x86_64", "x86": "android_x86"}


def binary_abi(path: Path) -> str:
    """The Android ABI `path` was built for.

    Raises:
        DeepISPError: not an ELF file, an unknown CPU, or a desktop Linux (glibc) build.
    """
    with open(path, "rb") as f:
        head = f.read(1 << 16)  # the ELF and program headers sit in the first few hundred bytes
    if head[:4] != b"\x7fELF":
        raise DeepISPError(f"{path} is not an executable (no ELF header); pass TensorFlow Lite's benchmark_model binary for Android")
    bits = {1: 32, 2: 64}.get(head[4]) if len(head) > 5 else None
    endian = {1: "<", 2: ">"}.get(head[5]) if len(head) > 5 else None
    if bits is None or endian is None or len(head) < 20:
        raise DeepISPError(f"{path} has a truncated or corrupt ELF header; download benchmark_model again")
    machine = struct.unpack_from(endian + "H", head, 18)[0]
    abi = _ABIS.get((machine, bits))
    if abi is None:
        raise DeepISPError(f"{path} is built for ELF machine {machine} ({bits}-bit), not an Android CPU; {where_to_get('arm64-v8a')}")
    interp = _interpreter(head, endian, bits)
    if interp is not None and not interp.startswith("/system/bin/linker"):
        raise DeepISPError(f"{path} is a desktop Linux build (program interpreter {interp}), which Android cannot run; {where_to_get(abi)}")
    return abi


def _interpreter(head: bytes, endian: str, bits: int) -> str | None:
    """The PT_INTERP path (the dynamic loader the binary asks for), None for a static binary."""
    lay = _LAYOUT[bits]
    try:
        (phoff,) = struct.unpack_from(endian + lay["e_phoff"][1], head, lay["e_phoff"][0])
        phentsize, phnum = struct.unpack_from(endian + "HH", head, lay["e_phentsize"])
        for i in range(phnum):
            at = phoff + i * phentsize
            if struct.unpack_from(endian + "I", head, at)[0] != _PT_INTERP:
                continue
            (offset,) = struct.unpack_from(endian + lay["p_offset"][1], head, at + lay["p_offset"][0])
            (size,) = struct.unpack_from(endian + lay["p_filesz"][1], head, at + lay["p_filesz"][0])
            return head[offset : offset + size].rstrip(b"\x00").decode("ascii", "replace")
    except struct.error:
        return None  # program headers beyond what was read: let the phone be the judge
    return None


def where_to_get(abi: str) -> str:
    """One sentence telling where a benchmark_model for `abi` comes from."""
    build = f"bazel build -c opt --config={_BAZEL_CONFIG.get(abi, 'android_arm64')} //tensorflow/lite/tools/benchmark:benchmark_model"
    if abi in _PREBUILT:
        return f"download the {abi} build {NIGHTLY}{_PREBUILT[abi]} or build it with `{build}`"
    return f"build one for {abi} with `{build}` (TensorFlow publishes prebuilt nightlies only for ARM)"


def check_runs_on(path: Path, device_abis: list[str], device: str) -> str:
    """Check that the binary at `path` can run on a device listing `device_abis`; return its ABI.

    Raises:
        DeepISPError: wrong CPU, not an Android binary, or not an executable at all.
    """
    abi = binary_abi(path)
    if abi not in device_abis:
        raise DeepISPError(f"{path} is built for {abi} but {device} runs {', '.join(device_abis)}; {where_to_get(device_abis[0])}")
    return abi
