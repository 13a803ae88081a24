"""Results on disk: `results.json` (summary, run metadata, every task and sample) and `results.md` (the summary
table and the settings, for notes and pull requests).

results.json: {"summary": {...}, "meta": {"codefill_version", "model": {"path", "name", "sha256", "size", "family",
…}, "engine_config": {...}, "seed", "samples", "temperature", "top_p", "completion_mode", …}, "records": [{"task_id",
"mode", "target", "samples": [{"text", "passed", "status", "exact", "edit_sim", "latency_ms", "stop_reason", …}]}]}
"""

from __future__ import annotations

import json
import os
import time

from .runner import EvalReport

PERCENT_KEYS = ("exact_match", "edit_similarity")


def default_out_dir(kind: str) -> str:
    """`runs/eval-<kind>-<YYYYmmdd-HHMMSS>` under the current directory."""
    return os.path.join("runs", f"eval-{kind}-{time.strftime('%Y%m%d-%H%M%S')}")


def _fmt(key: str, value) -> str:
    if isinstance(value, float) and (key.startswith("pass@") or key.endswith(PERCENT_KEYS)):
        return f"{100 * value:.1f}%"
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items()) or "-"
    return str(value)


def _flat(value) -> bool:
    if isinstance(value, dict):
        return all(isinstance(v, (int, float, str)) for v in value.values())
    return not isinstance(value, list)


def summary_table(summary: dict) -> str:
    """The summary as a two-column Markdown table (rates as percentages)."""
    rows = ["| metric | value |", "|---|---|"]
    # structured results (e.g. the coverage study) are in results.json, not in the table; flat counts (test
    # statuses, stop reasons) fit on one row
    rows += [f"| {k} | {_fmt(k, v)} |" for k, v in summary.items() if _flat(v)]
    return "\n".join(rows)


def markdown(report: EvalReport, title: str | None = None) -> str:
    m = report.meta
    model = m.get("model", {})
    title = title or f"{m.get('benchmark', 'evaluation')} {m.get('mode', '')}".strip()
    cfg = m.get("engine_config", {})
    lines = [
        f"# {title}",
        "",
        f"- model: `{model.get('name')}` (sha256 `{model.get('sha256')}`, {model.get('size')} bytes, "
        f"family {model.get('family')}, threads {model.get('n_threads')})",
        f"- codefill {m.get('codefill_version')}, Python {m.get('python')}, {m.get('platform')}",
        f"- seed {m.get('seed')}, samples {m.get('samples')}, temperature {m.get('temperature')}, top_p {m.get('top_p')}, "
        f"completion mode {m.get('completion_mode')}, max_tokens {m.get('max_tokens') or 'engine default'}; "
        f"requests without time budget or cache (deterministic)",
        f"- engine: n_ctx {cfg.get('n_ctx')}, budget {cfg.get('budget')}, decode {cfg.get('decode')}",
    ]
    if m.get("command"):
        lines.append(f"- command: `{m['command']}`")
    lines += ["", summary_table(report.summary), ""]
    return "\n".join(lines)


def write(report: EvalReport, out_dir: str, title: str | None = None) -> tuple[str, str]:
    """Write results.json and results.md into `out_dir` (created); returns their paths."""
    os.makedirs(out_dir, exist_ok=True)
    jpath = os.path.join(out_dir, "results.json")
    with open(jpath + ".tmp", "w", encoding="utf-8") as fh:
        json.dump(report.to_dict(), fh, indent=1)
    os.replace(jpath + ".tmp", jpath)
    mpath = os.path.join(out_dir, "results.md")
    with open(mpath, "w", encoding="utf-8") as fh:
        fh.write(markdown(report, title))
    return jpath, mpath
