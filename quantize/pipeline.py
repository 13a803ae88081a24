"""`codefill quantize`: source → F16 GGUF → importance matrix → quantized GGUF files → evaluation → report.

Every stage writes its output atomically (a `.part` file renamed at the end) and is skipped when the output already
exists, so an interrupted run resumes where it stopped and never leaves a half-written file under a final name.
All checks that can fail (source kind, architecture, tokenizer, weights, disk space, calibration text) run before
the first long stage.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

from codefill.engine.errors import DownloadError, ModelFormatError, ModelNotFoundError

from . import convert as convert_mod
from . import corpus as corpus_mod
from . import evaluate as eval_mod
from . import ggml
from . import imatrix as imatrix_mod
from . import mixed as mixed_mod
from . import report as report_mod
from .errors import ConfigError, TargetSizeError
from .gguf_io import check_disk, field_value, open_reader
from .quant import Source, quantize_file, quantize_mix
from .recipes import MIXES
from .safetensors import SafetensorsFile

DEFAULT_TYPES = ["Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q3_K_M"]
Progress = Callable[[str, float], None]


def parse_size(text: str) -> int:
    """'90MB' → 90_000_000, '100MiB' → 104_857_600, '105454144' → bytes."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([kKmMgG]?)(i?)[bB]?\s*", text or "")
    if not m:
        raise ConfigError(f"cannot read size {text!r} (examples: 90MB, 100MiB, 105454144)")
    num, unit, binary = float(m.group(1)), m.group(2).upper(), bool(m.group(3))
    mult = {"": 1, "K": 1, "M": 2, "G": 3}[unit]
    return int(num * (1024 if binary else 1000) ** mult) if unit else int(num)


@dataclass
class Options:
    source: str
    out_dir: str
    types: list[str] = field(default_factory=lambda: list(DEFAULT_TYPES))
    target_size: int | None = None
    calibration: list[str] | None = None
    out_type: str = "F16"
    imatrix_chunks: int = 60
    eval_chunks: int | None = 16
    eval_lines: int = 16
    probe_chunks: int = 1
    compare_stock: bool = False  # also write each --types mix without the importance matrix
    exclude_grid_aligned: bool = False  # the mixed recipe may not use Q4_1/Q5_1 (see REPORT.md)
    evaluate: bool = True
    n_threads: int | None = None


@dataclass
class Result:
    out_dir: str
    reference: str
    imatrix: str
    files: dict[str, str]
    report_json: str | None = None
    report_md: str | None = None
    plot: str | None = None
    mixed: dict | None = None
    timings: dict[str, float] = field(default_factory=dict)


