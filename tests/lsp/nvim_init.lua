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
  out.module_accepted = codefill.accept(bufnr)
  out.module_lines = vim.api.nvim_buf_get_lines(bufnr, 0, -1, false)
  out.module_cursor = vim.api.nvim_win_get_cursor(0)
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
