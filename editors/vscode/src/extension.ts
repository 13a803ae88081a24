// codefill for VS Code: starts `codefill lsp` with vscode-languageclient, whose inline-completion feature registers
// the server's `textDocument/inlineCompletion` as VS Code's inline completion provider (ghost text, Tab accepts,
// Alt+] / Alt+[ cycle, "Trigger Inline Suggestion" (Alt+\, bound by this extension) asks for several alternatives).
//
// Failures are reported once each, by this extension (report()): vscode-languageclient's own notifications for one
// failed start were four ("couldn't create connection to server", "Server initialization failed", … with stack
// traces, seen in code-server 1.100), and it restarted a server that exits at once four times (a crash loop).
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as readline from 'readline';
import type { Readable } from 'stream';
import * as vscode from 'vscode';
import {
  CloseAction,
  ErrorAction,
  ErrorHandler,
  LanguageClient,
  LanguageClientOptions,
  RevealOutputChannelOn,
  ServerOptions,
  State,
} from 'vscode-languageclient/node';

// A server that stopped after it had started is started again, at most MAX_RESTARTS times in RESTART_WINDOW_MS.
const MAX_RESTARTS = 3;
const RESTART_WINDOW_MS = 3 * 60 * 1000;
const STDERR_LINES = 3; // of a server that did not start, shown in the message (all of it is in the output)

// The client never shows a notification itself (see above); what it logs still goes to the output channel.
class CodefillClient extends LanguageClient {
  override error(message: string, data?: unknown, _showNotification?: boolean | 'force'): void {
    super.error(message, data, false);
  }
}

let client: CodefillClient | undefined;
let output: vscode.LogOutputChannel | undefined;
let restarts: number[] = []; // when the server was started again after it stopped (within RESTART_WINDOW_MS)

function report(message: string, ...actions: ('Open Settings' | 'Show Output' | 'Restart')[]): void {
  output?.error(message);
  void vscode.window.showErrorMessage(message, ...actions).then((choice) => {
    if (choice === 'Open Settings') {
      void vscode.commands.executeCommand('workbench.action.openSettings', 'codefill.serverPath');
    } else if (choice === 'Show Output') {
      output?.show(true);
    } else if (choice === 'Restart') {
      void vscode.commands.executeCommand('codefill.restart');
    }
  });
}

async function stop(): Promise<void> {
  const c = client;
  client = undefined;
  if (!c) {
    return;
  }
  try {
    if (c.state === State.Starting) {
      await c.start().catch(() => undefined); // the start in progress: a starting client cannot be stopped
    }
    if (c.state === State.Running) {
      await c.stop(); // (stop() throws for a client whose start failed: nothing to stop then)
    }
  } catch (err) {
    output?.warn(`stopping the language server: ${err}`);
  }
}

// The executable the command names, like a shell finds it (a bare name on PATH, a leading ~ expanded); undefined
// when there is none. A relative path with a directory is left to spawn (it resolves it from the server's cwd).
function findExecutable(command: string): string | undefined | null {
  const cmd = command.startsWith('~/') ? path.join(os.homedir(), command.slice(2)) : command;
  let candidates: string[];
  if (path.isAbsolute(cmd)) {
    candidates = [cmd];
  } else if (cmd.includes('/') || cmd.includes(path.sep)) {
    return null; // not checked here
  } else {
    candidates = (process.env.PATH ?? '').split(path.delimiter).filter(Boolean).map((d) => path.join(d, cmd));
  }
  const exts = process.platform === 'win32' ? ['', ...(process.env.PATHEXT ?? '.EXE;.CMD;.BAT').split(';')] : [''];
  for (const candidate of candidates) {
    for (const ext of exts) {
      try {
        fs.accessSync(candidate + ext, fs.constants.X_OK);
        if (fs.statSync(candidate + ext).isFile()) {
          return candidate + ext;
        }
      } catch {
        // not this one
      }
    }
  }
  return undefined;
}

