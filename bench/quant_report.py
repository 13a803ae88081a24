"""Quantization benchmark: the embedded SmolLM2-135M through `codefill quantize`, against llama.cpp's stock numbers.

    python bench/quant_report.py --work /tmp/quant-bench [--eval-chunks 16] [--eval-lines 12]

1. Rebuilds the embedded model's Hugging Face directory (dequantized Q4_1 → F16 safetensors, config, tokenizer).
2. Runs the pipeline (convert → importance matrix on 60×512 tokens of the stdlib calibration split → llama.cpp mixes
   with and without the importance matrix → mixed recipe at the stock Q4_K_M size, once with every candidate type
   and once without the Q4_1/Q5_1 types that can reproduce the reference's own Q4_1 grid).
3. Evaluates the files side by side against the F16 reference on the held-out split of
   docs/quantization-baseline.md (first --eval-chunks of its 95 chunks) and prints a table next to the stock
   llama-quantize / llama-imatrix figures from that document. Writes REPORT.md, report.json and the plot into
   WORK/out. Stages already done in WORK are reused.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

STOCK = {  # docs/quantization-baseline.md: (size, mean KLD, mean KLD with code imatrix)
    "Q8_0": (144_811_072, 0.00374, 0.00374),
    "Q6_K": (138_382_912, 0.00857, 0.00680),
    "Q5_K_M": (112_103_488, 0.06560, 0.00623),
    "Q4_K_M": (105_454_144, 0.05371, 0.02895),
    "Q3_K_M": (93_510_208, 0.12369, 0.07906),
    "Q2_K": (88_201_792, 0.39084, 0.24044),
}
TARGET = 105_454_144


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="/tmp/quant-bench")
    ap.add_argument("--eval-chunks", type=int, default=16, help="held-out chunks (0 = all 95, as the baseline)")
    ap.add_argument("--eval-lines", type=int, default=12)
    ap.add_argument("--types", default="Q8_0,Q5_K_M,Q4_K_M,Q3_K_M")
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args()

    from codefill.engine.models import embedded_model_path
    from codefill.quantize import corpus as corpus_mod
    from codefill.quantize import evaluate, report
    from codefill.quantize.hfexport import export_llama
    from codefill.quantize.imatrix import ImportanceMatrix
    from codefill.quantize.pipeline import Options, run

    hf = os.path.join(a.work, "SmolLM2-135M-Instruct")
    out = os.path.join(a.work, "out")
    if not os.path.exists(os.path.join(hf, "model.safetensors")):
        export_llama(embedded_model_path(), hf)
    types = [t for t in a.types.split(",") if t]
    t0 = time.time()

    def prog(stage, f):
        sys.stderr.write(f"\r{stage:<20} {f:6.1%}  {time.time() - t0:7.0f}s")
        sys.stderr.flush()

    files: dict[str, str] = {}
    mixed_info = []
    for nogrid in (False, True):
        opts = Options(source=hf, out_dir=out, types=types, target_size=TARGET, compare_stock=True,
                       exclude_grid_aligned=nogrid, evaluate=False, n_threads=a.threads)
        res = run(opts, progress=prog)
        files.update(res.files)
        mixed_info.append(res.mixed)
    sys.stderr.write("\n")
    keep = {k: v for k, v in files.items() if not (k.endswith("(no imatrix)") and not k.startswith("Q4_K_M"))}
    corpus = corpus_mod.build()
    t1 = time.time()
    metrics = evaluate.evaluate(res.reference, keep, corpus.heldout, heldout_files=corpus.heldout_files,
                                max_chunks=a.eval_chunks or None, n_lines=a.eval_lines, n_threads=a.threads,
                                progress=lambda f: prog("evaluate", f))
    sys.stderr.write("\n")
    im = ImportanceMatrix.load(res.imatrix)
    settings = {"command": "python bench/quant_report.py " + " ".join(sys.argv[1:]), "eval_chunks": a.eval_chunks,
                "eval_lines": a.eval_lines, "types": types, "target_size": TARGET}
    rep = report.build("SmolLM2-135M-Instruct", res.reference, metrics, corpus.describe(), settings, im, mixed_info,
                       {"evaluate": time.time() - t1}, "llama")
    rep["stock_llama_cpp"] = {k: {"size_bytes": s, "mean_kld": k0, "mean_kld_imatrix": k1}
                              for k, (s, k0, k1) in STOCK.items()}
    report.write(out, rep)

    print(f"\nheld-out: {metrics['reference']['scored_tokens']} scored tokens "
          f"({a.eval_chunks or 95} of 95 chunks); F16 perplexity {metrics['reference']['perplexity']:.3f}")
    print(f"{'file':<34} {'bytes':>12} {'bpw':>5} {'meanKLD':>9} {'±sem':>8} {'p99KLD':>7} {'top1':>6} "
          f"{'ppl':>7} {'line':>5} {'=F16':>5} {'pp t/s':>7} {'tg t/s':>7} | stock KLD (no im / im)")
    for lab, m in sorted(metrics.items(), key=lambda kv: -kv[1]["size_bytes"]):
        if lab == "reference":
            continue
        base = lab.split(" ")[0]
        st = STOCK.get(base)
        stock = f"{st[1]:.5f} / {st[2]:.5f}" if st else ""
        print(f"{lab:<34} {m['size_bytes']:>12,} {m['bits_per_weight']:>5.2f} {m['mean_kld']:>9.5f} "
              f"{m['kld_sem']:>8.5f} {m['p99_kld']:>7.3f} {m['same_top_token']:>6.1%} {m['perplexity']:>7.3f} "
              f"{m['line_exact_match']:>5.0%} {m['line_same_as_reference']:>5.0%} {m['prompt_tokens_per_s']:>7.0f} "
              f"{m['gen_tokens_per_s']:>7.1f} | {stock}")
    q4 = metrics.get("Q4_K_M (no imatrix)", {}).get("mean_kld")
    q4i = metrics.get("Q4_K_M", {}).get("mean_kld")
    for lab, m in metrics.items():
        if lab.startswith("mixed"):
            ok = m["size_bytes"] <= TARGET
            print(f"\n{lab}: {m['size_bytes']:,} bytes (≤ {TARGET:,}: {ok}); mean KLD {m['mean_kld']:.5f} = "
                  f"{m['mean_kld'] / q4:.2f}× our Q4_K_M, {m['mean_kld'] / q4i:.2f}× our Q4_K_M+imatrix "
                  f"(same chunks); vs stock full-set figures: {m['mean_kld'] / STOCK['Q4_K_M'][1]:.2f}× and "
                  f"{m['mean_kld'] / STOCK['Q4_K_M'][2]:.2f}×; target ≤ 0.032 and ≤ 0.0246: "
                  f"{m['mean_kld'] <= 0.032 and m['mean_kld'] <= 0.0246}")
    print(f"\nreport: {os.path.join(out, 'REPORT.md')}")


if __name__ == "__main__":
    main()
