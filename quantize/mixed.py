"""The mixed recipe: measure how much each tensor's quantization costs, then choose per-tensor types for a size.

1. Weighted error. For every quantizable tensor t and every candidate type q that fits its rows, quantize with ggml
   (importance matrix applied) and measure E(t, q) = Σ_j imp_j Σ_i (W_ij − Ŵ_ij)², the expected squared error of the
   matrix product on calibration activations (imp_j = mean squared activation of input column j).
2. Sensitivity, measured. E is output error energy, not loss: the same energy hurts more in some layers and some
   roles than others. The F16 reference is loaded into writable memory; probe by probe, a group of weights is
   replaced in place by its quantized values (Q4_0 with the importance matrix), calibration text that neither the
   importance matrix nor the evaluation uses is run, and the KL divergence from the untouched model's logits is
   measured; then the weights are restored. Probes: each role across all layers (attn_q, attn_k, …, ffn_down), each
   layer across all roles, and the token embedding. A rank-one model c(t) = α_layer · β_role, fitted to those
   probes by iterative proportional fitting, turns E into predicted KLD: KLD(t, q) ≈ c(t) · E(t, q).
3. Allocation. Minimise Σ_t c(t)·E(t, q_t) subject to Σ bytes ≤ budget: start every tensor at its cheapest type and
   repeatedly take the upgrade with the best predicted-KLD reduction per byte (on each tensor's lower convex hull of
   (bytes, KLD) points) while it fits.
"""

from __future__ import annotations

import ctypes
import json
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from . import ggml
from .corpus import chunks
from .errors import TargetSizeError
from .evaluate import log_softmax
from .gguf_io import atomic_path, encode
from .imatrix import ImportanceMatrix
from .llm import EvalModel
from .quant import Source
from .recipes import TensorInfo, category, quantizable

CANDIDATES = ["Q8_0", "Q6_K", "Q5_K", "Q5_1", "Q5_0", "Q4_K", "Q4_1", "IQ4_NL", "Q4_0", "Q3_K"]
# Q4_1 and Q5_1 reproduce a Q4_1 grid exactly (the imatrix search finds its scale and minimum); see REPORT.md.
GRID_ALIGNED = {"Q4_1", "Q5_1"}
MAX_ROWS = 2048  # weighted error is estimated on evenly spaced rows of larger tensors (the token embedding)
PROBE_TYPE = "Q4_0"
ROLES = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"]


@dataclass
class Sensitivity:
    errors: dict[str, dict[str, float]] = field(default_factory=dict)  # tensor → type → weighted error
    bytes: dict[str, dict[str, int]] = field(default_factory=dict)  # tensor → type → bytes
    coef: dict[str, float] = field(default_factory=dict)  # tensor → predicted KLD per unit weighted error
    probes: dict[str, float] = field(default_factory=dict)  # probe label → measured KLD
    seconds: float = 0.0

    def predicted(self, name: str, tname: str) -> float:
        return self.coef.get(name, 0.0) * self.errors[name][tname]

    def to_json(self) -> dict:
        return {"errors": self.errors, "bytes": self.bytes, "coef": self.coef, "probes": self.probes,
                "seconds": self.seconds}

    @classmethod
    def from_json(cls, d: dict) -> "Sensitivity":
        return cls(d["errors"], {k: {q: int(b) for q, b in v.items()} for k, v in d["bytes"].items()},
                   d["coef"], d["probes"], d.get("seconds", 0.0))


def _candidates_for(t: TensorInfo, types: list[str]) -> list[str]:
    return [q for q in types if t.n_per_row % ggml.block_size(ggml.type_id(q)) == 0]


