"""`codefill models` and `codefill pull`: what models there are, and fetching more."""

from __future__ import annotations

import os

import typer

from codefill.engine.llama import check_model_file
from codefill.engine.models import list_models, pull as pull_model, resolve_model, write_config_value

from .common import API_KEY_HELP, SERVER_MODEL_HELP, load_engine, server_settings


def _size(n: int) -> str:
    return f"{n / 1e6:,.0f} MB" if n else "?"


def models(
    set_default: str = typer.Option(None, "--set-default", help="Make this model (path or repo/file.gguf) the default."),
    server: str = typer.Option(None, "--server", help="Show what this inference server runs instead (model, context, FIM tokens)."),
    server_model: str = typer.Option(None, "--server-model", help=SERVER_MODEL_HELP),
    api_key: str = typer.Option(None, "--api-key", help=API_KEY_HELP),
    model: str = typer.Option(None, "--model", "-m", help="With --server: the served model's GGUF, for local tokenization."),
) -> None:
    """List available GGUF models: the embedded default, the configured one, and those in the Hugging Face cache.
    With --server: what that server runs.

    Example: codefill models --set-default Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF/qwen2.5-coder-1.5b-instruct-q8_0.gguf
    """
    if server:
        settings = server_settings(server, server_model, api_key)
        engine = load_engine(model, server=settings, quiet=True)
        try:
            info = engine.model_info()
            fmt = engine.format
            fim = {k: engine.backend.token_text(v) for k, v in
                   (("prefix", fmt.pre), ("suffix", fmt.suf), ("middle", fmt.mid)) if v is not None}
            typer.echo(f"server:    {info['server']} ({info['protocol']})")
            typer.echo(f"model:     {info['name']}")
            typer.echo(f"context:   {info['n_ctx']} tokens" + (f", {info['slots']} slots" if info.get("slots") else ""))
            typer.echo(f"tokenizer: {info['tokenizer']}")
            typer.echo(f"family:    {info['family']}" + ("" if info["fim"] else " (no FIM tokens: prefix-only prompts)"))
            if fim:
                typer.echo("fim:       " + ", ".join(f"{k} {v}" for k, v in fim.items()))
        finally:
            engine.close()
        return
    if set_default:
        path = resolve_model(set_default)
        check_model_file(path)
        cfg = write_config_value("model", set_default)
        typer.echo(f"default model: {set_default} (saved in {cfg})")
        return
    current = resolve_model(None)
    for m in list_models():
        mark = "*" if os.path.realpath(m.path) == os.path.realpath(current) else " "
        typer.echo(f"{mark} {m.name:<60} {_size(m.size):>10}  {m.source:<9} {m.path}")


def pull(
    repo: str = typer.Argument(..., help="Hugging Face repository, e.g. Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF"),
    file: str = typer.Option(None, "--file", "-f", help="File name or glob pattern, e.g. '*q8_0.gguf'."),
    revision: str = typer.Option(None, "--revision"),
    set_default: bool = typer.Option(False, "--set-default", help="Use the downloaded model by default."),
) -> None:
    """Download a GGUF model into the Hugging Face cache (with progress; honours HF_HUB_OFFLINE).

    Example: codefill pull Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF --file '*q8_0.gguf'
    """
    paths = pull_model(repo, file, revision)
    for p in paths:
        typer.echo(p)
    if set_default and paths:
        write_config_value("model", paths[0])
        typer.echo(f"default model: {paths[0]}")


def register(app: typer.Typer) -> None:
    app.command("models")(models)
    app.command("pull")(pull)
