// codefill for VS Code: starts `codefill lsp` with vscode-languageclient, whose inline-completion feature registers
// the server's `textDocument/inlineCompletion` as VS Code's inline completion provider (ghost text, Tab accepts,
// Alt+] / Alt+[ cycle, "Trigger Inline Suggestion" asks for several alternatives).
import * as vscode from 'vscode';
import { LanguageClient, LanguageClientOptions, ServerOptions, State } from 'vscode-languageclient/node';

let client: LanguageClient | undefined;
let stopping = false;

async function stop(): Promise<void> {
  stopping = true;
  try {
    await client?.stop();
  } finally {
    client = undefined;
    stopping = false;
  }
}

// Settings sent to the server (initializationOptions, then workspace/didChangeConfiguration under `codefill`).
function serverSettings(): Record<string, unknown> {
  const c = vscode.workspace.getConfiguration('codefill');
  return {
    model: c.get<string | null>('model') || null,
    maxTokens: c.get<number | null>('maxTokens') ?? null,
    mode: c.get<string>('mode', 'auto'),
    timeBudgetMs: c.get<number | null>('timeBudgetMs') ?? null,
    suggestions: c.get<number>('suggestions', 3),
    enable: c.get<boolean>('enable', true),
    disabledLanguages: c.get<string[]>('disabledLanguages', []),
    threads: c.get<number | null>('threads') ?? null,
    prefixTokens: c.get<number | null>('prefixTokens') ?? null,
    warmWindows: c.get<number | null>('warmWindows') ?? null,
    gateThreshold: c.get<number | null>('gateThreshold') ?? null,
    adaptiveSamples: c.get<number | null>('adaptiveSamples') ?? null,
    gateFile: c.get<string | null>('gateFile') || null,
    warmup: c.get<boolean | null>('warmup') ?? null,
    stats: c.get<boolean>('stats', true),
  };
}

async function start(context: vscode.ExtensionContext): Promise<void> {
  const c = vscode.workspace.getConfiguration('codefill');
  const serverOptions: ServerOptions = {
    command: c.get<string>('serverPath', 'codefill'),
    args: c.get<string[]>('serverArgs', ['lsp']),
  };
  const clientOptions: LanguageClientOptions = {
    documentSelector: [{ scheme: 'file' }, { scheme: 'untitled' }],
    initializationOptions: serverSettings(),
    synchronize: { configurationSection: 'codefill' },
    outputChannelName: 'codefill',
    middleware: {
      workspace: {
        // answer workspace/configuration with the same shape as initializationOptions
        configuration: (params) => params.items.map((item) => (item.section === 'codefill' ? serverSettings() : null)),
      },
    },
  };
  client = new LanguageClient('codefill', 'codefill', serverOptions, clientOptions);
  client.onDidChangeState((e) => {
    if (e.newState === State.Stopped && !stopping) {
      void vscode.window.showWarningMessage(
        `codefill: the language server stopped (is "${serverOptions.command}" installed? see the codefill output)`,
      );
    }
  });
  await client.start();
  trackCursor(context);
}

// Idle-time warm-up: tell the server where the cursor is (debounced), so that it evaluates that place's prompt before
// the first keystroke there (`codefill/didChangeCursor`; the server ignores it with "warmup": false).
let cursorTracking: vscode.Disposable | undefined;
function trackCursor(context: vscode.ExtensionContext): void {
  if (cursorTracking) {
    return;
  }
  let timer: ReturnType<typeof setTimeout> | undefined;
  cursorTracking = vscode.window.onDidChangeTextEditorSelection((e) => {
    if (timer) {
      clearTimeout(timer);
    }
    timer = setTimeout(() => {
      timer = undefined;
      const doc = e.textEditor.document;
      if (!client || !client.isRunning() || !['file', 'untitled'].includes(doc.uri.scheme)) {
        return;
      }
      const pos = e.selections[0]?.active;
      if (!pos) {
        return;
      }
      void client.sendNotification('codefill/didChangeCursor', {
        textDocument: { uri: client.code2ProtocolConverter.asUri(doc.uri) },
        position: { line: pos.line, character: pos.character },
      });
    }, 100);
  });
  context.subscriptions.push(cursorTracking);
}

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  context.subscriptions.push(
    vscode.commands.registerCommand('codefill.restart', async () => {
      await stop();
      await start(context);
    }),
    vscode.workspace.onDidChangeConfiguration(async (e) => {
      if (e.affectsConfiguration('codefill.serverPath') || e.affectsConfiguration('codefill.serverArgs')) {
        await stop();
        await start(context);
      }
    }),
  );
  try {
    await start(context);
  } catch (err) {
    void vscode.window.showErrorMessage(`codefill: cannot start the language server: ${err}`);
  }
}

export async function deactivate(): Promise<void> {
  await stop();
}
