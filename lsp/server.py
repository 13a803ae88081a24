"""The codefill language server: `initialize` (settings from `initializationOptions`), `initialized` (starts
loading the model), `workspace/didChangeConfiguration`, `shutdown`; the features live in their own modules
(documents.py, inline.py, completion.py, model.py, stats.py: `workspace/executeCommand` `codefill.accepted`).

    from codefill.lsp import create_server
    create_server().start_io()          # stdio; or .start_tcp("127.0.0.1", 2087)

State lives on `CodefillLanguageServer`. The event loop never blocks: every model call runs on one worker thread
(`run_model`), a newer request for a document supersedes the older ones, and `$/cancelRequest` cancels the asyncio
task, which stops the engine between two tokens. Malformed requests get an error response (pygls alone would only
log them and leave the client waiting); the server never dies of a request.

Framing is codefill's own (framing.py: a size limit, parse errors answered). Requests before `initialize` get
ServerNotInitialized (notifications then are dropped, `exit` excepted), requests after `shutdown` InvalidRequest;
`exit` ends the process with 0 after `shutdown`, else 1, and so does the client closing its input without `exit`.
Documents are kept only in codefill's store (documents.py): pygls's copy split lines where LSP does not and clamped
positions in the shared params. `--tcp` serves one client connection at a time, of the same OS user or with a token
(see `start_tcp`).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Hashable

from lsprotocol import types
from pygls.exceptions import (JsonRpcException, JsonRpcInvalidParams, JsonRpcInvalidRequest,
                              JsonRpcServerNotInitialized)
from pygls.io_ import StdoutWriter
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol
from pygls.protocol.json_rpc import JsonRPCProtocol
from pygls.protocol.language_server import lsp_method

from codefill import __version__
from codefill.engine import CodefillError, Engine
from codefill.engine.remote import ServerError
from codefill.engine.gate import Gate

from . import completion, documents, framing, inline, stats
from .documents import DocumentStore
from .edits import engine_document_ids
from .model import ModelHolder
from .settings import Settings, merge

log = logging.getLogger(__name__)

SNIPPET_CHARS = 4000  # per other document; the engine cuts snippets to its token budget anyway


class _Ignored:
    """A message that could not be read; already answered (requests) or logged (notifications)."""

    jsonrpc = "ignored"
    method = ""


class CodefillProtocol(LanguageServerProtocol):
    _server: "CodefillLanguageServer"

    @lsp_method(types.INITIALIZE)
    def lsp_initialize(self, params: types.InitializeParams):
        self._server.session_started = True
        result = yield from super().lsp_initialize(params)
        if not self._server.wants_completion_fallback(params.capabilities):
            # Clients with inline completion (VS Code, Neovim 0.12) would ask both at every keystroke.
            result.capabilities.completion_provider = None
        return result

    @lsp_method(types.EXIT)
    def lsp_exit(self, *args):
        """Ends the read loop (pygls raised SystemExit, which its own loop swallowed: always exit code 0)."""
        if (user_handler := self.fm.features.get(types.EXIT)) is not None:
            yield user_handler, args, None
        self._server.exit_code = 0 if self._shutdown else 1

    # pygls keeps a copy of every document too, splitting lines with str.splitlines (form feeds, U+2028, …) and
    # clamping positions *in the params it then hands to codefill*: codefill's own store is the only copy.
    @lsp_method(types.TEXT_DOCUMENT_DID_OPEN)
    def lsp_text_document__did_open(self, params: types.DidOpenTextDocumentParams):
        if (user_handler := self.fm.features.get(types.TEXT_DOCUMENT_DID_OPEN)) is not None:
            yield user_handler, (params,), None

    @lsp_method(types.TEXT_DOCUMENT_DID_CHANGE)
    def lsp_text_document__did_change(self, params: types.DidChangeTextDocumentParams):
        if (user_handler := self.fm.features.get(types.TEXT_DOCUMENT_DID_CHANGE)) is not None:
            yield user_handler, (params,), None

    @lsp_method(types.TEXT_DOCUMENT_DID_CLOSE)
    def lsp_text_document__did_close(self, params: types.DidCloseTextDocumentParams):
        if (user_handler := self.fm.features.get(types.TEXT_DOCUMENT_DID_CLOSE)) is not None:
            yield user_handler, (params,), None

    def handle_message(self, message):
        if self._shutdown and getattr(message, "jsonrpc", None) == JsonRPCProtocol.VERSION \
                and getattr(message, "method", "") not in ("", types.EXIT) and getattr(message, "id", None) is not None:
            # After shutdown the spec wants InvalidRequest for every request (pygls answered nothing).
            self._send_response(message.id, error=JsonRpcInvalidRequest(
                f"{message.method} after shutdown").to_response_error())
            return
        super().handle_message(message)

    def structure_message(self, data: dict[str, Any]):
        if isinstance(data, dict) and data.get("jsonrpc") == JsonRPCProtocol.VERSION \
                and isinstance(method := data.get("method"), str):
            if not self._server.session_started and method != types.EXIT:
                if method != types.INITIALIZE:
                    return self._before_initialize(data, method)
                if (refusal := self._server.refuse_initialize(data.get("params"))) is not None:
                    if "id" in data:
                        self._send_response(data["id"], error=JsonRpcInvalidRequest(refusal).to_response_error())
                    log.warning("initialize refused: %s", refusal)
                    self._server.connection_refused = True
                    return _Ignored()
            if "params" not in data and self.get_message_type(method) is None:
                # JSON-RPC lets a request or notification leave out params; pygls's generic message type requires
                # the member, so an unknown method without it was answered -32603 Internal Error, not -32601.
                data = {**data, "params": None}
        try:
            return super().structure_message(data)
        except JsonRpcException as exc:
            if not isinstance(data, dict) or "jsonrpc" not in data:
                raise
            method = data.get("method", "")
            if "id" in data and method:
                err = JsonRpcInvalidParams(f"invalid params for {method}") if exc.code == JsonRpcInvalidParams.CODE \
                    else exc
                self._send_response(data["id"], error=err.to_response_error())
            log.warning("cannot read message %s (id %s): %s", method or "?", data.get("id"), exc)
            if method == types.TEXT_DOCUMENT_DID_CHANGE:
                # A lost edit: every later one would apply to the wrong text.
                uri = _uri_of(data.get("params"))
                if uri is not None:
                    self._server.documents.mark_stale(self._server, uri, "an unreadable textDocument/didChange")
            return _Ignored()


    def _before_initialize(self, data: dict[str, Any], method: str):
        """The LSP specification: before `initialize`, a request is answered -32002 ServerNotInitialized and a
        notification is dropped (`exit` excepted); pygls ran both."""
        if "id" in data:
            self._send_response(data["id"], error=JsonRpcServerNotInitialized(
                f"{method} before initialize").to_response_error())
        log.warning("%s before initialize %s", method, "refused" if "id" in data else "dropped")
        return _Ignored()


def _uri_of(params) -> str | None:
    try:
        uri = params["textDocument"]["uri"]
    except (TypeError, KeyError):
        return None
    return uri if isinstance(uri, str) else None


INITIALIZE_WAIT_S = 10.0  # --tcp: a connection has this long to send (an authenticated) `initialize`
EXIT_GRACE_S = 3.0  # after the client left: how long the model call in progress may take to stop


def end_process_after(code: int, grace_s: float = EXIT_GRACE_S) -> None:
    """Make sure the process ends within `grace_s` with `code`. Python joins the worker thread at exit, and a model
    call that cannot be cancelled (a load from a slow disk, an inference server that does not answer: 59 s measured)
    would keep a server whose editor is gone alive; a daemon timer ends the process then."""
    def end() -> None:
        log.warning("the model call in progress did not stop within %.0f s; ending the process", grace_s)
        for handler in logging.getLogger().handlers:
            try:
                handler.flush()
            except Exception:
                pass
        os._exit(code)

    timer = threading.Timer(grace_s, end)
    timer.daemon = True
    timer.start()


class ModelWorker:
    """The single thread every model call runs on (the engine serialises them anyway)."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="codefill-model")

    def submit(self, fn: Callable, *args):
        return self._pool.submit(fn, *args)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class CodefillLanguageServer(LanguageServer):
    def __init__(self, overrides: dict | None = None) -> None:
        super().__init__("codefill", __version__, protocol_cls=CodefillProtocol,
                         text_document_sync_kind=types.TextDocumentSyncKind.Incremental)
        self.documents = DocumentStore()
        self.settings = Settings()
        self.overrides = overrides or {}  # from the command line: win over the client's settings
        self.model = ModelHolder()
        self._server_down = False  # the last request on the inference server failed (the user was told)
        self.worker = ModelWorker()
        self.initialized = False
        self.loop: asyncio.AbstractEventLoop | None = None
        self._latest: dict[Hashable, threading.Event] = {}  # per document: the cancel event of the newest request
        self.gate = None  # the confidence gate (engine/gate.py); None: automatic suggestions are not gated
        self._gate_file: object = _UNSET
        self.exit_code: int | None = None  # set by `exit`: 0 after `shutdown`, else 1
        self.session_started = False  # `initialize` came (over TCP: this connection is the client's)
        self.token: str | None = None  # --tcp: the secret a client must present as initializationOptions.token
        self.connection_refused = False  # this connection's `initialize` was refused (TCP: it is closed)
        self.stats = stats.Recorder(self)  # acceptance statistics, local only (setting `stats`)

    # ------------------------------------------------------------ transports
    def start_io(self, stdin=None, stdout=None) -> None:
        """stdio, with codefill's framing (framing.py). Returns when the client sends `exit` or closes stdin."""
        self._stop_event = threading.Event()
        self.protocol.set_writer(StdoutWriter(stdout or sys.stdout.buffer))
        frames = framing.ThreadFrames(stdin or sys.stdin.buffer)
        try:
            asyncio.run(self._serve(frames))
            self._client_left()
        except BrokenPipeError:
            log.error("the client closed the connection")
        except KeyboardInterrupt:
            pass
        finally:
            self.shutdown()

    def _client_left(self) -> None:
        """The input ended without `exit` (the editor closed stdin or the socket, or died): the process ends all
        the same, with the code `exit` would have given: 0 after `shutdown`, else 1."""
        if self.exit_code is None:
            self.exit_code = 0 if self.protocol._shutdown else 1
            log.warning("the client closed the connection without exit%s; ending with %d",
                        "" if self.protocol._shutdown else " or shutdown", self.exit_code)

    def start_tcp(self, host: str, port: int, token: str | None = None) -> None:
        """One client connection at a time: while a client is connected, other connections are refused (told so,
        and closed), so none can take over its responses. The server ends when the client that sent `initialize`
        disconnects or exits; a connection that closes before `initialize` leaves it listening.

        Authentication: with a `token`, a connection's `initialize` must carry it as `initializationOptions.token`
        (else it is answered InvalidRequest and closed). Without one, only connections from this machine by the
        same OS user are served (the peer's socket owner, read from /proc/net/tcp; where that cannot be read, as off
        Linux, every connection is refused and told to use a token)."""
        self._stop_event = threading.Event()
        self.token = token or None

        async def main() -> None:
            finished = asyncio.Event()
            busy = [False]

            async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                peer = writer.get_extra_info("peername")
                if busy[0] or finished.is_set():
                    log.warning("refused a connection from %s: codefill serves one client at a time", peer)
                    _refuse(writer, "another client is connected to this server; it serves one at a time")
                    return
                if self.token is None and (why := _foreign_peer(writer)) is not None:
                    log.warning("refused a connection from %s: %s", peer, why)
                    _refuse(writer, f"connection refused: {why}")
                    return
                busy[0] = True
                log.info("client connected from %s", peer)
                self.connection_refused = False
                self.protocol.set_writer(writer)

                def unauthenticated() -> None:  # a connection that never initializes must not hold the one slot
                    if not self.session_started:
                        log.warning("no initialize from %s within %.0f s; closing it", peer, INITIALIZE_WAIT_S)
                        writer.close()

                deadline = asyncio.get_running_loop().call_later(INITIALIZE_WAIT_S, unauthenticated)
                try:
                    await self._serve(framing.StreamFrames(reader))
                finally:
                    deadline.cancel()
                    try:
                        writer.close()
                    except Exception:
                        pass
                    busy[0] = False
                    if self.connection_refused:
                        log.info("connection from %s refused at initialize; still listening", peer)
                    elif self.session_started or self.exit_code is not None:
                        self._client_left()
                        finished.set()
                    else:
                        log.info("connection from %s closed before initialize; still listening", peer)
                        self.documents = DocumentStore()

            server = await asyncio.start_server(connection, host, port)
            self._server = server
            log.info("listening on %s", ", ".join(str(s.getsockname()) for s in server.sockets))
            async with server:
                await finished.wait()

        try:
            asyncio.run(main())
        except KeyboardInterrupt:
            pass
        finally:
            self.shutdown()

    async def _serve(self, frames) -> None:
        await framing.serve(frames, self.protocol, lambda: self.exit_code is not None or self._stop_event.is_set()
                            or self.connection_refused,
                            lambda exc: self._report_server_error(exc, JsonRpcException))

    def refuse_initialize(self, params: Any) -> str | None:
        """Why this `initialize` is refused (None: it is not): over TCP with a token, the client must present it."""
        if self.token is None:
            return None
        options = params.get("initializationOptions") if isinstance(params, dict) else None
        given = options.get("token") if isinstance(options, dict) else None
        if not isinstance(given, str):
            return "authentication required: initializationOptions.token (the server's CODEFILL_LSP_TOKEN)"
        if not hmac.compare_digest(given.encode("utf-8", "replace"), self.token.encode("utf-8", "replace")):
            return "authentication failed: initializationOptions.token is not the server's CODEFILL_LSP_TOKEN"
        return None

    def shutdown(self) -> None:
        """The transport ended: requests in flight stop between two tokens (the worker is not waited for)."""
        for cancel in list(self._latest.values()):
            cancel.set()
        self.stats.close()
        super().shutdown()

    # ------------------------------------------------------------ helpers
    @property
    def encoding(self) -> str:
        try:
            enc = self.workspace.position_encoding
        except Exception:
            enc = None
        return str(enc.value if hasattr(enc, "value") else enc or types.PositionEncodingKind.Utf16.value)

    def call_in_loop(self, fn: Callable, *args) -> None:
        """Run `fn(*args)` on the event loop (sending messages from the worker thread)."""
        loop = self.loop
        if loop is None or loop.is_closed() or _in_loop(loop):
            fn(*args)
        else:
            loop.call_soon_threadsafe(fn, *args)

    def log_to_client(self, kind: types.MessageType, message: str) -> None:
        try:
            self.window_log_message(types.LogMessageParams(type=kind, message=message))
        except Exception:
            log.debug("cannot send window/logMessage", exc_info=True)

    def show_to_client(self, kind: types.MessageType, message: str) -> None:
        try:
            self.window_show_message(types.ShowMessageParams(type=kind, message=message))
        except Exception:
            log.debug("cannot send window/showMessage", exc_info=True)

    def report_server_error(self, error: Exception, source) -> None:
        # pygls pops up "Error in server" for every unreadable message; a log line is enough. Errors of requests
        # were answered with an error response already.
        from pygls.exceptions import FeatureRequestError

        if source is FeatureRequestError:
            log.debug("request failed: %s", error)
            return
        log.warning("server error (%s): %s", getattr(source, "__name__", source), error)
        self.log_to_client(types.MessageType.Warning, f"codefill: {error}")

    def apply_settings(self, raw: Any) -> None:
        settings, problems = merge(self.settings, raw)
        settings, more = merge(settings, self.overrides)
        for p in problems + more:
            log.warning("%s", p)
            self.show_to_client(types.MessageType.Warning, f"codefill: {p}")
        self.settings = settings
        self._load_gate(settings.gate_file)
        if self.initialized:
            self.model.ensure(self, settings)

    def _load_gate(self, path: str | None) -> None:
        """The gate file named in the settings (default: the shipped one). One that cannot be used is reported once
        (window/showMessage); the shipped gate takes its place (if that fails too, suggestions are shown ungated)."""
        if path == self._gate_file:
            return
        self._gate_file = path
        try:
            self.gate = Gate.load(path)
            return
        except Exception as exc:  # any shape of file: the server must start and keep working
            problem = exc
        self.gate, instead = None, "suggestions are not gated"
        if path is not None:
            try:
                self.gate, instead = Gate.load(), "using the shipped gate instead"
            except Exception:
                log.exception("the shipped gate file cannot be read")
        text = f"codefill: cannot use the gate file {path or '(shipped)'}: {problem}; {instead}"
        log.warning("%s", text)
        self.show_to_client(types.MessageType.Warning, text)

    def wants_completion_fallback(self, caps: types.ClientCapabilities | None) -> bool:
        if self.settings.completion_fallback is not None:
            return self.settings.completion_fallback
        return not (caps and caps.text_document and caps.text_document.inline_completion is not None)

    def engine_or_none(self) -> Engine | None:
        """On the worker: the loaded engine, or None when it failed to load (the user was told once). A server
        that was not reachable at load time is tried again."""
        if self.model.engine is None:
            return self.model.reconnect(self)
        return self.model.engine

    def _server_failed(self, exc: ServerError) -> None:
        """On the worker: a request failed on the inference server. Said once, until a request succeeds again."""
        log.warning("%s", exc)
        if not self._server_down:
            self._server_down = True
            self.call_in_loop(self.show_to_client, types.MessageType.Warning,
                              f"codefill: {exc} (completions resume when it answers again)")

    def _server_ok(self) -> None:
        if self._server_down:
            self._server_down = False
            log.info("the inference server answers again")
            self.call_in_loop(self.log_to_client, types.MessageType.Info, "codefill: the inference server answers again")

    def snippets_for(self, doc) -> tuple:
        n = self.settings.snippets
        if n <= 0:
            return ()
        root = None
        try:
            root = self.workspace.root_path
        except Exception:
            pass
        return self.documents.snippets(doc.uri, n, SNIPPET_CHARS, root)

    def forget_document(self, uri: str) -> None:
        """didClose: drop the document, cancel its requests, and free every engine state it used (after the
        worker's queued jobs, so that a request in flight for it cannot leave state behind)."""
        self.documents.close(uri)
        self.stats.forget_document(uri)
        for kind in ("inline", "completion"):
            cancel = self._latest.get((kind, uri))
            if cancel is not None:
                cancel.set()

        def forget() -> None:
            engine = self.model.engine
            if engine is not None:
                for doc_id in engine_document_ids(uri):
                    engine.forget(doc_id)

        try:
            self.worker.submit(forget)
        except RuntimeError:  # the worker is shut down: so is the engine
            pass

    async def run_model(self, key: Hashable, job: Callable[[threading.Event], Any], empty: Any = None) -> Any:
        """Run `job(cancel)` on the worker. A newer call with the same key sets the older one's `cancel` (it should
        then return quickly with an empty answer); cancelling the awaiting task (`$/cancelRequest`) sets it too.
        A failure of the inference server answers `empty` (the user is told once, see `_server_failed`)."""
        old = self._latest.get(key)
        if old is not None:
            old.set()
        cancel = threading.Event()
        self._latest[key] = cancel
        fut = self.worker.submit(_guarded, job, cancel, self, empty)
        try:
            return await asyncio.wrap_future(fut)
        except asyncio.CancelledError:
            cancel.set()
            raise
        finally:
            if self._latest.get(key) is cancel:
                del self._latest[key]


