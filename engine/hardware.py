"""Hardware quirks, decided precisely rather than by disabling fast paths everywhere.

llama.cpp repacks weights into "extra" CPU buffer types (AMX tiles on recent Xeons, interleaved Q4_0 on AVX2/NEON).
On some machines that advertise AMX — virtual machines in particular — the AMX kernels fault on the first decode
(`ldtilecfg`, upstream llama.cpp #20824 and #26954). Turning extra buffer types off avoids the crash but also drops the
repacked kernels a laptop benefits from. So:

- a CPU that does not advertise AMX (every laptop, Apple Silicon, AMD) keeps them, with no probe and no cost;
- a CPU that advertises AMX gets one probe per (llama.cpp build, CPU, kernel, model file): a child process loads the
  model with extra buffer types and decodes a few tokens; if the child dies, codefill loads with them off. The verdict
  is cached on disk, so only the first load pays for it;
- `CODEFILL_EXTRA_BUFTS=on|off` overrides the decision.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import subprocess
import sys

from .paths import cache_dir

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 180


def cpu_advertises_amx(cpuinfo_path: str = "/proc/cpuinfo") -> bool:
    if sys.platform != "linux":
        return False
    try:
        with open(cpuinfo_path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"amx_tile", "amx_int8", "amx_bf16"})
    except OSError:
        return False
    return False


def _cpu_model(cpuinfo_path: str = "/proc/cpuinfo") -> str:
    try:
        with open(cpuinfo_path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith(("model name", "microcode")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _probe_key(model_path: str) -> str:
    import llama_cpp

    st = os.stat(model_path)
    ident = [
        getattr(llama_cpp, "__version__", "?"),
        _cpu_model(),
        platform.release(),
        os.path.realpath(model_path),
        str(st.st_size),
        str(int(st.st_mtime)),
    ]
    return hashlib.sha256("\0".join(ident).encode()).hexdigest()[:24]


def use_extra_buffer_types(model_path: str) -> bool:
    """Whether to load `model_path` with llama.cpp's extra (repacked) CPU buffer types."""
    override = os.environ.get("CODEFILL_EXTRA_BUFTS", "").strip().lower()
    if override in ("1", "on", "true", "yes"):
        return True
    if override in ("0", "off", "false", "no"):
        return False
    if not cpu_advertises_amx():
        return True
    key = _probe_key(model_path)
    verdict_file = os.path.join(cache_dir(), "amx-probe.json")
    verdicts: dict = {}
    try:
        with open(verdict_file, encoding="utf-8") as fh:
            verdicts = json.load(fh)
    except (OSError, ValueError):
        verdicts = {}
    if key in verdicts:
        return bool(verdicts[key])
    ok = _run_probe(model_path)
    if ok is None:  # the model itself does not load: nothing learned, and the caller will report why
        return True
    verdicts[key] = ok
    try:
        os.makedirs(os.path.dirname(verdict_file), exist_ok=True)
        tmp = verdict_file + f".{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(verdicts, fh)
        os.replace(tmp, verdict_file)
    except OSError as exc:  # a read-only home must not break completion
        log.debug("could not save AMX probe verdict: %s", exc)
    if not ok:
        log.info("AMX kernels fault on this CPU; loading without repacked buffer types (llama.cpp #20824)")
    return ok


def _run_probe(model_path: str) -> bool | None:
    cmd = [sys.executable, "-c", "from codefill.engine.llama import probe_main; probe_main()", model_path]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=PROBE_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except (subprocess.TimeoutExpired, OSError):
        return False
    if proc.returncode == PROBE_MODEL_BROKEN:
        return None
    return proc.returncode == 0


PROBE_MODEL_BROKEN = 3
