-- Driven by test_lsp_nvim.py: nvim --headless --clean -u nvim_init.lua FILE
-- Environment: CODEFILL_PYTHON, CODEFILL_RTP (editors/nvim), CODEFILL_OUT (JSON results), CODEFILL_LINE/COL (1-based
-- line, 0-based byte column of the cursor).
local out = {}
local function step(name) -- progress, for debugging a hang: CODEFILL_OUT .. '.log'
  local f = io.open(os.getenv('CODEFILL_OUT') .. '.log', 'a')
  if f then
    f:write(name, ' ', vim.api.nvim_get_mode().mode, '\n')
    f:close()
  end
end
local function finish()
  local f = assert(io.open(os.getenv('CODEFILL_OUT'), 'w'))
  f:write(vim.json.encode(out))
  f:close()
  vim.cmd('qa!')
end

-- The test body runs in a coroutine that yields to Neovim's main loop (so startinsert, autocommands, timers and LSP
-- callbacks happen as they do for a person), resumed by timers.
local co
local function sleep(ms)
  vim.defer_fn(function()
    assert(coroutine.resume(co))
  end, ms)
  coroutine.yield()
end
local function wait_until(timeout, cond)
  local waited = 0
  while not cond() do
    if waited >= timeout then
      return false
    end
    sleep(50)
    waited = waited + 50
  end
  return true
end

