"""report.json, REPORT.md and the quality-against-size plot."""

from __future__ import annotations

import json
import math
import os
import platform
import time

import numpy as np

from codefill.eval.png import text, write_png

from .gguf_io import atomic_path

# Point colours of the plot drawn without matplotlib (REPORT.md lists which file has which).
PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]


def build(name: str, reference: str, metrics: dict, corpus: dict, settings: dict, imatrix, mixed: dict | None,
          timings: dict, arch: str | None) -> dict:
    import llama_cpp

    rows = [m for k, m in metrics.items() if k != "reference"]
    rows.sort(key=lambda m: m["size_bytes"])
    return {
        "model": name,
        "architecture": arch,
        "reference": {"file": os.path.basename(reference), **metrics["reference"]},
        "results": rows,
        "corpus": corpus,
        "imatrix": {"file": "imatrix.gguf", "entries": len(imatrix.sums), "chunks": imatrix.chunk_count,
                    "chunk_size": imatrix.chunk_size, "datasets": imatrix.datasets},
        "mixed": mixed,
        "settings": settings,
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "environment": {"llama_cpp_python": getattr(llama_cpp, "__version__", "?"), "python": platform.python_version(),
                        "machine": platform.machine(), "cpus": os.cpu_count(),
                        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())},
    }


def _f(x, fmt):
    return "—" if x is None else format(x, fmt)