_UNSET = object()


def _refuse(writer, why: str) -> None:
    """Tell a client why it gets nothing, and close its connection."""
    import json

    body = json.dumps({"jsonrpc": "2.0", "method": types.WINDOW_SHOW_MESSAGE, "params": {
        "type": int(types.MessageType.Error), "message": f"codefill: {why}"}}).encode()
    try:
        writer.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        writer.close()
    except Exception:
        pass


def _foreign_peer(writer) -> str | None:
    """Why a TCP peer is not served without a token (None: it is this OS user on this machine)."""
    sock = writer.get_extra_info("socket")
    try:
        peer, local = _endpoint(sock.getpeername()), _endpoint(sock.getsockname())
    except (OSError, ValueError, AttributeError):
        return "its address cannot be read"
    uid = _socket_owner(peer, local)
    if uid is None:
        return ("the connecting user cannot be verified (it is not on this machine, or the system does not say); "
                "set CODEFILL_LSP_TOKEN for the server and initializationOptions.token for the client")
    if uid != os.getuid():
        return f"it comes from another user (uid {uid}); a token (CODEFILL_LSP_TOKEN) admits other users"
    return None


def _endpoint(address) -> tuple:
    import ipaddress

    ip = ipaddress.ip_address(str(address[0]).split("%")[0])
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip, int(address[1])


