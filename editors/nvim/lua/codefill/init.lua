-- codefill ghost text for Neovim 0.11 (which has no vim.lsp.inline_completion), also usable on 0.12 for
-- explicitly requested alternatives (`suggest`).
--
--   require('codefill').setup()          -- automatic ghost text while typing, Tab accepts, Alt-]/Alt-[ cycle
--   require('codefill').suggest()        -- ask explicitly: several alternatives to cycle through
--
-- It sends `textDocument/inlineCompletion` to the attached `codefill` client, shows the answer with extmarks
-- (inline virtual text for the first line, virtual lines for the rest) and inserts it on accept.
local M = {}

local api = vim.api
local ns = api.nvim_create_namespace('codefill.ghost')
local AUTOMATIC, INVOKED = 2, 1

M.config = {
  auto = true,
  debounce_ms = 150,
  hl = 'Comment',
  keys = { accept = '<Tab>', next = '<M-]>', prev = '<M-[>', suggest = '<M-\\>', dismiss = '<C-]>' },
}

---@type table<integer, {items: table[]?, index: integer, request: integer?, client: vim.lsp.Client?, tick: integer?, cursor: integer[]?, timer: uv.uv_timer_t?}>
local state = {}

local function st(bufnr)
  state[bufnr] = state[bufnr] or { index = 1 }
  return state[bufnr]
end

local function client_for(bufnr)
  return vim.lsp.get_clients({ bufnr = bufnr, name = 'codefill' })[1]
end

-- LSP (line, character in the client's encoding) -> (0-based row, byte column)
local function byte_pos(bufnr, pos, encoding)
  local line = api.nvim_buf_get_lines(bufnr, pos.line, pos.line + 1, false)[1] or ''
  local ok, col = pcall(vim.str_byteindex, line, encoding, pos.character, false)
  return pos.line, ok and col or #line
end

local function item_text(item)
  local t = item.insertText
  return type(t) == 'table' and t.value or t or ''
end

--- Clear the ghost text of a buffer (and forget its items).
function M.dismiss(bufnr)
  bufnr = (bufnr == nil or bufnr == 0) and api.nvim_get_current_buf() or bufnr
  local s = st(bufnr)
  api.nvim_buf_clear_namespace(bufnr, ns, 0, -1)
  s.items, s.index = nil, 1
end

--- What the current item would insert after the cursor ("" when none), with the edit it makes.
---@return string text, table? edit {row, col, end_row, end_col, lines}
function M.current(bufnr)
  bufnr = (bufnr == nil or bufnr == 0) and api.nvim_get_current_buf() or bufnr
  local s = st(bufnr)
  local item = s.items and s.items[s.index]
  if not item or not s.client then
    return '', nil
  end
  local text = item_text(item)
  local cur = api.nvim_win_get_cursor(0)
  local row, col = cur[1] - 1, cur[2]
  local srow, scol, erow, ecol = row, col, row, col
  if item.range then
    srow, scol = byte_pos(bufnr, item.range.start, s.client.offset_encoding)
    erow, ecol = byte_pos(bufnr, item.range['end'], s.client.offset_encoding)
  end
  -- the part of the item between its start and the cursor is already in the buffer: show the rest
  local typed = ''
  if srow == row and scol <= col then
    typed = (api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1] or ''):sub(scol + 1, col)
  end
  if text:sub(1, #typed) ~= typed then
    return '', nil
  end
  return text:sub(#typed + 1), { srow, scol, erow, ecol, vim.split(text, '\n', { plain = true }) }
end

local function show(bufnr)
  api.nvim_buf_clear_namespace(bufnr, ns, 0, -1)
  local rest = M.current(bufnr)
  if rest == '' then
    return
  end
  local lines = vim.split(rest, '\n', { plain = true })
  local s = st(bufnr)
  local first = lines[1]
  if s.items and #s.items > 1 then
    if #lines == 1 then
      first = first .. (' (%d/%d)'):format(s.index, #s.items)
    end
  end
  local virt_lines = {}
  for i = 2, #lines do
    virt_lines[#virt_lines + 1] = { { lines[i], M.config.hl } }
  end
  local cur = api.nvim_win_get_cursor(0)
  api.nvim_buf_set_extmark(bufnr, ns, cur[1] - 1, cur[2], {
    virt_text = { { first, M.config.hl } },
    virt_text_pos = 'inline',
    virt_lines = #virt_lines > 0 and virt_lines or nil,
    hl_mode = 'combine',
  })
  -- on 0.12 the native ghost text of the same client would overlap ours
  local native = api.nvim_get_namespaces()['nvim.lsp.inline_completion']
  if native then
    api.nvim_buf_clear_namespace(bufnr, native, 0, -1)
  end
end

local cleanup = false
-- Without setup() (0.12, native ghost text plus `suggest`): still drop our ghost text when the buffer moves on.
local function ensure_cleanup()
  if cleanup then
    return
  end
  cleanup = true
  local group = api.nvim_create_augroup('codefill.cleanup', { clear = true })
  api.nvim_create_autocmd({ 'TextChangedI', 'CursorMovedI', 'InsertLeave', 'BufLeave' }, {
    group = group,
    callback = function(ev)
      if state[ev.buf] and state[ev.buf].items then
        M.dismiss(ev.buf)
      end
    end,
  })
end

--- Ask the server. kind: 1 invoked (several alternatives), 2 automatic (one, fast). on_done(items) is optional.
function M.request(kind, bufnr, on_done)
  bufnr = (bufnr == nil or bufnr == 0) and api.nvim_get_current_buf() or bufnr
  local client = client_for(bufnr)
  if not client then
    return false
  end
  ensure_cleanup()
  local s = st(bufnr)
  if s.request and s.client then
    s.client:cancel_request(s.request) -- the server stops decoding the stale one
    s.request = nil
  end
  local params = vim.lsp.util.make_position_params(0, client.offset_encoding)
  params.context = { triggerKind = kind or AUTOMATIC }
  local tick = api.nvim_buf_get_changedtick(bufnr)
  local cursor = api.nvim_win_get_cursor(0)
  local id
  local ok, rid = client:request('textDocument/inlineCompletion', params, function(err, result)
    if s.request == id then
      s.request = nil
    end
    local items = (not err and result) and (result.items or result) or {}
    local same = api.nvim_buf_is_valid(bufnr) and api.nvim_buf_get_changedtick(bufnr) == tick
      and vim.deep_equal(api.nvim_win_get_cursor(0), cursor)
    if same then
      s.client, s.items, s.index = client, #items > 0 and items or nil, 1
      show(bufnr)
    end
    if on_done then
      on_done(same and items or {}, err)
    end
  end, bufnr)
  if ok then
    id = rid
    s.request, s.client = rid, client
  end
  return ok
end

--- Ask explicitly: several alternatives (Alt-] / Alt-[ cycle).
function M.suggest(bufnr, on_done)
  return M.request(INVOKED, bufnr, on_done)
end

--- Cycle through the alternatives.
function M.select(count, bufnr)
  bufnr = (bufnr == nil or bufnr == 0) and api.nvim_get_current_buf() or bufnr
  local s = st(bufnr)
  if s.items and #s.items > 0 then
    s.index = (s.index - 1 + (count or 1)) % #s.items + 1
    show(bufnr)
  end
end

--- Insert the ghost text. Returns false when there is none (so a mapping can fall back).
function M.accept(bufnr)
  bufnr = (bufnr == nil or bufnr == 0) and api.nvim_get_current_buf() or bufnr
  local rest, edit = M.current(bufnr)
  if rest == '' or not edit then
    return false
  end
  local srow, scol, erow, ecol, lines = unpack(edit)
  M.dismiss(bufnr)
  api.nvim_buf_set_text(bufnr, srow, scol, erow, ecol, lines)
  local last = lines[#lines]
  api.nvim_win_set_cursor(0, { srow + #lines, (#lines == 1 and scol or 0) + #last })
  return true
end

local function schedule_request(bufnr)
  local s = st(bufnr)
  if s.timer then
    s.timer:stop()
    s.timer:close()
  end
  s.timer = vim.defer_fn(function()
    s.timer = nil
    if api.nvim_get_current_buf() == bufnr and api.nvim_get_mode().mode:sub(1, 1) == 'i' then
      M.request(AUTOMATIC, bufnr)
    end
  end, M.config.debounce_ms)
end

--- Idle-time warm-up: tell the server where the cursor is (debounced), so that it evaluates that place's prompt
--- before the first keystroke there (`codefill/didChangeCursor`; the server ignores it with `warmup = false`).
--- lsp/codefill.lua calls this from on_attach, for 0.11 and 0.12 alike.
function M.track_cursor(client, bufnr)
  local timer
  local group = api.nvim_create_augroup('codefill.cursor.' .. bufnr, { clear = true })
  api.nvim_create_autocmd({ 'CursorMoved', 'CursorMovedI', 'InsertEnter' }, {
    group = group,
    buffer = bufnr,
    callback = function()
      if timer then
        timer:stop()
        timer:close()
      end
      timer = vim.defer_fn(function()
        timer = nil
        if client:is_stopped() or not api.nvim_buf_is_valid(bufnr) or api.nvim_get_current_buf() ~= bufnr then
          return
        end
        local params = vim.lsp.util.make_position_params(0, client.offset_encoding)
        client:notify('codefill/didChangeCursor', { textDocument = params.textDocument, position = params.position })
      end, 100)
    end,
  })
  api.nvim_create_autocmd('LspDetach', {
    group = group,
    buffer = bufnr,
    callback = function(ev)
      if ev.data and ev.data.client_id == client.id then
        api.nvim_del_augroup_by_id(group)
      end
    end,
  })
end

function M.setup(opts)
  M.config = vim.tbl_deep_extend('force', M.config, opts or {})
  local group = api.nvim_create_augroup('codefill', { clear = true })
  api.nvim_create_autocmd({ 'TextChangedI', 'CursorMovedI', 'InsertEnter' }, {
    group = group,
    callback = function(ev)
      if not client_for(ev.buf) then
        return
      end
      M.dismiss(ev.buf)
      if M.config.auto then
        schedule_request(ev.buf)
      end
    end,
  })
  api.nvim_create_autocmd({ 'InsertLeave', 'BufLeave' }, {
    group = group,
    callback = function(ev)
      local s = st(ev.buf)
      if s.request and s.client then
        s.client:cancel_request(s.request)
        s.request = nil
      end
      M.dismiss(ev.buf)
    end,
  })
  local keys = M.config.keys
  if keys.accept then
    vim.keymap.set('i', keys.accept, function()
      if M.current() == '' then
        return api.nvim_replace_termcodes(keys.accept, true, false, true)
      end
      vim.schedule(function() M.accept() end)
      return ''
    end, { expr = true, desc = 'codefill: accept the ghost text' })
  end
  if keys.next then
    vim.keymap.set('i', keys.next, function() M.select(1) end, { desc = 'codefill: next alternative' })
  end
  if keys.prev then
    vim.keymap.set('i', keys.prev, function() M.select(-1) end, { desc = 'codefill: previous alternative' })
  end
  if keys.suggest then
    vim.keymap.set('i', keys.suggest, function() M.suggest() end, { desc = 'codefill: ask for alternatives' })
  end
  if keys.dismiss then
    vim.keymap.set('i', keys.dismiss, function() M.dismiss() end, { desc = 'codefill: dismiss the ghost text' })
  end
end

return M