def markdown(r: dict) -> str:
    ref = r["reference"]
    lines = [
        f"# Quantization report: {r['model']}",
        "",
        f"Reference: `{ref['file']}` ({ref['size_bytes']:,} bytes), architecture {r['architecture']}. "
        f"Held-out code: {r['corpus']['heldout_files']} files never used for calibration, "
        f"{r['corpus']['heldout_chars']:,} characters; {ref['scored_tokens']:,} scored tokens "
        f"(second half of each {512}-token chunk, as `llama-perplexity --kl-divergence -c 512`). "
        f"Importance matrix: {r['imatrix']['chunks']} chunks × {r['imatrix']['chunk_size']} tokens of "
        f"{', '.join(r['imatrix']['datasets'])}.",
        "",
        f"Reference perplexity {_f(ref['perplexity'], '.3f')}, line exact match "
        f"{_f(ref['line_exact_match'], '.0%')} of {ref['lines']} held-out lines, prompt "
        f"{_f(ref['prompt_tokens_per_s'], '.0f')} tok/s, generation {_f(ref['gen_tokens_per_s'], '.1f')} tok/s.",
        "",
        "| file | size (bytes) | bpw | mean KLD | 99% KLD | same top token | perplexity | line exact | same line as F16 | prompt tok/s | gen tok/s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in r["results"]:
        lines.append(
            f"| {m['label']} | {m['size_bytes']:,} | {m['bits_per_weight']:.2f} | {_f(m['mean_kld'], '.5f')} ± "
            f"{_f(m['kld_sem'], '.5f')} | {_f(m['p99_kld'], '.3f')} | {_f(m['same_top_token'], '.1%')} | "
            f"{_f(m['perplexity'], '.3f')} | {_f(m['line_exact_match'], '.0%')} | "
            f"{_f(m.get('line_same_as_reference'), '.0%')} | {_f(m['prompt_tokens_per_s'], '.0f')} | "
            f"{_f(m['gen_tokens_per_s'], '.1f')} |"
        )
    lines += ["", "Speeds are measured during the evaluation on this machine (single runs, other load possible); "
              "sizes and KLD are exact and reproducible.", ""]
    for mx in r.get("mixed") or []:
        lines += [
            f"## Mixed recipe: {mx['label']}",
            "",
            f"Target {mx['target_size']:,} bytes; predicted KLD {mx['predicted_kld']:.4f}; "
            f"types chosen: {', '.join(f'{k}×{v}' for k, v in sorted(mx['types'].items()))}"
            + (f"; excluded: {', '.join(mx['excluded_types'])}" if mx.get("excluded_types") else "") + ".",
            "",
        ]
        share = mx.get("grid_aligned_share") or 0.0
        if share > 0.5 and not mx.get("excluded_types"):
            lines += [
                f"**Caveat:** for {share:.0%} of the tensors Q4_1 reproduces the reference almost exactly (weighted "
                "error below 1/1000 of Q4_0's): the reference weights already lie on a Q4_1 grid (an F16 made "
                "from a Q4_1 file, as for the embedded SmolLM2). This recipe's low KLD reflects that reference, "
                "not a better quantizer; the `--exclude-grid-aligned` recipe (no Q4_1/Q5_1) is the fair "
                "comparison with llama.cpp's mixes, which never choose Q4_1.",
                "",
            ]
    if r.get("mixed"):
        lines += [
            "How the mixed recipe differs from llama.cpp's mixes: llama.cpp picks types by tensor role and layer "
            "position with fixed rules (e.g. Q4_K_M: Q6_K for half the attn_v/ffn_down layers), and on rows that are "
            "not a multiple of 256 falls back to fixed legacy types (Q4_K→Q5_0, Q6_K→Q8_0). The mixed recipe "
            "measures each tensor's importance-weighted quantization error for every candidate type, calibrates "
            "error to KL divergence with in-place probes on the reference model, and spends the byte budget where "
            "it buys the most KLD.",
            "",
        ]
    lines += ["## Settings", "", "```", json.dumps(r["settings"], indent=1), "```", "",
              f"Timings (s): {r['timings_s']}. Environment: {r['environment']}.", ""]
    return "\n".join(lines)


def plot(path: str, r: dict) -> None:
    pts = [(m["size_bytes"] / 1e6, m["mean_kld"], m["label"]) for m in r["results"] if m["mean_kld"] is not None]
    try:
        import matplotlib  # optional

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7.2, 4.8))
        for x, y, label in pts:
            ax.scatter([x], [y])
            ax.annotate(label, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_yscale("log")
        ax.set_xlabel("file size (MB)")
        ax.set_ylabel("mean KL divergence vs reference")
        ax.set_title(r["model"])
        fig.tight_layout()
        fig.savefig(path, dpi=100, format="png")
        plt.close(fig)
    except ImportError:
        scatter(path, [(x, y, i) for i, (x, y, _l) in enumerate(pts)])


def scatter(path: str, points: list[tuple[float, float, int]], width: int = 720, height: int = 480) -> None:
    """The plot without matplotlib: points (size in MB, mean KLD, colour index), x linear, y log10."""
    img = np.full((height, width, 3), 255, dtype=np.uint8)
    ml, mr, mt, mb = 70, 20, 20, 50
    xs = [p[0] for p in points]
    ys = [math.log10(max(p[1], 1e-6)) for p in points]
    x0, x1 = min(xs) * 0.97, max(xs) * 1.03
    y0, y1 = math.floor(min(ys)), math.ceil(max(ys))
    if y1 == y0:
        y1 += 1

    def px(x, y):
        return (int(ml + (x - x0) / (x1 - x0) * (width - ml - mr)),
                int(height - mb - (y - y0) / (y1 - y0) * (height - mt - mb)))

    img[mt:height - mb, ml] = 0
    img[height - mb, ml:width - mr] = 0
    for e in range(int(y0), int(y1) + 1):
        _, yy = px(x0, e)
        img[yy, ml:width - mr] = (220, 220, 220)
        text(img, 8, yy - 5, f"1e{e}")
    for k in range(5):
        xv = x0 + (x1 - x0) * k / 4
        xx, _ = px(xv, y0)
        img[height - mb:height - mb + 6, xx] = 0
        text(img, xx - 16, height - mb + 12, f"{xv:.0f}MB")
    for (x, _, c), y in zip(points, ys):
        cx, cy = px(x, y)
        col = PALETTE[c % len(PALETTE)]
        img[max(cy - 5, 0):cy + 6, max(cx - 5, 0):cx + 6] = col
    write_png(path, img)


def write(out_dir: str, r: dict) -> tuple[str, str, str]:
    pj = os.path.join(out_dir, "report.json")
    pm = os.path.join(out_dir, "REPORT.md")
    pp = os.path.join(out_dir, "quality-vs-size.png")
    with atomic_path(pj) as tmp, open(tmp, "w") as fh:
        json.dump(r, fh, indent=1)
    md = markdown(r)
    pts = [m for m in r["results"] if m["mean_kld"] is not None]
    md += "\n## Plot\n\n![mean KLD against file size](quality-vs-size.png)\n\nColours (when drawn without matplotlib): " + \
        ", ".join(f"{m['label']} = rgb{PALETTE[i % len(PALETTE)]}" for i, m in enumerate(pts)) + ".\n"
    with atomic_path(pm) as tmp, open(tmp, "w") as fh:
        fh.write(md)
    if pts:
        with atomic_path(pp) as tmp:
            plot(tmp, r)
    return pj, pm, pp
