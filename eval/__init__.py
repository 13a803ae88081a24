"""Measuring codefill: execution-scored infilling benchmarks, completion on real code, coverage, latency.

Research and reporting code: it drives the engine (codefill.engine) from outside; the engine never imports it.

The `codefill eval` commands are thin adapters over these modules; other measurements (quantization reports,
repeated sampling) call the same functions:

    from codefill.engine import Engine, EngineConfig
    from codefill.eval import humaneval, runner, report

    engine = Engine.load(EngineConfig(n_threads=1))
    tasks = humaneval.sample_tasks(humaneval.build_tasks("single-line", seed=0), 150, seed=0)
    rep = runner.evaluate(engine, tasks, samples=1, seed=0, progress=lambda done, total: None)
    print(rep.summary["pass@1"], rep.summary["exact_match"])
    report.write(rep, "runs/my-run")            # results.json + results.md

- humaneval: `load_problems()`, `build_tasks(mode, seed)` → `InfillTask`s (single-line 1033, multi-line 5815,
  random-span 1640), `sample_tasks`, `program_for(problem, filled_document)`;
- repo: `build_repo_tasks(directory, limit, seed)`: line and block holes in real code;
- execution: `run_program(code, timeout)` → `ExecResult`, a sandboxed subprocess per program;
- metrics: `pass_at_k(n, c, k)`, `exact_match`, `edit_similarity`, `percentile`;
- runner: `request_for(task)` (the editor's request at the hole), `evaluate(engine, tasks, …)` → `EvalReport`,
  `summarize(records)`;
- report: `write(report, out_dir)`, `summary_table(summary)`;
- coverage: coverage@k over repeated samples, the exp(a·k^b) fit and its plot (`coverage_study`, `format_study`);
- benchmark: the older typing-session script (`typing_session`, `run_latency(engine, text, path)`: `codefill bench
  latency --every N`);
- person: a person in real time (`run_person(engine, text, path, think_ms=, cps=, warmup=)`, `format_rows`) for
  `codefill bench latency` and bench/lsp_person.py;
- team: N people on one inference server (`plan`, `run_team`, `format_table`) for `codefill bench team`;
- soak: a long typing session through the language server, requests/errors/latency/RSS per window (`soak`,
  `format_soak`) for `codefill bench soak`;
- acceptance: the language server's acceptance records (`read`, the summary and plot of `codefill stats`,
  `refit_gate`);
- gatefit: `fit(rows, labels, names)` of the confidence gate's models (codefill.engine.gate scores with them),
  `auroc`, `precision_at_recall`;
- png: `write_png` and the drawing helpers of the plots made without matplotlib (also used by quantize/report).

Nothing here imports typer or the language server.
"""