def weighted_errors(src: Source, imatrix: ImportanceMatrix | None, types: list[str], n_threads: int = 2,
                    progress: Callable[[float], None] | None = None) -> tuple[dict, dict]:
    errors: dict[str, dict[str, float]] = {}
    sizes: dict[str, dict[str, int]] = {}
    targets = [t for t in src.tensors if quantizable(t)]
    for i, t in enumerate(targets):
        w = src.values(t.name)
        scale = 1.0
        if w.shape[0] > MAX_ROWS:
            rows = np.linspace(0, w.shape[0] - 1, MAX_ROWS).astype(np.int64)
            scale = w.shape[0] / MAX_ROWS
            w = np.ascontiguousarray(w[rows])
        imp = imatrix.importance(t.name) if imatrix is not None else None
        weight = imp if imp is not None else np.ones(t.n_per_row, np.float32)
        errors[t.name], sizes[t.name] = {}, {}
        for q in _candidates_for(t, types):
            tid = ggml.type_id(q)
            if imp is None and ggml.requires_imatrix(tid):
                continue
            d = ggml.fake_quantize(w, tid, imp, n_threads) - w
            errors[t.name][q] = scale * float(np.einsum("ij,ij,j->", d, d, weight, dtype=np.float64))
            sizes[t.name][q] = ggml.row_size(tid, t.n_per_row) * (t.n_elements // t.n_per_row)
        if progress:
            progress((i + 1) / len(targets))
    return errors, sizes


class _WeightEditor:
    """The reference model in writable memory, with each weight tensor's address found through the eval callback."""

    def __init__(self, path: str, n_ctx: int, n_threads: int | None):
        import llama_cpp

        self.L = ggml.lib()
        self.ptrs: dict[str, int] = {}
        ops = ggml.op_ids()
        wanted = {ops["MUL_MAT"], ops["GET_ROWS"]}

        @llama_cpp.ggml_backend_sched_eval_callback
        def cb(t, ask, _user):  # pragma: no cover - called from C
            try:
                if ask:
                    s = ctypes.cast(t, ctypes.POINTER(ggml.GGMLTensor)).contents
                    if s.op in wanted and s.src[0]:
                        w = s.src[0].contents
                        name = w.name.decode(errors="replace")
                        if name.endswith("weight") and name not in self.ptrs:
                            self.ptrs[name] = ctypes.addressof(w)
                return False
            except Exception:
                return False

        self.model = EvalModel(path, n_ctx=n_ctx, n_threads=n_threads, cb_eval=cb, use_mmap=False, extra_bufts=False)

    def set(self, name: str, values: np.ndarray) -> None:
        p = self.ptrs[name]
        t = ggml.GGMLTensor.from_address(p)
        tname = ggml.type_name(t.type)

        raw = encode(values.reshape(-1, int(t.ne[0])), ggml.type_id(tname))
        n = int(self.L.ggml_nbytes(p))
        if raw.nbytes != n:
            raise RuntimeError(f"size mismatch writing {name}")
        self.L.ggml_backend_tensor_set(p, raw.ctypes.data, 0, n)


def measure(
    src: Source,
    imatrix: ImportanceMatrix | None,
    probe_text: str,
    *,
    types: list[str] | None = None,
    n_ctx: int = 512,
    probe_chunks: int = 1,
    n_threads: int | None = None,
    progress: Callable[[str, float], None] | None = None,
) -> Sensitivity:
    t_start = time.perf_counter()
    types = types or CANDIDATES
    errors, sizes = weighted_errors(src, imatrix, types, n_threads=n_threads or 2,
                                    progress=(lambda f: progress("weighted error", f)) if progress else None)
    ed = _WeightEditor(src.path, n_ctx, n_threads)
    try:
        m = ed.model
        toks = m.tokenize(probe_text, add_special=m.add_bos)
        parts = chunks(toks, n_ctx, probe_chunks)
        if not parts:
            raise TargetSizeError("probe text too short for sensitivity measurement")
        first = n_ctx // 8
        ref = [log_softmax(m.eval_logits(p, first=first)) for p in parts]
        pref = [np.exp(r) for r in ref]

        def kld() -> float:
            vals = []
            for p, lr, pr in zip(parts, ref, pref):
                lq = log_softmax(m.eval_logits(p, first=first))
                vals.append((pr * (lr - lq)).sum(-1))
            return float(np.concatenate(vals).mean())

        tinfo = {t.name: t for t in src.tensors if t.name in errors}
        probe_tid = ggml.type_id(PROBE_TYPE)
        fq_cache: dict[str, np.ndarray] = {}

        def probe(names: list[str]) -> float:
            for n in names:
                if n not in fq_cache:
                    imp = imatrix.importance(n) if imatrix is not None else None
                    fq_cache[n] = ggml.fake_quantize(src.values(n), probe_tid, imp, 2)
                ed.set(n, fq_cache[n])
            try:
                return kld()
            finally:
                for n in names:
                    ed.set(n, src.values(n))
                    fq_cache.pop(n, None)

        base = kld()  # should be 0: the edit path must be exact
        layers = sorted({t.layer for t in tinfo.values() if t.layer is not None})
        roles = [r for r in ROLES if any(category(n) == r for n in tinfo)]
        groups = [("role", r, [n for n in tinfo if category(n) == r and tinfo[n].layer is not None]) for r in roles]
        groups += [("layer", str(layer), [n for n in tinfo if tinfo[n].layer == layer]) for layer in layers]
        others = [n for n in tinfo if tinfo[n].layer is None]
        groups += [("global", n, [n]) for n in others]
        missing = [n for g in groups for n in g[2] if n not in ed.ptrs]
        if missing:
            raise RuntimeError(f"weights not found in the llama.cpp graph: {missing[:3]}")
        sens = Sensitivity(errors, sizes)
        sens.probes["baseline"] = base
        for i, (kind, label, names) in enumerate(groups):
            sens.probes[f"{kind}:{label}"] = max(probe(names) - base, 0.0)
            if progress:
                progress("sensitivity probes", (i + 1) / len(groups))
    finally:
        ed.model.close()
    # fit c = alpha[layer] * beta[role] to the role and layer probes (iterative proportional fitting)
    E = {n: errors[n].get(PROBE_TYPE, 0.0) for n in tinfo}
    alpha = {layer: 1.0 for layer in layers}
    beta = {r: 1.0 for r in roles}
    K = {r: sens.probes[f"role:{r}"] for r in roles}
    Lam = {layer: sens.probes[f"layer:{layer}"] for layer in layers}
    # the two probe families should sum to the same total if effects add; scale to their geometric mean
    tot_k, tot_l = sum(K.values()) or 1e-12, sum(Lam.values()) or 1e-12
    g = (tot_k * tot_l) ** 0.5
    K = {r: v * g / tot_k for r, v in K.items()}
    Lam = {layer: v * g / tot_l for layer, v in Lam.items()}
    blk = [n for n in tinfo if tinfo[n].layer is not None]
    for _ in range(50):
        for r in roles:
            s = sum(alpha[tinfo[n].layer] * E[n] for n in blk if category(n) == r)
            beta[r] = K[r] / s if s > 0 else 0.0
        for layer in layers:
            s = sum(beta[category(n)] * E[n] for n in blk if tinfo[n].layer == layer)
            alpha[layer] = Lam[layer] / s if s > 0 else 0.0
    for n in blk:
        sens.coef[n] = alpha[tinfo[n].layer] * beta[category(n)]
    for n in others:
        sens.coef[n] = sens.probes[f"global:{n}"] / E[n] if E[n] > 0 else 0.0
    sens.seconds = time.perf_counter() - t_start
    return sens


def allocate(sens: Sensitivity, budget_bytes: int, exclude: set[str] | None = None) -> tuple[dict[str, str], float, int]:
    """Per-tensor types minimising predicted KLD within `budget_bytes` of quantized tensor data.

    Returns (plan, predicted KLD, bytes)."""
    exclude = exclude or set()
    hulls: dict[str, list[tuple[int, float, str]]] = {}
    for n, errs in sens.errors.items():
        pts = sorted((sens.bytes[n][q], sens.predicted(n, q), q) for q in errs if q not in exclude)
        # lower convex hull, decreasing loss with increasing bytes
        hull: list[tuple[int, float, str]] = []
        for p in pts:
            if hull and p[1] >= hull[-1][1]:
                continue  # more bytes, no less loss
            while len(hull) >= 2:
                (b1, l1, _), (b2, l2, _) = hull[-2], hull[-1]
                # drop hull[-1] if it lies above the line from hull[-2] to p
                if (l2 - l1) * (p[0] - b1) >= (p[1] - l1) * (b2 - b1):
                    hull.pop()
                else:
                    break
            hull.append(p)
        if not hull:
            raise TargetSizeError(f"no candidate type fits tensor {n}")
        hulls[n] = hull
    pos = {n: 0 for n in hulls}
    used = sum(h[0][0] for h in hulls.values())
    if used > budget_bytes:
        raise TargetSizeError(
            f"the target size is below the smallest mix of the candidate types ({used / 1e6:.1f} MB of tensor data)"
        )
    import heapq

    heap = []

    def push(n):
        i = pos[n]
        h = hulls[n]
        if i + 1 < len(h):
            db = h[i + 1][0] - h[i][0]
            dl = h[i][1] - h[i + 1][1]
            heapq.heappush(heap, (-dl / max(db, 1), n, i))

    for n in hulls:
        push(n)
    skipped = []
    while heap:
        _, n, i = heapq.heappop(heap)
        if pos[n] != i:
            continue
        h = hulls[n]
        db = h[i + 1][0] - h[i][0]
        if used + db <= budget_bytes:
            used += db
            pos[n] = i + 1
            push(n)
        else:
            skipped.append(n)
    plan = {n: hulls[n][pos[n]][2] for n in hulls}
    pred = sum(hulls[n][pos[n]][1] for n in hulls)
    return plan, pred, used


def grid_aligned_share(sens: Sensitivity) -> float:
    """Share of tensors that Q4_1 reproduces almost exactly (weighted error < 1/1000 of Q4_0's).

    High when the reference was itself made from a Q4_1 file (the embedded SmolLM2 is): its weights already lie on
    a Q4_1 grid, which Q4_1 and Q5_1 (with the imatrix search) find again."""
    names = [n for n, e in sens.errors.items() if "Q4_1" in e and e.get("Q4_0", 0) > 0]
    if not names:
        return 0.0
    return sum(1 for n in names if sens.errors[n]["Q4_1"] < 1e-3 * sens.errors[n]["Q4_0"]) / len(names)


def save(sens: Sensitivity, path: str) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w") as fh:
            json.dump(sens.to_json(), fh)


def load(path: str) -> Sensitivity:
    with open(path) as fh:
        return Sensitivity.from_json(json.load(fh))