local function body()
  vim.opt.runtimepath:append(os.getenv('CODEFILL_RTP'))
  vim.lsp.config('codefill', {
    cmd = { os.getenv('CODEFILL_PYTHON'), '-m', 'codefill', 'lsp' },
    init_options = { threads = 1, timeBudgetMs = vim.NIL, suggestions = 3, gateThreshold = 0, adaptiveSamples = 0 },
  })
  vim.lsp.enable('codefill')
  vim.cmd('filetype on') -- normally switched on after the init file; vim.lsp.enable attaches on FileType
  vim.cmd.edit(vim.fn.argv(0))
  local bufnr = vim.api.nvim_get_current_buf()
  local client
  out.attached = wait_until(30000, function()
    client = vim.lsp.get_clients({ bufnr = bufnr, name = 'codefill' })[1]
    return client ~= nil and client.initialized == true
  end)
  assert(out.attached, 'codefill did not attach')
  step('out.offset_encoding')
  out.offset_encoding = client.offset_encoding
  out.inline_provider = client.server_capabilities.inlineCompletionProvider ~= nil
  out.supports_inline = client:supports_method('textDocument/inlineCompletion', bufnr)
  out.command_provider = client.server_capabilities.executeCommandProvider or vim.NIL
  -- every command the client runs (then run as usual): full accepts run the item's command, partial ones do not
  local commands = {}
  local exec_cmd = client.exec_cmd
  client.exec_cmd = function(self, command, ...)
    commands[#commands + 1] = command
    return exec_cmd(self, command, ...)
  end
  local function ghost_text(ns_name)
    local ns_id = vim.api.nvim_get_namespaces()[ns_name]
    local mark = ns_id and vim.api.nvim_buf_get_extmarks(bufnr, ns_id, 0, -1, { details = true })[1]
    if not mark then
      return nil
    end
    local chunks = {}
    for _, chunk in ipairs(mark[4].virt_text or {}) do
      chunks[#chunks + 1] = chunk[1]
    end
    for _, line in ipairs(mark[4].virt_lines or {}) do
      chunks[#chunks + 1] = '\n' .. line[1][1]
    end
    return table.concat(chunks)
  end

  local row = tonumber(os.getenv('CODEFILL_LINE'))
  local function insert_at_end()
    vim.api.nvim_win_set_cursor(0, { row, 0 })
    vim.cmd('startinsert!') -- like `A`: insert mode at the end of the line
    sleep(100)
  end
  local function leave_insert()
    vim.cmd('stopinsert')
    sleep(100)
  end
  insert_at_end()
  out.cursor = vim.api.nvim_win_get_cursor(0)
  out.mode = vim.api.nvim_get_mode().mode

  step('-- 0. the cursor notification (lsp/codefill.lua on_attach) warms the place')
  out.cursor_warmed = wait_until(30000, function()
    local r = client:request_sync('codefill/backgroundStats', vim.NIL, 1000, bufnr)
    return r ~= nil and r.result ~= nil and (r.result.cursor_runs or 0) >= 1
  end)

  step('-- 1. a plain')
  -- 1. a plain request through Neovim's LSP client
  local params = vim.lsp.util.make_position_params(0, client.offset_encoding)
  params.context = { triggerKind = 2 }
  local answered, res, res_err = false, nil, nil
  client:request('textDocument/inlineCompletion', params, function(e, r)
    answered, res, res_err = true, r, e
  end, bufnr)
  wait_until(120000, function() return answered end)
  out.sync = res or vim.NIL
  out.sync_error = res_err or vim.NIL
  leave_insert()

  step('-- 2. the native')
  -- 2. the native ghost text (0.12): insert mode at the cursor, wait for the extmark, accept with get()
  if vim.lsp.inline_completion then
    vim.lsp.inline_completion.enable(true, { bufnr = bufnr })
    insert_at_end()
    local native_ns = vim.api.nvim_get_namespaces()['nvim.lsp.inline_completion']
    out.native_shown = wait_until(120000, function()
      native_ns = native_ns or vim.api.nvim_get_namespaces()['nvim.lsp.inline_completion']
      return native_ns ~= nil and #vim.api.nvim_buf_get_extmarks(bufnr, native_ns, 0, -1, {}) > 0
    end)
    if out.native_shown then
      local mark = vim.api.nvim_buf_get_extmarks(bufnr, native_ns, 0, -1, { details = true })[1]
      local chunks = {}
      for _, chunk in ipairs(mark[4].virt_text or {}) do
        chunks[#chunks + 1] = chunk[1]
      end
      out.native_ghost = table.concat(chunks)
      out.native_accepted = vim.lsp.inline_completion.get()
      sleep(300)
      out.native_line = vim.api.nvim_buf_get_lines(bufnr, row - 1, row, false)[1]
      out.native_commands = vim.deepcopy(commands)
      -- partial accept on the native ghost text: back to the original line, wait for the ghost text, accept a word
      leave_insert()
      -- (`math.`: here the model suggests several words; after `return ` it says one number)
      vim.api.nvim_buf_set_lines(bufnr, row - 1, row, false, { vim.split(os.getenv('CODEFILL_TEXT'), '\n')[row] .. 'math.' })
      commands = {}
      insert_at_end()
      out.native_shown_again = wait_until(120000, function() return ghost_text('nvim.lsp.inline_completion') ~= nil end)
      out.native_ghost_before_word = ghost_text('nvim.lsp.inline_completion') or vim.NIL
      out.native_word_accepted = require('codefill').accept_word(bufnr)
      sleep(100)
      out.native_line_after_word = vim.api.nvim_buf_get_lines(bufnr, row - 1, row, false)[1]
      -- the client asks again at the new place; the server answers the rest (typed-through)
      wait_until(60000, function() return ghost_text('nvim.lsp.inline_completion') ~= nil end)
      out.native_rest_after_word = ghost_text('nvim.lsp.inline_completion') or vim.NIL
      out.native_commands_after_word = #commands
    end
    leave_insert()
    vim.lsp.inline_completion.enable(false, { bufnr = bufnr })
    -- back to the original text for the module's turn
    vim.api.nvim_buf_set_lines(bufnr, 0, -1, false, vim.split(os.getenv('CODEFILL_TEXT'), '\n', { plain = true }))
  end
  insert_at_end()

  step('-- 3. the 0.11')
  -- 3. the 0.11 fallback module: an invoked request (alternatives), ghost text as extmarks, accept
  local codefill = require('codefill')
  local got
  codefill.suggest(bufnr, function(items, e)
    got = { items = items, err = e }
  end)
  out.module_answered = wait_until(120000, function() return got ~= nil end)
  out.module_items = got and #got.items or 0
  local ns = vim.api.nvim_get_namespaces()['codefill.ghost']
  local marks = vim.api.nvim_buf_get_extmarks(bufnr, ns, 0, -1, { details = true })
  out.module_marks = #marks
  out.module_ghost = codefill.current(bufnr)
  codefill.select(1, bufnr)
  out.module_second = codefill.current(bufnr)
  codefill.select(-1, bufnr)
  step('out.module_accepted')
  commands = {}
  out.module_accepted = codefill.accept(bufnr)
  out.module_lines = vim.api.nvim_buf_get_lines(bufnr, 0, -1, false)
  out.module_cursor = vim.api.nvim_win_get_cursor(0)
  out.module_commands = vim.deepcopy(commands) -- the accepted item's own command (codefill.accepted, its id)
  out.module_item_command = got and got.items[1] and got.items[1].command or vim.NIL
  sleep(500) -- the server records the accept (stats.jsonl, read by the test)

  step('-- 4. partial accept in the 0.11 module')
  -- 4. partial accept in the module: a known two-line item at the cursor, a word, then a line, then the rest
  leave_insert()
  vim.api.nvim_buf_set_lines(bufnr, 0, -1, false, vim.split(os.getenv('CODEFILL_TEXT'), '\n', { plain = true }))
  insert_at_end()
  local cur = vim.api.nvim_win_get_cursor(0)
  local pos = vim.lsp.util.make_position_params(0, client.offset_encoding).position
  local item = { insertText = 'math.pi * radius ** 2  # area\n    return area', range = { start = pos, ['end'] = pos },
                 command = { title = 'codefill: accepted', command = 'codefill.accepted', arguments = { 'test-item' } } }
  codefill.offer(bufnr, client, { item })
  commands = {}
  local function snapshot(name)
    out[name] = { line = vim.api.nvim_buf_get_lines(bufnr, cur[1] - 1, -1, false), rest = codefill.current(bufnr),
                  ghost = ghost_text('codefill.ghost') or vim.NIL, commands = #commands,
                  cursor = vim.api.nvim_win_get_cursor(0) }
  end
  snapshot('partial_start')
  out.partial_word_ok = codefill.accept_word(bufnr)
  sleep(200) -- the edit is scheduled (as from an <expr> mapping), then TextChangedI/CursorMovedI must keep the item
  snapshot('partial_word')
  codefill.accept_word(bufnr)
  sleep(200)
  snapshot('partial_word2')
  codefill.accept_line(bufnr)
  sleep(200)
  snapshot('partial_line')
  codefill.accept_line(bufnr) -- the last line: the whole item is in, that is an accept (its command runs)
  sleep(200)
  snapshot('partial_last')
  out.partial_none = codefill.accept_word(bufnr) -- nothing left: false (a mapping falls back to its key)
end

co = coroutine.create(function()
  local ok, err = xpcall(body, debug.traceback)
  if not ok then
    out.error = err
  end
  finish()
end)
vim.schedule(function()
  assert(coroutine.resume(co))
end)
