"""What the VS Code end-to-end tests (tests/test_vscode_e2e.py) run: code-server (VS Code in a browser, from npm),
Debian's chromium (driven by Playwright), and the extension's .vsix built from editors/vscode. Installed by this
module, once, into a cache; the registries (PyPI, npm, Debian's apt) are all CI reaches.

    python tests/vscode_env.py             # install/build what is missing (first time: a few minutes), print paths
    python tests/vscode_env.py --version   # the code-server version it installs

- Debian packages (`APT_PACKAGES`: the headers code-server's native modules build against, ripgrep, chromium, a font):
  the missing ones are installed with apt-get when running as root (CI); otherwise the error names the command.
- code-server `CODE_SERVER_VERSION` from npm into $CODEFILL_TOOLS_DIR, else ~/.cache/codefill-tools/, then
  code-server/<version>/. Its post-install builds native modules (node-pty's runs `npx node-gyp`, hence
  npm_config_yes) and, as root, refuses to run without npm_config_unsafe_perm. @vscode/ripgrep's post-install
  downloads ripgrep from GitHub, which CI cannot reach; it first looks in $TMPDIR/vscode-ripgrep-cache-<version>/,
  so a tarball of Debian's `rg` is put there (TMPDIR points at a directory of ours for the install).
- The .vsix: editors/vscode copied to a temporary directory, `npm ci`, `npm run package` (tsc, then vsce); cached in
  codefill-vsix/<hash of the extension's sources>/, so it is rebuilt only when they change.

A cached tool is complete when its `.complete` file exists (written last); a lock file serialises parallel runs.
Anything that cannot be installed raises VSCodeEnvUnavailable with what failed and where its log is.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass

from codefill.process import StepFailed, run_logged

CODE_SERVER_VERSION = "4.100.3"  # VS Code 1.100.3; declares Node 20 (its post-install refuses other majors)
NODE_MAJOR = 20
# @vscode/ripgrep as pinned by code-server 4.100.3's lib/vscode/npm-shrinkwrap.json, and the asset its
# lib/download.js looks for (VERSION v13.0.0-10, target x86_64-unknown-linux-musl). The tarball holds `rg` at its root.
RIPGREP_NPM_VERSION = "1.15.11"
RIPGREP_ASSET = "ripgrep-v13.0.0-10-x86_64-unknown-linux-musl.tar.gz"
APT_PACKAGES = ("libkrb5-dev", "libxkbfile-dev", "libsecret-1-dev", "libx11-dev", "pkg-config", "build-essential",
                "python3", "ripgrep", "chromium", "fonts-dejavu-core")
CHROMIUM = "/usr/bin/chromium"
EXTENSION_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "editors", "vscode")
# Not part of what the .vsix is built from (build outputs, the README's screenshot, which .vscodeignore leaves out).
_NOT_SOURCES = {"node_modules", "out", ".vscode-test", "screenshot.png"}
NPM_TIMEOUT_S = 1800


class VSCodeEnvUnavailable(RuntimeError):
    """A tool the VS Code end-to-end tests need could not be installed or built (the message says what and why)."""


@dataclass(frozen=True)
class VSCodeEnv:
    code_server: str  # the code-server executable
    chromium: str
    vsix: str


def tools_dir() -> str:
    return os.environ.get("CODEFILL_TOOLS_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "codefill-tools")


def _say(msg: str) -> None:
    print(f"[vscode env] {msg}", file=sys.stderr, flush=True)


def _run(cmd: list[str], *, cwd: str | None = None, env: dict | None = None, log_path: str,
         timeout: float = NPM_TIMEOUT_S) -> None:
    """Run an install step with its output in log_path, echoing its last line every 20 s (CI logs show it is alive)."""
    try:
        run_logged(cmd, cwd=cwd, env=env, log_path=log_path, timeout=timeout, say=_say, every=20)
    except StepFailed as exc:
        raise VSCodeEnvUnavailable(str(exc)) from None


@contextmanager
def _locked(path: str):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


# ---------------------------------------------------------------------------------------------------------- apt


def _missing_apt_packages() -> list[str]:
    missing = []
    for pkg in APT_PACKAGES:
        r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True, text=True)
        if r.returncode != 0 or "install ok installed" not in r.stdout:
            missing.append(pkg)
    return missing


def ensure_apt_packages() -> None:
    if shutil.which("dpkg-query") is None:
        if shutil.which("rg") and os.access(CHROMIUM, os.X_OK):
            return  # not Debian, but the tools are there; code-server's build will say what else it lacks
        raise VSCodeEnvUnavailable(f"the VS Code tests need Debian's packages {' '.join(APT_PACKAGES)} "
                                   f"(or ripgrep and {CHROMIUM} and code-server's build headers)")
    missing = _missing_apt_packages()
    if not missing:
        return
    command = "apt-get install -y --no-install-recommends " + " ".join(missing)
    if os.geteuid() != 0:
        raise VSCodeEnvUnavailable(f"the VS Code tests need Debian packages that are not installed; run: "
                                   f"sudo apt-get update && sudo {command}")
    log_path = os.path.join(tools_dir(), "apt.log")
    os.makedirs(tools_dir(), exist_ok=True)
    with _locked(os.path.join(tools_dir(), "apt.lock")):
        missing = _missing_apt_packages()
        if not missing:
            return
        _say(f"installing Debian packages: {' '.join(missing)}")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        _run(["apt-get", "update", "-q"], env=env, log_path=log_path, timeout=900)
        _run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], env=env, log_path=log_path,
             timeout=1800)
    still = _missing_apt_packages()
    if still:
        raise VSCodeEnvUnavailable(f"apt-get did not install {' '.join(still)}; see {log_path}")


def _check_node() -> str:
    node = shutil.which("node")
    npm = shutil.which("npm")
    if node is None or npm is None:
        raise VSCodeEnvUnavailable(f"the VS Code tests need Node.js {NODE_MAJOR} with npm on PATH "
                                   f"(code-server {CODE_SERVER_VERSION} declares Node {NODE_MAJOR})")
    version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout.strip()
    if not version.startswith(f"v{NODE_MAJOR}."):
        raise VSCodeEnvUnavailable(f"code-server {CODE_SERVER_VERSION} needs Node.js {NODE_MAJOR}; "
                                   f"{node} is {version or 'unknown'}")
    return npm


def _npm_env(tmpdir: str) -> dict:
    return dict(os.environ, TMPDIR=tmpdir, npm_config_unsafe_perm="true", npm_config_yes="true",
                npm_config_update_notifier="false", npm_config_fund="false", npm_config_audit="false",
                npm_config_loglevel="warn")


# ---------------------------------------------------------------------------------------------------- code-server


def code_server_dir() -> str:
    return os.path.join(tools_dir(), "code-server", CODE_SERVER_VERSION)


def code_server_path() -> str:
    return os.path.join(code_server_dir(), "node_modules", ".bin", "code-server")


def _ripgrep_tarball(tmpdir: str) -> None:
    """The tarball @vscode/ripgrep's post-install would download, holding Debian's rg."""
    rg = shutil.which("rg")
    if rg is None:
        raise VSCodeEnvUnavailable("ripgrep (rg) is not installed (Debian: apt-get install ripgrep)")
    cache = os.path.join(tmpdir, f"vscode-ripgrep-cache-{RIPGREP_NPM_VERSION}")
    os.makedirs(cache, exist_ok=True)
    with tarfile.open(os.path.join(cache, RIPGREP_ASSET), "w:gz") as tf:
        tf.add(os.path.realpath(rg), arcname="rg")


def ensure_code_server() -> str:
    target = code_server_path()
    done = os.path.join(code_server_dir(), ".complete")
    if os.path.exists(done) and os.access(target, os.X_OK):
        return target
    npm = _check_node()
    with _locked(code_server_dir() + ".lock"):
        if os.path.exists(done) and os.access(target, os.X_OK):
            return target
        shutil.rmtree(code_server_dir(), ignore_errors=True)  # a partial install from an interrupted run
        os.makedirs(code_server_dir())
        log_path = code_server_dir() + ".log"
        if os.path.exists(log_path):
            os.remove(log_path)
        tmpdir = tempfile.mkdtemp(prefix="code-server-install-")
        try:
            _ripgrep_tarball(tmpdir)
            _say(f"installing code-server {CODE_SERVER_VERSION} from npm (about 3 minutes on 2 cores; log: {log_path})")
            _run([npm, "install", "--prefix", code_server_dir(), "--no-save", "--no-package-lock",
                  f"code-server@{CODE_SERVER_VERSION}"], env=_npm_env(tmpdir), log_path=log_path)
        finally:
            shutil.rmtree(tmpdir, ignore_errors=True)
        r = subprocess.run([target, "--version"], capture_output=True, text=True, timeout=120)
        if r.returncode != 0 or CODE_SERVER_VERSION not in r.stdout:
            raise VSCodeEnvUnavailable(f"{target} --version gave {r.returncode}: {(r.stdout + r.stderr).strip()[:300]}"
                                       f"; see {log_path}")
        with open(done, "w") as fh:
            fh.write(r.stdout)
    _say(f"installed {target}")
    return target


# ------------------------------------------------------------------------------------------------------- the vsix


def _source_files() -> list[str]:
    out = []
    for root, dirs, files in os.walk(EXTENSION_DIR):
        dirs[:] = sorted(d for d in dirs if d not in _NOT_SOURCES)
        for name in sorted(files):
            if name in _NOT_SOURCES or name.endswith(".vsix"):
                continue
            out.append(os.path.relpath(os.path.join(root, name), EXTENSION_DIR))
    return out


def sources_hash() -> str:
    h = hashlib.sha256()
    for rel in _source_files():
        h.update(rel.encode() + b"\0")
        with open(os.path.join(EXTENSION_DIR, rel), "rb") as fh:
            h.update(hashlib.sha256(fh.read()).digest())
    return h.hexdigest()[:16]


def vsix_path() -> str:
    with open(os.path.join(EXTENSION_DIR, "package.json"), encoding="utf-8") as fh:
        manifest = json.load(fh)
    name = f"{manifest['name']}-{manifest['version']}.vsix"
    return os.path.join(tools_dir(), "codefill-vsix", sources_hash(), name)


def ensure_vsix() -> str:
    target = vsix_path()
    if os.path.exists(target):
        return target
    npm = _check_node()
    with _locked(os.path.join(tools_dir(), "codefill-vsix", ".lock")):
        if os.path.exists(target):
            return target
        os.makedirs(os.path.dirname(target), exist_ok=True)
        log_path = os.path.join(os.path.dirname(target), "build.log")
        work = tempfile.mkdtemp(prefix="codefill-vsix-")
        try:
            src = os.path.join(work, "vscode")
            for rel in _source_files():
                os.makedirs(os.path.join(src, os.path.dirname(rel)), exist_ok=True)
                shutil.copy2(os.path.join(EXTENSION_DIR, rel), os.path.join(src, rel))
            env = _npm_env(work)
            _say(f"building the extension (log: {log_path})")
            _run([npm, "ci"], cwd=src, env=env, log_path=log_path)
            _run([npm, "run", "package"], cwd=src, env=env, log_path=log_path)
            built = os.path.join(src, os.path.basename(target))
            if not os.path.exists(built):
                raise VSCodeEnvUnavailable(f"npm run package made no {os.path.basename(target)}; see {log_path}")
            shutil.copy2(built, target + ".tmp")
            os.replace(target + ".tmp", target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    _say(f"built {target}")
    return target


def ensure_chromium() -> str:
    if not os.access(CHROMIUM, os.X_OK):
        raise VSCodeEnvUnavailable(f"{CHROMIUM} is missing (Debian: apt-get install chromium)")
    return CHROMIUM


def ensure_all() -> VSCodeEnv:
    """Everything the VS Code tests need, installing/building what is missing (raises VSCodeEnvUnavailable)."""
    ensure_apt_packages()
    results: dict[str, str | BaseException] = {}

    def job(name, fn):  # code-server's install and the extension's build are both mostly npm: run them together
        try:
            results[name] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised below, in the caller's thread
            results[name] = exc

    threads = [threading.Thread(target=job, args=(n, f)) for n, f in
               (("code_server", ensure_code_server), ("vsix", ensure_vsix))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for value in results.values():
        if isinstance(value, BaseException):
            raise value
    return VSCodeEnv(code_server=results["code_server"], chromium=ensure_chromium(), vsix=results["vsix"])


def main() -> None:
    if "--version" in sys.argv[1:]:
        print(CODE_SERVER_VERSION)
        return
    try:
        env = ensure_all()
    except VSCodeEnvUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    print(f"code-server {env.code_server}\nchromium    {env.chromium}\nvsix        {env.vsix}")


if __name__ == "__main__":
    main()