def _looks_like_repo_id(s: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", s)) and not os.path.exists(s)


def resolve_source(source: str, out_dir: str, progress: Progress | None = None) -> tuple[str, str]:
    """('hf', directory) or ('gguf', path); downloads a Hugging Face repo id into out_dir/hf-model."""
    if os.path.isdir(source):
        return "hf", source
    if os.path.isfile(source):
        with open(source, "rb") as fh:
            if fh.read(4) != b"GGUF":
                raise ModelFormatError(f"{source} is neither a GGUF file nor a Hugging Face model directory")
        return "gguf", source
    if _looks_like_repo_id(source):
        return "hf", download(source, os.path.join(out_dir, "hf-model"), progress)
    raise ModelNotFoundError(f"no such file, directory or Hugging Face repo id: {source}")


def download(repo_id: str, dest: str, progress: Progress | None = None) -> str:
    """Fetch config, tokenizer and safetensors weights of a Hugging Face repo (nothing else)."""
    try:
        from huggingface_hub import HfApi, snapshot_download
    except ImportError:  # pragma: no cover - a declared dependency
        raise DownloadError("huggingface-hub is not installed") from None
    patterns = ["*.json", "*.safetensors", "tokenizer.model", "*.txt"]
    if os.path.exists(os.path.join(dest, "config.json")) and any(f.endswith(".safetensors") for f in os.listdir(dest)):
        return dest
    try:
        info = HfApi().model_info(repo_id, files_metadata=True)
        need = sum((s.size or 0) for s in info.siblings or [] if s.rfilename.endswith((".safetensors", ".json")))
    except Exception as exc:
        raise DownloadError(f"{repo_id} is not a local path, and Hugging Face cannot be asked for it as a repo id: "
                            f"{type(exc).__name__}: {exc}") from None
    check_disk(os.path.dirname(os.path.abspath(dest)) or ".", need * 3, f"{repo_id} and its conversions")
    if progress:
        progress("download", 0.0)
    tmp = dest + ".part"
    try:
        snapshot_download(repo_id, local_dir=tmp, allow_patterns=patterns)
    except Exception as exc:
        raise DownloadError(f"download of {repo_id} failed: {type(exc).__name__}: {exc}") from None
    if os.path.exists(dest):
        shutil.rmtree(dest)
    os.replace(tmp, dest)
    if progress:
        progress("download", 1.0)
    return dest


def _model_name(kind: str, path: str) -> str:
    base = os.path.basename(os.path.normpath(path))
    if kind == "gguf":
        base = re.sub(r"\.gguf$", "", base)
        base = re.sub(r"[-.](F16|BF16|F32|f16|bf16|f32)$", "", base)
    return re.sub(r"[^\w.-]+", "-", base) or "model"


def run(opts: Options, progress: Progress | None = None) -> Result:
    p = progress or (lambda _s, _f: None)
    types = [t.upper() for t in opts.types]
    for t in types:
        if t not in MIXES or t in ("F16", "BF16", "F32"):
            raise ConfigError(f"unknown quantization type {t!r}; choose from "
                              f"{', '.join(k for k in MIXES if k not in ('F16', 'BF16', 'F32'))}")
    os.makedirs(opts.out_dir, exist_ok=True)
    timings: dict[str, float] = {}

    # ---- checks before any long work
    kind, src_path = resolve_source(opts.source, opts.out_dir, p)
    if kind == "hf":
        hf = convert_mod.inspect_hf(src_path)
        name = _model_name(kind, src_path if src_path != os.path.join(opts.out_dir, "hf-model") else opts.source)
        weights = sum(os.path.getsize(f) for f in hf.weight_files)
        ref_path = os.path.join(opts.out_dir, f"{name}-{opts.out_type}.gguf")
        src_bytes_f16 = weights * (2 if opts.out_type != "F32" else 4) // max(1, _bytes_per_weight(hf))
    else:
        Source(src_path)  # refuses an already-quantized GGUF, with a clear message
        name = _model_name(kind, src_path)
        ref_path = src_path
        src_bytes_f16 = os.path.getsize(src_path)
    corpus = corpus_mod.build(opts.calibration)
    need = (0 if os.path.exists(ref_path) else src_bytes_f16) + int(
        src_bytes_f16 * 0.6 * (len(types) * (2 if opts.compare_stock else 1) + (1 if opts.target_size else 0)))
    check_disk(opts.out_dir, need, "the converted and quantized files")
    if opts.target_size is not None and opts.target_size < src_bytes_f16 * 0.15:
        raise TargetSizeError(f"target size {opts.target_size:,} bytes is far below what 3-bit types reach for this model")

    # ---- 1. convert
    t0 = time.perf_counter()
    if kind == "hf" and not os.path.exists(ref_path):
        convert_mod.convert(src_path, ref_path, opts.out_type, progress=lambda f: p("convert", f))
    p("convert", 1.0)
    timings["convert"] = time.perf_counter() - t0

    # ---- 2. importance matrix
    t0 = time.perf_counter()
    im_path = os.path.join(opts.out_dir, "imatrix.gguf")
    if os.path.exists(im_path):
        im = imatrix_mod.ImportanceMatrix.load(im_path)
    else:
        im = imatrix_mod.collect(ref_path, corpus.calibration, max_chunks=opts.imatrix_chunks, n_threads=opts.n_threads,
                                 dataset_name=imatrix_mod.dataset_label(opts.calibration),
                                 progress=lambda f: p("importance matrix", f))
        im.save(im_path)
    p("importance matrix", 1.0)
    timings["imatrix"] = time.perf_counter() - t0

    # ---- 3. quantize
    src = Source(ref_path)
    files: dict[str, str] = {}
    n_th = opts.n_threads or 2
    t0 = time.perf_counter()
    jobs = [(t, True) for t in types] + ([(t, False) for t in types] if opts.compare_stock else [])
    for i, (t, with_im) in enumerate(jobs):
        label = t if with_im else f"{t} (no imatrix)"
        path = os.path.join(opts.out_dir, f"{name}-{t}{'' if with_im else '-noimatrix'}.gguf")
        if not os.path.exists(path):
            quantize_mix(src, path, t, imatrix=im if with_im else None, n_threads=n_th,
                         progress=lambda f, i=i: p("quantize", (i + f) / (len(jobs) + (1 if opts.target_size else 0))))
        files[label] = path
    timings["quantize"] = time.perf_counter() - t0

    mixed_info = None
    if opts.target_size is not None:
        t0 = time.perf_counter()
        sens_path = os.path.join(opts.out_dir, "sensitivity.json")
        if os.path.exists(sens_path):
            sens = mixed_mod.load(sens_path)
        else:
            probe_text = _probe_text(corpus, opts.imatrix_chunks)
            sens = mixed_mod.measure(src, im, probe_text, probe_chunks=opts.probe_chunks, n_threads=opts.n_threads,
                                     progress=lambda stage, f: p(stage, f))
            mixed_mod.save(sens, sens_path)
        timings["sensitivity"] = time.perf_counter() - t0
        overhead = os.path.getsize(ref_path) - src.plan_bytes({t.name: "KEEP" for t in src.tensors})
        keep = sum(ggml.row_size(src.types[t.name], t.n_per_row) * (t.n_elements // t.n_per_row)
                   for t in src.tensors if t.name not in sens.errors)
        budget = opts.target_size - overhead - keep - 4096 - 32 * len(src.tensors)
        exclude = mixed_mod.GRID_ALIGNED if opts.exclude_grid_aligned else set()
        plan, predicted, used = mixed_mod.allocate(sens, budget, exclude)
        full_plan = {t.name: plan.get(t.name, "KEEP") for t in src.tensors}
        size_tag = f"{opts.target_size / 1e6:.0f}MB" if opts.target_size >= 10_000_000 else f"{opts.target_size}B"
        tag = f"mixed-{size_tag}" + ("-nogrid" if opts.exclude_grid_aligned else "")
        path = os.path.join(opts.out_dir, f"{name}-{tag}.gguf")
        if not os.path.exists(path):
            size = quantize_file(src, path, full_plan, imatrix=im, n_threads=n_th,
                                 extra_kv={"codefill.quantize.recipe": f"mixed target {opts.target_size}"},
                                 progress=lambda f: p("quantize", f))
            if size > opts.target_size:  # pragma: no cover - the budget keeps a margin
                os.remove(path)
                raise TargetSizeError(f"mixed file came out at {size:,} bytes, over the target {opts.target_size:,}")
        label = f"mixed {opts.target_size / 1e6:.1f} MB" if opts.target_size >= 10_000_000 else \
            f"mixed {opts.target_size:,} B"
        label += " (no Q4_1/Q5_1)" if opts.exclude_grid_aligned else ""
        files[label] = path
        from collections import Counter

        mixed_info = {"label": label, "target_size": opts.target_size, "predicted_kld": predicted, "tensor_bytes": used,
                      "types": dict(Counter(plan.values())), "plan": plan, "probes": sens.probes,
                      "excluded_types": sorted(exclude), "grid_aligned_share": mixed_mod.grid_aligned_share(sens)}
        timings["mixed"] = time.perf_counter() - t0

    result = Result(opts.out_dir, ref_path, im_path, files, mixed=mixed_info, timings=timings)
    # ---- 4. evaluate and report
    if opts.evaluate:
        t0 = time.perf_counter()
        metrics = eval_mod.evaluate(ref_path, files, corpus.heldout, heldout_files=corpus.heldout_files,
                                    max_chunks=opts.eval_chunks, n_lines=opts.eval_lines, n_threads=opts.n_threads,
                                    progress=lambda f: p("evaluate", f))
        timings["evaluate"] = time.perf_counter() - t0
        settings = {k: v for k, v in asdict(opts).items() if k not in ("out_dir",)}
        report = report_mod.build(name, ref_path, metrics, corpus.describe(), settings, im,
                                  [mixed_info] if mixed_info else None, timings,
                                  field_value(open_reader(ref_path), "general.architecture"))
        result.report_json, result.report_md, result.plot = report_mod.write(opts.out_dir, report)
    return result


def _bytes_per_weight(hf) -> int:
    f = SafetensorsFile(hf.weight_files[0])
    k = next((k for k in f.keys() if len(f.shape(k)) == 2), None)
    if k is None:
        return 2
    return {"F32": 4, "F16": 2, "BF16": 2, "F64": 8}.get(f.dtype(k), 2)


def _probe_text(corpus, imatrix_chunks: int) -> str:
    """Calibration text after the part the importance matrix used (≈ 4 characters per token)."""
    start = min(len(corpus.calibration) * 3 // 4, imatrix_chunks * 512 * 4)
    return corpus.calibration[start:]