const SET_PATH = 'Set codefill.serverPath to your codefill (e.g. /path/to/codefill/.venv/bin/codefill).';

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
  const command = (c.get<string>('serverPath', 'codefill') || 'codefill').trim();
  const args = c.get<string[]>('serverArgs', ['lsp']);
  const found = findExecutable(command);
  if (found === undefined) {
    const where = path.isAbsolute(command) || command.startsWith('~/') ? 'does not exist or is not executable'
      : 'is not on PATH';
    report(`codefill: cannot start the language server: "${command}" ${where}. ${SET_PATH}`, 'Open Settings');
    return;
  }
  const stderr: string[] = [];
  let stderrClosed: Promise<void> = Promise.resolve();
  const lines = (input: Readable, onLine: (line: string) => void) =>
    readline.createInterface({ input, crlfDelay: Infinity, terminal: false, historySize: 0 }).on('line', onLine);
  const serverOptions: ServerOptions = { command: found ?? command, args };
  let self: CodefillClient | undefined; // the client these options are for (its error handler asks its state)
  const clientOptions: LanguageClientOptions = {
    documentSelector: [{ scheme: 'file' }, { scheme: 'untitled' }],
    initializationOptions: serverSettings(),
    synchronize: { configurationSection: 'codefill' },
    outputChannel: output, // one channel for every start, so that the log of the one before stays there
    revealOutputChannelOn: RevealOutputChannelOn.Never,
    initializationFailedHandler: () => false, // no retry: start() below reports it
    errorHandler: errorHandler(context, () => self),
    stdioOptions: {
      stdout: (input, channel) => lines(input, (line) => channel.info(line)),
      stderr: (input, channel) => {
        stderrClosed = new Promise((resolve) => input.once('close', () => resolve()));
        lines(input, (line) => {
          channel.error(line);
          if (/[^\s^~]/.test(line)) { // (not the ^^^^ markers under a line of a Python traceback)
            stderr.push(line.trim());
            stderr.splice(0, Math.max(0, stderr.length - STDERR_LINES));
          }
        });
      },
    },
    middleware: {
      workspace: {
        // answer workspace/configuration with the same shape as initializationOptions
        configuration: (params) => params.items.map((item) => (item.section === 'codefill' ? serverSettings() : null)),
      },
    },
  };
  const thisClient = (self = new CodefillClient('codefill', 'codefill', serverOptions, clientOptions));
  client = thisClient;
  try {
    await thisClient.start();
  } catch (err) {
    await Promise.race([stderrClosed, new Promise((resolve) => setTimeout(resolve, 1000))]);
    if (client === thisClient) {
      client = undefined;
    }
    const why = stderr.length ? `it stopped with: ${stderr.join(' | ')}` : `${err instanceof Error ? err.message : err}`;
    report(`codefill: the language server "${command}" did not start: ${why}. ${SET_PATH}`, 'Show Output',
      'Open Settings');
    return;
  }
  trackCursor(context);
}

// A server that stops before it has started is not started again (start() reports it: a broken install or setting
// fails the same way each time); one that stops later is started again by start(), MAX_RESTARTS times at most.
function errorHandler(context: vscode.ExtensionContext, self: () => CodefillClient | undefined): ErrorHandler {
  return {
    error: (_error, _message, count) => {
      if (count !== undefined && count <= 3) {
        return { action: ErrorAction.Continue, handled: true };
      }
      const c = self();
      if (!c || c.state !== State.Running || client !== c) {
        return { action: ErrorAction.Shutdown, handled: true }; // (writes to a server that did not start)
      }
      report('codefill: the connection to the language server keeps failing; it was stopped.', 'Show Output',
        'Restart');
      return { action: ErrorAction.Shutdown, handled: true };
    },
    closed: () => {
      const c = self();
      if (!c || c.state !== State.Running || client !== c) {
        return { action: CloseAction.DoNotRestart, handled: true };
      }
      const now = Date.now();
      restarts = restarts.filter((t) => now - t < RESTART_WINDOW_MS);
      if (restarts.length >= MAX_RESTARTS) {
        report(`codefill: the language server stopped ${restarts.length + 1} times in 3 minutes; it is not ` +
          'started again (the codefill output has its log).', 'Show Output', 'Restart');
        return { action: CloseAction.DoNotRestart, handled: true };
      }
      restarts.push(now);
      output?.warn('the language server stopped; starting it again');
      setTimeout(() => void stop().then(() => start(context)), 0);
      return { action: CloseAction.DoNotRestart, handled: true };
    },
  };
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
  output = vscode.window.createOutputChannel('codefill', { log: true });
  context.subscriptions.push(
    output,
    vscode.commands.registerCommand('codefill.restart', async () => {
      restarts = [];
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
    report(`codefill: cannot start the language server: ${err}`, 'Show Output');
  }
}

export async function deactivate(): Promise<void> {
  await stop();
}
