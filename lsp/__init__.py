"""codefill.lsp: the language server (`codefill lsp`).

Standard LSP over stdio or TCP, so an editor's own ghost text, Tab-accept and cycling work:
`textDocument/inlineCompletion` (LSP 3.18) for ghost text, `textDocument/completion` as a fallback, incremental
document sync in the negotiated position encoding, settings from `initializationOptions` and
`workspace/didChangeConfiguration`, the model loaded in the background with `$/progress`.

    from codefill.lsp import create_server
    create_server().start_io()
"""

from .server import CodefillLanguageServer, create_server
from .settings import Settings

__all__ = ["CodefillLanguageServer", "create_server", "Settings"]
