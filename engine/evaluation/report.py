"""Results on disk: results.json (every task and sample, summary, model hash, settings) and results.md."""

from __future__ import annotations

import json
import os
import time

from .runner import EvalReport


def default_out_dir(kind: str) -> str:
    return os.path.join("runs", f"eval-{kind}-{time.strftime('%Y%m%d-%H%M%S')}")


def summary_table(summary: dict) -> str:
    rows = ["| metric | value |", "|---|---|"]
    for k, v in summary.items():
        if isinstance(v, float) and (k.startswith("pass@") or k in ("exact_match", "edit_similarity")):
            v = f"{100 * v:.1f}%"
        rows.append(f"| {k} | {v} |")
    return "\n".join(rows)


def write(report: EvalReport, out_dir: str, title: str) -> tuple[str, str]:
    os.makedirs(out_dir, exist_ok=True)
    jpath = os.path.join(out_dir, "results.json")
    with open(jpath + ".tmp", "w", encoding="utf-8") as fh:
        json.dump(report.to_dict(), fh, indent=1)
    os.replace(jpath + ".tmp", jpath)
    m = report.meta
    model = m.get("model", {})
    md = [
        f"# {title}",
        "",
        f"- model: `{model.get('name')}` (sha256 `{str(model.get('sha256', ''))[:16]}…`, family {model.get('family')})",
        f"- codefill {m.get('codefill_version')}, seed {m.get('seed')}, samples {m.get('samples')}, "
        f"temperature {m.get('temperature')}, completion mode {m.get('completion_mode')}",
        "",
        summary_table(report.summary),
        "",
    ]
    mpath = os.path.join(out_dir, "results.md")
    with open(mpath, "w", encoding="utf-8") as fh:
        fh.write("\n".join(md))
    return jpath, mpath
