"""Everything that talks to adb: finding it, picking the device, and every call, each with a timeout.

A phone can be unplugged, reboot or lock up at any moment of a long sweep. Every adb call here therefore
has a timeout, and every failure is told apart: a device that is gone (`DeviceLost`, the sweep stops and
keeps what it has) from a command that failed on a live device (`DeepISPError`, or the caller's own
handling where a failure is an expected outcome, like a benchmark run that errors).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from deepisp.errors import DeepISPError, printable

# adb's own exit status is 1 both for a transport failure and for a remote command exiting 1; which one
# it was is settled by asking `get-state`, with this (short) timeout.
STATE_TIMEOUT_S = 10.0
# Output kept per stream of one adb call: benchmark_model's op profile is a few hundred kB.
MAX_OUTPUT_BYTES = 16 << 20
PLATFORM_TOOLS_URL = "https://developer.android.com/tools/releases/platform-tools"

# Why a listed device cannot be used, and what to do about it, by `adb devices` state.
_STATE_HELP = {
    "unauthorized": "unlock the phone and accept its 'Allow USB debugging?' prompt, then run again",
    "offline": "replug the USB cable (or run `adb kill-server`), then run again",
    "no permissions": "this user cannot open the USB device: add a udev rule for it (https://developer.android.com/studio/run/device) and replug",
    "authorizing": "wait for the phone to finish authorizing this computer, then run again",
}


class DeviceLost(DeepISPError):
    """The device disappeared (unplugged, rebooted, adb server died) in the middle of the work."""


class AdbTimeout(DeepISPError):
    """An adb call ran past its timeout while the device still answers."""


@dataclass(frozen=True)
class Device:
    """One line of `adb devices`."""

    serial: str
    state: str


@dataclass(frozen=True)
class DeviceInfo:
    """What the results need to say about the phone."""

    serial: str
    model: str
    soc: str
    android: str
    abis: list[str]
    gpu: str

    def describe(self) -> str:
        return f"{self.model} ({self.serial}), {self.soc}, Android {self.android}, {self.abis[0]}, GPU {self.gpu}"

    def as_dict(self) -> dict:
        return asdict(self)


def find_adb(explicit: str | None = None) -> Path:
    """The adb executable: `explicit` (--adb), else PATH, else $ANDROID_HOME or $ANDROID_SDK_ROOT/platform-tools.

    Raises:
        DeepISPError: none found, or `explicit` is not an executable file.
    """
    if explicit:
        path = Path(explicit)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise DeepISPError(f"--adb {explicit} is not an executable file; pass the path of adb from platform-tools")
        return path
    on_path = shutil.which("adb")
    if on_path:
        return Path(on_path)
    for var in ("ANDROID_HOME", "ANDROID_SDK_ROOT"):
        if os.environ.get(var):
            candidate = Path(os.environ[var]) / "platform-tools" / "adb"
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return candidate
    raise DeepISPError(
        f"adb not found on PATH, in $ANDROID_HOME/platform-tools or $ANDROID_SDK_ROOT/platform-tools; "
        f"install Android platform-tools ({PLATFORM_TOOLS_URL}) or pass --adb PATH"
    )


def parse_devices(text: str) -> list[Device]:
    """Parse `adb devices` output ("List of devices attached", then "SERIAL<TAB>STATE" lines)."""
    devices = []
    for line in text.splitlines():
        # Skip the header and the "* daemon not running; starting now" lines of a fresh adb server.
        if "\t" not in line or line.startswith("*"):
            continue
        serial, state = line.split("\t", 1)
        devices.append(Device(serial.strip(), state.strip()))
    return devices


def pick_device(devices: list[Device], serial: str | None) -> str:
    """The serial to use: `serial` (-s) if given, else the only device attached.

    Raises:
        DeepISPError: no device, `serial` not attached, several devices and no -s, or the device unusable.
    """
    listed = ", ".join(f"{d.serial} ({d.state})" for d in devices)
    if serial is not None:
        chosen = next((d for d in devices if d.serial == serial), None)
        if chosen is None:
            raise DeepISPError(f"device {serial} is not attached (adb devices lists: {listed or 'nothing'}); check -s")
    elif not devices:
        raise DeepISPError(
            "no Android device found (adb devices lists none): connect the phone by USB with USB debugging enabled in Developer options, then run again"
        )
    elif len(devices) > 1:
        raise DeepISPError(f"{len(devices)} devices attached ({listed}); pick one with -s SERIAL")
    else:
        chosen = devices[0]
    if chosen.state != "device":
        state = next((s for s in _STATE_HELP if chosen.state.startswith(s)), chosen.state)
        hint = _STATE_HELP.get(state, "boot it into Android with USB debugging enabled, then run again")
        raise DeepISPError(f"device {chosen.serial} is {state}: {hint}")
    return chosen.serial


def _props(text: str) -> dict[str, str]:
    """Parse a `getprop` dump ("[key]: [value]" lines)."""
    return dict(re.findall(r"^\[([^\]]+)\]: \[(.*)\]$", text, flags=re.MULTILINE))


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "no output"


class Adb:
    """adb for one device. Every call has a timeout: `timeout` by default, longer where the caller says."""

    def __init__(self, exe: Path, timeout: float):
        self.exe = exe
        self.timeout = timeout
        self.serial: str | None = None

    def _run(self, args: list[str], timeout: float) -> subprocess.CompletedProcess:
        """Run adb with `timeout`; its output is drained as it comes and kept up to MAX_OUTPUT_BYTES per stream: a
        tool that prints without end is stopped (DeepISPError) instead of filling memory."""
        cmd = [str(self.exe)] + (["-s", self.serial] if self.serial else []) + args
        try:
            # Its own session (process group), so a timeout kills adb and everything it started: a hung adb's
            # children (a forked server, a shell) would otherwise outlive it and hold the pipes open.
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        except OSError as e:
            raise DeepISPError(f"cannot run adb at {self.exe}: {e.strerror or e}; pass a working adb with --adb") from None
        streams = [_Drain(proc.stdout), _Drain(proc.stderr)]
        deadline = time.monotonic() + timeout
        while proc.poll() is None:
            if any(d.overflowed for d in streams):
                _kill_group(proc)
                raise DeepISPError(f"`adb {printable(' '.join(args))[:80]}` printed more than {MAX_OUTPUT_BYTES >> 20} MiB; stopped it")
            if time.monotonic() > deadline:
                _kill_group(proc)
                raise subprocess.TimeoutExpired(cmd, timeout)
            time.sleep(0.02)
        out, err = (d.text() for d in streams)
        return subprocess.CompletedProcess(cmd, proc.returncode, out, err)

    def select(self, serial: str | None) -> str:
        """List devices and bind to one (see `pick_device`); $ANDROID_SERIAL stands in for a missing -s."""
        try:
            proc = self._run(["devices"], self.timeout)
        except subprocess.TimeoutExpired:
            raise DeepISPError(f"`adb devices` did not answer within {self.timeout:g} s; run `adb kill-server` and try again") from None
        if proc.returncode != 0:
            raise DeepISPError(f"`adb devices` failed: {_last_line(proc.stderr + proc.stdout)}")
        self.serial = pick_device(parse_devices(proc.stdout), serial or os.environ.get("ANDROID_SERIAL") or None)
        return self.serial

    def state(self) -> str:
        """The device's adb state ("device" when usable); "gone" when adb cannot reach it."""
        try:
            proc = self._run(["get-state"], STATE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return "gone"
        return proc.stdout.strip() if proc.returncode == 0 and proc.stdout.strip() else "gone"

    def call(self, args: list[str], what: str, timeout: float | None = None, check: bool = True) -> subprocess.CompletedProcess:
        """Run `adb -s SERIAL <args>`.

        Args:
            what: words for error messages, e.g. "pushing model.tflite".
            check: raise on a non-zero exit; with False a failed command on a live device is returned.
        Raises:
            DeviceLost: the device is no longer reachable after a failure or timeout.
            AdbTimeout: timed out with the device still there.
            DeepISPError: non-zero exit on a live device (check=True).
        """
        timeout = timeout or self.timeout
        try:
            proc = self._run(args, timeout)
        except subprocess.TimeoutExpired:
            self._raise_if_lost(what, f"no answer within {timeout:g} s")
            raise AdbTimeout(f"{what} timed out after {timeout:g} s with the device still attached") from None
        if proc.returncode != 0:
            self._raise_if_lost(what, _last_line(proc.stderr + proc.stdout))
            if check:
                raise DeepISPError(f"{what} failed on {self.serial}: {_last_line(proc.stderr + proc.stdout)}")
        return proc

    def _raise_if_lost(self, what: str, detail: str) -> None:
        state = self.state()
        if state != "device":
            raise DeviceLost(f"device {self.serial} went away ({state}) while {what} (adb: {detail})")

    def shell(self, argv: list[str], what: str, timeout: float | None = None, check: bool = True) -> subprocess.CompletedProcess:
        """Run a command on the device; `argv` is quoted for the device's shell."""
        return self.call(["shell", shlex.join(argv)], what, timeout, check)

    def push(self, local: Path, remote: str) -> None:
        self.call(["push", str(local), remote], f"pushing {local.name}")

    def pull(self, remote: str, local: Path) -> None:
        self.call(["pull", remote, str(local)], f"pulling {remote}")

    def info(self) -> DeviceInfo:
        """Model, SoC, Android version, ABIs and GPU of the bound device."""
        props = _props(self.shell(["getprop"], "reading device properties").stdout)

        def prop(*keys: str) -> str:
            return next((props[k] for k in keys if props.get(k)), "")

        soc = " ".join(p for p in (prop("ro.soc.manufacturer"), prop("ro.soc.model")) if p)
        abis = [a for a in prop("ro.product.cpu.abilist", "ro.product.cpu.abi").split(",") if a]
        return DeviceInfo(
            serial=self.serial or "",
            model=" ".join(p for p in (prop("ro.product.manufacturer"), prop("ro.product.model")) if p) or "unknown",
            soc=soc or prop("ro.board.platform", "ro.hardware") or "unknown",
            android=f"{prop('ro.build.version.release') or '?'} (API {prop('ro.build.version.sdk') or '?'})",
            abis=abis or ["unknown"],
            gpu=self._gpu() or prop("ro.hardware.egl") or "unknown",
        )

    def _gpu(self) -> str:
        """GPU vendor and renderer from SurfaceFlinger's "GLES: vendor, renderer, version" line."""
        proc = self.shell(["dumpsys", "SurfaceFlinger"], "reading the GPU name", check=False)
        match = re.search(r"^GLES: ([^,\n]+), ([^,\n]+)", proc.stdout, flags=re.MULTILINE)
        return f"{match[1].strip()} {match[2].strip()}" if match else ""


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the process group of `proc` (started with start_new_session) and reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


class _Drain:
    """Reads a pipe to its end on a thread, keeping the first MAX_OUTPUT_BYTES (`overflowed` once more came)."""

    def __init__(self, pipe) -> None:
        self.kept, self.overflowed = bytearray(), False
        self._thread = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self._thread.start()

    def _read(self, pipe) -> None:
        with pipe:
            for chunk in iter(lambda: pipe.read1(1 << 16), b""):
                room = MAX_OUTPUT_BYTES - len(self.kept)
                self.kept += chunk[:room]
                self.overflowed |= len(chunk) > room

    def text(self) -> str:
        self._thread.join(timeout=5)
        return self.kept.decode("utf-8", "replace")
