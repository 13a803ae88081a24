"""Real third-party source code in other languages than Python, for `codefill eval repo` (issue 15 #4): installed
once from the package registries (Debian's apt, npm) and copied, one language per folder and nothing but that
language's files, into a cache.

    python bench/lang_sources.py                 # install what is missing, print one folder per language
    python bench/lang_sources.py --lang go,rust  # only these
    codefill eval repo "$(python bench/lang_sources.py --lang go)" --limit 60 --seed 0 --threads 1

Cache: $CODEFILL_TOOLS_DIR, else ~/.cache/codefill-tools/, then lang-src/<language>/<package>/…, with
lang-src/<language>/PACKAGES.tsv (package, version, files, lines). Only the language's own file types are copied
(no README.md, package.json, go.mod: `codefill eval repo` would cut holes in those too), so `codefill eval repo` on
the folder is exactly the per-language evaluation. A `.complete` marker keyed by the source list makes a second run
a no-op; a changed list or an interrupted copy is redone.

- Debian packages (apt-get as root, `apt-get update` first when the lists are missing or stale); the files are the
  package's own (`dpkg -L`), not its dependencies'.
- npm packages (`npm install --prefix`, exact versions); JavaScript keeps the whole dependency tree (express's),
  TypeScript only rxjs's hand-written `src/`.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import asdict, dataclass

from codefill.process import StepFailed, run_logged


@dataclass(frozen=True)
class Source:
    language: str
    exts: tuple[str, ...]
    apt: tuple[str, ...] = ()  # Debian packages: their own files
    npm: tuple[str, ...] = ()  # npm specs, exact versions
    npm_keep: str = ""  # a regex on node_modules/<pkg>/<path>: copy only what matches (default: every package)
    path_re: str = ""  # a regex the installed path must match (Debian)
    note: str = ""


# express 4.21.2's dependency tree as npm resolved it on 2026-12-03, pinned: the same files on every machine
# (express's own ranges would let a later install pick newer versions, and other holes).
EXPRESS_TREE = (
    "accepts@1.3.8", "array-flatten@1.1.1", "async-function@1.0.0", "async-generator-function@1.0.0",
    "body-parser@1.20.3", "bytes@3.1.2", "call-bind-apply-helpers@1.0.2", "call-bound@1.0.4",
    "content-disposition@0.5.4", "content-type@1.0.5", "cookie@0.7.1", "cookie-signature@1.0.6", "debug@2.6.9",
    "depd@2.0.0", "destroy@1.2.0", "dunder-proto@1.0.1", "ee-first@1.1.1", "encodeurl@2.0.3",
    "es-define-property@1.0.1", "es-errors@1.3.0", "es-object-atoms@1.1.2", "escape-html@1.0.3", "etag@1.8.1",
    "express@4.21.2", "finalhandler@1.3.1", "forwarded@0.2.0", "fresh@0.5.2", "function-bind@1.1.2",
    "generator-function@2.0.1", "get-intrinsic@1.3.1", "get-proto@1.0.1", "gopd@1.2.0", "has-symbols@1.1.0",
    "hasown@2.0.4", "http-errors@2.0.0", "iconv-lite@0.4.24", "inherits@2.0.4", "ipaddr.js@1.9.1",
    "math-intrinsics@1.1.0", "media-typer@0.3.0", "merge-descriptors@1.0.3", "methods@1.1.2", "mime@1.6.0",
    "mime-db@1.52.0", "mime-types@2.1.35", "ms@2.0.0", "negotiator@0.6.3", "object-inspect@1.14.0",
    "on-finished@2.4.1", "parseurl@1.3.3", "path-to-regexp@0.1.12", "proxy-addr@2.0.8", "qs@6.13.0",
    "range-parser@1.2.1", "raw-body@2.5.2", "safe-buffer@5.2.1", "safer-buffer@2.1.2", "send@0.19.0",
    "serve-static@1.16.2", "setprototypeof@1.2.0", "side-channel@1.1.1", "side-channel-list@1.0.1",
    "side-channel-map@1.0.1", "side-channel-weakmap@1.0.2", "statuses@2.0.1", "toidentifier@1.0.1", "type-is@1.6.18",
    "unpipe@1.0.0", "utils-merge@1.0.1", "vary@1.1.2",
)

SOURCES: dict[str, Source] = {s.language: s for s in (
    Source("javascript", (".js",), npm=EXPRESS_TREE,
           note="express and its whole dependency tree (CommonJS sources and their tests; no .min.js)"),
    Source("typescript", (".ts",), npm=("rxjs@7.8.1",), npm_keep=r"^rxjs/src/",
           note="rxjs's own src/ (the .ts it is built from)"),
    Source("go", (".go",), apt=("golang-github-spf13-cobra-dev", "golang-github-pelletier-go-toml-dev",
                                "golang-github-google-go-cmp-dev")),
    Source("rust", (".rs",), apt=("librust-regex-dev", "librust-itertools-dev"),
           note="regex-syntax (a dependency) left out: most of it is generated Unicode tables"),
    Source("c", (".c", ".h"), apt=("gnulib",), path_re=r"^/usr/share/gnulib/lib/[^/]+$",
           note="gnulib's lib/ (top level: hand-written portable C in GNU style; lib/uni*/ are generated tables)"),
)}

APT_TIMEOUT_S = 1800
NPM_TIMEOUT_S = 900


class SourcesUnavailable(RuntimeError):
    """The sources could not be installed (no apt-get or not root, no npm, a registry unreachable)."""


def tools_dir() -> str:
    return os.environ.get("CODEFILL_TOOLS_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "codefill-tools")


def lang_dir(language: str) -> str:
    return os.path.join(tools_dir(), "lang-src", language)


def _say(msg: str) -> None:
    print(f"[lang-src] {msg}", file=sys.stderr, flush=True)


def _key(src: Source) -> str:
    return hashlib.sha256(json.dumps(asdict(src), sort_keys=True).encode()).hexdigest()[:16]


@contextmanager
def _locked(path: str):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _run(cmd: list[str], *, timeout: float, env: dict | None = None, log_path: str) -> None:
    """Run an install step, its output into log_path, a line every 15 s while it runs (logs show it is alive)."""
    try:
        run_logged(cmd, env=env, log_path=log_path, timeout=timeout, say=_say, every=15)
    except StepFailed as exc:
        raise SourcesUnavailable(str(exc)) from None


# ---------------------------------------------------------------------------------------------------------- apt


def _apt_version(pkg: str) -> str | None:
    r = subprocess.run(["dpkg-query", "-W", "-f=${Status}\t${Version}", pkg], capture_output=True, text=True)
    status, _, version = r.stdout.partition("\t")
    return version if r.returncode == 0 and "install ok installed" in status else None


def _ensure_apt(pkgs: tuple[str, ...]) -> None:
    if shutil.which("dpkg-query") is None or shutil.which("apt-get") is None:
        raise SourcesUnavailable(f"Debian packages {' '.join(pkgs)} are needed and this is no Debian machine (no apt-get)")
    missing = [p for p in pkgs if _apt_version(p) is None]
    if not missing:
        return
    command = "apt-get install -y --no-install-recommends " + " ".join(missing)
    if os.geteuid() != 0:
        raise SourcesUnavailable(f"Debian packages are missing and this user cannot install them; run: "
                                 f"sudo apt-get update && sudo {command}")
    log_path = os.path.join(tools_dir(), "lang-src", "apt.log")
    with _locked(os.path.join(tools_dir(), "apt.lock")):
        missing = [p for p in pkgs if _apt_version(p) is None]
        if not missing:
            return
        _say(f"installing Debian packages: {' '.join(missing)} (log: {log_path})")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        try:  # the lists may be there and fresh enough: try once before the slow update
            _run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], env=env,
                 log_path=log_path, timeout=APT_TIMEOUT_S)
        except SourcesUnavailable:
            _run(["apt-get", "update", "-q"], env=env, log_path=log_path, timeout=APT_TIMEOUT_S)
            _run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], env=env,
                 log_path=log_path, timeout=APT_TIMEOUT_S)
    still = [p for p in pkgs if _apt_version(p) is None]
    if still:
        raise SourcesUnavailable(f"apt-get did not install {' '.join(still)}; see {log_path}")


def _apt_files(pkg: str, src: Source) -> list[str]:
    r = subprocess.run(["dpkg", "-L", pkg], capture_output=True, text=True, check=True)
    pattern = re.compile(src.path_re) if src.path_re else None
    return sorted(p for p in r.stdout.splitlines()
                  if p.endswith(src.exts) and os.path.isfile(p) and not os.path.islink(p)
                  and (pattern is None or pattern.search(p)))


# ---------------------------------------------------------------------------------------------------------- npm


def _npm_install(prefix: str, specs: tuple[str, ...], log_path: str) -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise SourcesUnavailable(f"npm packages {' '.join(specs)} are needed and there is no npm on PATH "
                                 "(Debian: apt-get install npm)")
    env = dict(os.environ, npm_config_update_notifier="false", npm_config_fund="false", npm_config_audit="false",
               npm_config_loglevel="warn")
    _say(f"installing npm packages {' '.join(specs)} into {prefix} (log: {log_path})")
    _run([npm, "install", "--prefix", prefix, "--no-save", "--no-package-lock", "--ignore-scripts", *specs],
         env=env, log_path=log_path, timeout=NPM_TIMEOUT_S)


def _npm_packages(prefix: str) -> list[tuple[str, str, str]]:
    """(name, version, folder) of every package installed under prefix/node_modules (scoped ones too)."""
    root = os.path.join(prefix, "node_modules")
    out = []
    for name in sorted(os.listdir(root)):
        if name.startswith("."):
            continue
        dirs = [os.path.join(name, d) for d in sorted(os.listdir(os.path.join(root, name)))] if name.startswith("@") \
            else [name]
        for d in dirs:
            try:
                with open(os.path.join(root, d, "package.json"), encoding="utf-8") as fh:
                    version = json.load(fh).get("version", "?")
            except (OSError, ValueError):
                continue
            out.append((d, version, os.path.join(root, d)))
    return out


# ---------------------------------------------------------------------------------------------------------- copy


def _copy(files: list[str], base: str, dest: str) -> tuple[int, int]:
    n_lines = 0
    for f in files:
        target = os.path.join(dest, os.path.relpath(f, base))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(f, target)
        with open(f, "rb") as fh:
            n_lines += fh.read().count(b"\n")
    return len(files), n_lines


def ensure(language: str) -> str:
    """The folder holding `language`'s third-party sources, installed and copied first when missing."""
    if language not in SOURCES:
        raise SourcesUnavailable(f"no sources for {language!r}; known: {', '.join(SOURCES)}")
    src = SOURCES[language]
    target = lang_dir(language)
    marker = os.path.join(target, ".complete")
    with _locked(target + ".lock"):
        if os.path.exists(marker) and open(marker).read().strip() == _key(src):
            return target
        shutil.rmtree(target, ignore_errors=True)
        work = target + ".part"
        shutil.rmtree(work, ignore_errors=True)
        os.makedirs(work)
        rows = []
        if src.apt:
            _ensure_apt(src.apt)
            for pkg in src.apt:
                files = _apt_files(pkg, src)
                if not files:
                    raise SourcesUnavailable(f"Debian package {pkg} has no {'/'.join(src.exts)} files where expected")
                base = os.path.commonpath([os.path.dirname(f) for f in files])
                n, lines = _copy(files, base, os.path.join(work, pkg))
                rows.append((pkg, _apt_version(pkg) or "?", "debian", n, lines))
        if src.npm:
            prefix = os.path.join(tools_dir(), "lang-src", f"npm-{language}")
            shutil.rmtree(prefix, ignore_errors=True)
            os.makedirs(prefix)
            _npm_install(prefix, src.npm, os.path.join(tools_dir(), "lang-src", f"npm-{language}.log"))
            keep = re.compile(src.npm_keep) if src.npm_keep else None
            for name, version, folder in _npm_packages(prefix):
                files = []
                for dirpath, dirnames, filenames in os.walk(folder):
                    dirnames[:] = sorted(d for d in dirnames if d != "node_modules")
                    for fn in sorted(filenames):
                        path = os.path.join(dirpath, fn)
                        rel = os.path.join(name, os.path.relpath(path, folder))  # rxjs/src/…
                        if fn.endswith(src.exts) and not fn.endswith((".min.js", ".d.ts")) and \
                                (keep is None or keep.search(rel)) and os.path.isfile(path):
                            files.append(path)
                if files:
                    n, lines = _copy(files, folder, os.path.join(work, name))
                    rows.append((name, version, "npm", n, lines))
        if not rows:
            raise SourcesUnavailable(f"no {language} files were installed")
        with open(os.path.join(work, "PACKAGES.tsv"), "w") as fh:  # .tsv: not a language `eval repo` reads
            fh.write("package\tversion\tfrom\tfiles\tlines\n")
            for row in rows:
                fh.write("\t".join(str(x) for x in row) + "\n")
        with open(os.path.join(work, ".complete"), "w") as fh:
            fh.write(_key(src) + "\n")
        os.rename(work, target)
        _say(f"{language}: {sum(r[3] for r in rows)} files, {sum(r[4] for r in rows):,} lines from "
             f"{len(rows)} packages in {target}")
    return target


def packages(language: str) -> list[dict]:
    """PACKAGES.tsv of an installed language, as dicts."""
    with open(os.path.join(lang_dir(language), "PACKAGES.tsv")) as fh:
        head, *rows = [ln.rstrip("\n").split("\t") for ln in fh if ln.strip()]
    return [dict(zip(head, r)) for r in rows]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lang", default=",".join(SOURCES), help=f"comma-separated, of {', '.join(SOURCES)}")
    a = ap.parse_args(argv)
    try:
        for lang in [x for x in a.lang.split(",") if x]:
            print(ensure(lang))
    except SourcesUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
