"""`codefill lsp`: the language server, for editors (stdio by default, or TCP)."""

from __future__ import annotations

import logging
import os
import sys

import typer

from codefill.engine.config import MAX_THREADS


def lsp(
    tcp: str = typer.Option(None, "--tcp", metavar="HOST:PORT", help="Listen on TCP instead of stdio: one client at a "
                            "time; without a HOST only on 127.0.0.1. Serves only your own OS user's connections, or, "
                            "with CODEFILL_LSP_TOKEN set, clients that send it as initializationOptions.token."),
    model: str = typer.Option(None, "--model", "-m", help="GGUF file; wins over the editor's `model` setting."),
    threads: int = typer.Option(None, "--threads", "-t", min=1, max=MAX_THREADS, help="CPU threads (default: cores-1 up to 4 cores, else half the logical cores)."),
    log_file: str = typer.Option(None, "--log-file", help="Also write the server's log to this file."),
    server: str = typer.Option(None, "--server", help="Inference server to complete with (wins over the editor's `server` setting; also CODEFILL_SERVER; the key from CODEFILL_API_KEY)."),
    server_model: str = typer.Option(None, "--server-model", help="Model name for an OpenAI-compatible server."),
) -> None:
    """Run the language server: ghost text (LSP inline completions) for Neovim, VS Code and other editors.

    Example: codefill lsp   (stdio: the editor starts it; or --tcp 127.0.0.1:2087 for clients that connect)
    """
    from codefill.lsp import create_server  # pygls loads only for `codefill lsp`: other commands start faster
    from codefill.lsp.server import end_process_after

    if log_file:
        root = logging.getLogger()
        for h in root.handlers:  # stderr stays as quiet as it was (editors often keep it in their own log)
            if h.level == logging.NOTSET:
                h.setLevel(root.level)
        handler = logging.FileHandler(log_file, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler.setLevel(logging.INFO)
        root.addHandler(handler)
        root.setLevel(min(root.level, logging.INFO))
        if root.level > logging.DEBUG:
            logging.getLogger("pygls").setLevel(logging.WARNING)  # at INFO it logs every message body
    overrides = {k: v for k, v in {"model": model, "threads": threads, "server": server,
                                   "serverModel": server_model}.items() if v is not None}
    server = create_server(overrides)
    try:
        if tcp:
            host, port = _address(tcp)
            server.start_tcp(host, port, os.environ.get("CODEFILL_LSP_TOKEN") or None)
        else:
            server.start_io(sys.stdin.buffer, _protocol_stdout())
    finally:
        server.worker.shutdown()  # drop queued model work: the client is gone
    end_process_after(server.exit_code or 0)  # a model call that cannot stop must not keep the process alive
    if server.exit_code:  # `exit` without `shutdown` first: 1, as the LSP specification says
        sys.exit(server.exit_code)  # (typer.Exit would be returned, not raised, under standalone_mode=False)


def _address(tcp: str) -> tuple[str, int]:
    """HOST:PORT, [IPv6]:PORT, :PORT or PORT. Without a host: loopback only (127.0.0.1); another interface only when
    named (see the README's Security section for what the server's authentication does and does not cover)."""
    host, sep, port = tcp.rpartition(":")
    if not sep:
        host, port = "", tcp
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise typer.BadParameter(f"expected HOST:PORT, got {tcp!r}", param_hint="--tcp")
    host = host.strip("[]") if host.startswith("[") else host
    return host or "127.0.0.1", int(port)


def _protocol_stdout():
    """The real stdout, for LSP messages only. File descriptor 1 and `sys.stdout` then point at stderr, so a stray
    print (Python's or llama.cpp's C code) cannot corrupt the protocol stream."""
    sys.stdout.flush()
    fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return os.fdopen(fd, "wb")  # buffered: pygls flushes after every message


def register(app: typer.Typer) -> None:
    app.command("lsp")(lsp)