def _socket_owner(peer: tuple, local: tuple) -> int | None:
    """Linux: the uid owning the client's end of a connection (the socket whose local address is `peer` and remote
    address is `local`), from /proc/net/tcp and tcp6. None where it is not listed (a remote peer, another system)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as fh:
                rows = fh.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            f = row.split()
            try:
                if len(f) > 7 and _proc_endpoint(f[1]) == peer and _proc_endpoint(f[2]) == local:
                    return int(f[7])
            except ValueError:
                continue
    return None


def _proc_endpoint(field: str) -> tuple:
    """`0100007F:1F90` (each 32-bit word of the address in host byte order, the port in hex) -> (ip, port)."""
    import ipaddress

    hex_ip, _, hex_port = field.partition(":")
    raw = bytes.fromhex(hex_ip)
    if sys.byteorder == "little":
        raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return _endpoint((ipaddress.ip_address(raw), int(hex_port, 16)))


def _in_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def _guarded(job: Callable, cancel: threading.Event, ls: "CodefillLanguageServer | None" = None, empty: Any = None):
    try:
        result = job(cancel)
    except ServerError as exc:  # the server is down or refused: an empty answer, and the user is told once
        if ls is None:
            raise JsonRpcInvalidParams(str(exc)) from None
        ls._server_failed(exc)
        return empty
    except CodefillError as exc:  # a position or document the engine refuses: an error response
        raise JsonRpcInvalidParams(str(exc)) from None
    if ls is not None and getattr(ls.model.engine, "remote", False):
        ls._server_ok()
    return result


def create_server(overrides: dict | None = None) -> CodefillLanguageServer:
    """A fresh server with every feature registered. `overrides`: settings (camelCase keys) that win over the
    client's, e.g. {"model": path} from `codefill lsp --model`."""
    server = CodefillLanguageServer(overrides)

    @server.feature(types.INITIALIZE)
    def initialize(ls: CodefillLanguageServer, params: types.InitializeParams) -> None:
        ls.loop = asyncio.get_running_loop()
        options = params.initialization_options
        if isinstance(options, dict) and "token" in options:  # --tcp's authentication (checked already), no setting
            options = {k: v for k, v in options.items() if k != "token"}
        ls.apply_settings(options)

    @server.feature(types.INITIALIZED)
    def initialized(ls: CodefillLanguageServer, params: types.InitializedParams) -> None:
        ls.initialized = True
        ls.model.ensure(ls, ls.settings)

    @server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    async def did_change_configuration(ls: CodefillLanguageServer, params: types.DidChangeConfigurationParams):
        raw = params.settings
        if raw is None and _can_pull_configuration(ls):
            try:
                got = await asyncio.wait_for(ls.workspace_configuration_async(types.ConfigurationParams(
                    items=[types.ConfigurationItem(section="codefill")])), 5.0)
                raw = got[0] if got else None
            except Exception as exc:
                log.warning("workspace/configuration failed: %s", exc)
        ls.apply_settings(raw)

    @server.feature(types.SHUTDOWN)
    def shutdown(ls: CodefillLanguageServer, *args) -> None:
        for cancel in ls._latest.values():
            cancel.set()
        ls.worker.submit(ls.model.close)

    documents.register(server)
    inline.register(server)
    completion.register(server)
    stats.register(server)
    return server


def _can_pull_configuration(ls: CodefillLanguageServer) -> bool:
    caps = ls.client_capabilities
    return bool(caps and caps.workspace and caps.workspace.configuration)
