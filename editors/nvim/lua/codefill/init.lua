-- codefill ghost text for Neovim 0.11 (which has no vim.lsp.inline_completion), also usable on 0.12 for
-- explicitly requested alternatives (`suggest`).
--
--   require('codefill').setup()          -- automatic ghost text while typing, Tab accepts, Alt-]/Alt-[ cycle,
--                                        -- Alt-Right accepts the next word, Alt-Ctrl-Right the next line
--   require('codefill').suggest()        -- ask explicitly: several alternatives to cycle through
--   require('codefill').accept_word()    -- also for 0.12's native ghost text (init-0.12.lua maps it)
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
  keys = {
    accept = '<Tab>',
    -- Partial accept. VS Code's Ctrl+Right is a motion in Vim's insert mode (a word forward, :h i_<C-Right>), so the
    -- defaults are copilot.vim's: Alt-Right / Alt-Ctrl-Right, which Neovim leaves unmapped. Both fall back to the
    -- key itself when there is no ghost text.
    accept_word = '<M-Right>',
    accept_line = '<M-C-Right>',
    next = '<M-]>',
    prev = '<M-[>',
    suggest = '<M-\\>',
    dismiss = '<C-]>',
  },
}

---@type table<integer, {items: table[]?, index: integer, request: integer?, client: vim.lsp.Client?, own: integer[]?, timer: uv.uv_timer_t?}>
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

-- (0-based row, byte column) -> LSP position in the client's encoding
local function lsp_pos(bufnr, row, col, encoding)
  local line = api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1] or ''
  local ok, character = pcall(vim.str_utfindex, line, encoding, math.min(col, #line), false)
  return { line = row, character = ok and character or col }
end

-- The buffer's text from (srow, scol) to (row, col), "" when that is not forward.
local function text_between(bufnr, srow, scol, row, col)
  if srow > row or (srow == row and scol > col) then
    return ''
  end
  local ok, lines = pcall(api.nvim_buf_get_text, bufnr, srow, scol, row, col, {})
  return ok and table.concat(lines, '\n') or ''
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
  s.items, s.index, s.own = nil, 1, nil
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
  -- the part of the item between its start and the cursor is already in the buffer (typed, or accepted a word or a
  -- line at a time, possibly over several lines): show the rest
  local typed = text_between(bufnr, srow, scol, row, col)
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

-- Whether the buffer is as our own partial accept left it (changedtick and cursor): then the autocommands that
-- follow that edit keep the ghost text (its rest) instead of dismissing it.
local function own_edit(bufnr)
  local own = state[bufnr] and state[bufnr].own
  if not own then
    return false
  end
  local cur = api.nvim_win_get_cursor(0)
  return own[1] == api.nvim_buf_get_changedtick(bufnr) and own[2] == cur[1] and own[3] == cur[2]
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
      local moved = ev.event == 'TextChangedI' or ev.event == 'CursorMovedI'
      if state[ev.buf] and state[ev.buf].items and not (moved and own_edit(ev.buf)) then
        M.dismiss(ev.buf)
      end
    end,
  })
end

--- Show `items` (LSP InlineCompletionItems of `client`) as the buffer's ghost text, the first one selected.
function M.offer(bufnr, client, items)
  bufnr = (bufnr == nil or bufnr == 0) and api.nvim_get_current_buf() or bufnr
  ensure_cleanup()
  local s = st(bufnr)
  s.client, s.items, s.index, s.own = client, #items > 0 and items or nil, 1, nil
  show(bufnr)
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
      M.offer(bufnr, client, items)
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

-- The item's command after a full accept: the server attaches `codefill.accepted` (acceptance statistics), as
-- 0.12's native accept runs it. Items without a command (older servers) are fine.
local function run_command(client, item, bufnr)
  if not (client and item and type(item.command) == 'table' and item.command.command) then
    return
  end
  if client.exec_cmd then -- 0.11+
    client:exec_cmd(item.command, { bufnr = bufnr })
  else
    client:request('workspace/executeCommand', { command = item.command.command, arguments = item.command.arguments }, nil, bufnr)
  end
end

--- Insert the ghost text. Returns false when there is none (so a mapping can fall back).
function M.accept(bufnr)
  bufnr = (bufnr == nil or bufnr == 0) and api.nvim_get_current_buf() or bufnr
  local rest, edit = M.current(bufnr)
  if rest == '' or not edit then
    return false
  end
  local s = st(bufnr)
  local item, client = s.items[s.index], s.client
  local srow, scol, erow, ecol, lines = unpack(edit)
  M.dismiss(bufnr)
  api.nvim_buf_set_text(bufnr, srow, scol, erow, ecol, lines)
  local last = lines[#lines]
  api.nvim_win_set_cursor(0, { srow + #lines, (#lines == 1 and scol or 0) + #last })
  run_command(client, item, bufnr)
  return true
end

--- The first word of `rest`: its leading blanks, then a run of punctuation and/or a run of word characters (UTF-8
--- bytes count as word characters, so a character is never split); a leading line break takes the next line's
--- indentation with it. `foo(bar)` goes `foo`, `(bar`, `)`; `x = [1, 2]` goes `x`, ` =`, ` [1`, `,`, ` 2`, `]`.
function M.next_word(rest)
  local nl = rest:match('^\r?\n[ \t]*')
  if nl then
    return nl
  end
  local ws = rest:match('^[ \t]*')
  local after = rest:sub(#ws + 1)
  local punct = after:match('^[^%w_\128-\255%s]*')
  local word = after:sub(#punct + 1):match('^[%w_\128-\255]*')
  return ws .. punct .. word
end

--- The first line of `rest`, without its line break (the rest goes on under the cursor); when `rest` starts with a
--- line break, that break and the line after it.
function M.next_line(rest)
  local lead = rest:match('^\r?\n') or ''
  return lead .. rest:sub(#lead + 1):match('^[^\n]*')
end

-- (row, col) after inserting `lines` at (irow, icol), for a position at or after the insertion point
local function shifted(row, col, irow, icol, lines)
  if row ~= irow then
    return row + #lines - 1, col
  end
  if #lines == 1 then
    return row, col + #lines[1]
  end
  return row + #lines - 1, col - icol + #lines[#lines]
end

-- Insert `chunk` at the cursor as if typed and move the cursor past it; returns the cursor's (row, col) before.
local function insert_at_cursor(bufnr, chunk)
  local cur = api.nvim_win_get_cursor(0)
  local row, col = cur[1] - 1, cur[2]
  local lines = vim.split(chunk, '\n', { plain = true })
  api.nvim_buf_set_text(bufnr, row, col, row, col, lines)
  local nrow, ncol = shifted(row, col, row, col, lines)
  api.nvim_win_set_cursor(0, { nrow + 1, ncol })
  return row, col, lines
end

-- The module's own ghost text: insert the first part of the rest; the item stays, its range now covering what was
-- accepted, so the rest is shown at once (no new request) and Tab still inserts the whole item.
local function accept_part(bufnr, cut)
  local rest, edit = M.current(bufnr)
  local chunk = rest ~= '' and cut(rest) or ''
  if chunk == '' or not edit then
    return
  end
  if chunk == rest then -- the last part: that is accepting the item (its command runs)
    M.accept(bufnr)
    return
  end
  local s = st(bufnr)
  local item, enc = s.items[s.index], s.client.offset_encoding
  local srow, scol, erow, ecol = unpack(edit)
  local row, col, lines = insert_at_cursor(bufnr, chunk)
  if erow < row or (erow == row and ecol < col) then
    erow, ecol = row, col
  end
  erow, ecol = shifted(erow, ecol, row, col, lines)
  item.range = { start = lsp_pos(bufnr, srow, scol, enc), ['end'] = lsp_pos(bufnr, erow, ecol, enc) }
  -- the TextChangedI/CursorMovedI that this edit causes must not dismiss the item (see `own_edit`)
  local cur = api.nvim_win_get_cursor(0)
  s.own = { api.nvim_buf_get_changedtick(bufnr), cur[1], cur[2] }
  show(bufnr)
  -- A partial accept does not run the item's command (`codefill.accepted` counts accepted suggestions).
end

-- 0.12's native ghost text: vim.lsp.inline_completion.get() hands us its item (and hides it); insert the first part.
-- The native client asks again when the cursor moves (CursorMovedI), and the server answers the rest from its
-- typed-through cache, so the rest is shown again after its debounce (200 ms).
local function accept_native_part(bufnr, item, cut)
  local client = vim.lsp.get_client_by_id(item.client_id)
  local insert_text = item.insert_text
  if type(insert_text) ~= 'string' then -- a snippet: no partial form, expand it whole (codefill sends plain text)
    vim.snippet.expand(insert_text.value)
    return
  end
  local cur = api.nvim_win_get_cursor(0)
  local row, col = cur[1] - 1, cur[2]
  local range = item.range
  local typed = range and text_between(bufnr, range.start.row, range.start.col, row, col) or ''
  if insert_text:sub(1, #typed) ~= typed then
    return
  end
  local rest = insert_text:sub(#typed + 1)
  local chunk = rest ~= '' and cut(rest) or ''
  if chunk == '' then
    return
  end
  if chunk ~= rest then
    insert_at_cursor(bufnr, chunk) -- a partial accept does not run the item's command
    return
  end
  -- the last part: accept the item as inline_completion.get() would (its range replaced, its command run)
  local lines = vim.split(insert_text, '\n', { plain = true })
  if range then
    api.nvim_buf_set_text(bufnr, range.start.row, range.start.col, range.end_.row, range.end_.col, lines)
    local r, c = shifted(range.start.row, range.start.col, range.start.row, range.start.col, lines)
    api.nvim_win_set_cursor(0, { r + 1, c })
  else
    insert_at_cursor(bufnr, insert_text)
  end
  if client and item.command then
    client:exec_cmd(item.command, { bufnr = bufnr })
  end
end

local function accept_with(cut, bufnr)
  bufnr = (bufnr == nil or bufnr == 0) and api.nvim_get_current_buf() or bufnr
  if M.current(bufnr) ~= '' then
    vim.schedule(function()
      accept_part(bufnr, cut)
    end)
    return true
  end
  local native = vim.lsp.inline_completion
  if native then
    return native.get({
      bufnr = bufnr,
      on_accept = function(item)
        accept_native_part(bufnr, item, cut)
      end,
    })
  end
  return false
end

--- Insert the next word of the ghost text (ours, or 0.12's native one); the rest stays offered. Returns false when
--- there is no ghost text. Like vim.lsp.inline_completion.get(), the edit happens on the next turn of the event loop,
--- so this works from an <expr> mapping.
function M.accept_word(bufnr)
  return accept_with(M.next_word, bufnr)
end

--- Insert the next line of the ghost text (see `next_line`); the rest stays offered. As `accept_word`.
function M.accept_line(bufnr)
  return accept_with(M.next_line, bufnr)
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
      if not client_for(ev.buf) or (ev.event ~= 'InsertEnter' and own_edit(ev.buf)) then
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
  for name, fn in pairs({ accept_word = M.accept_word, accept_line = M.accept_line }) do
    local key = keys[name]
    if key then
      vim.keymap.set('i', key, function()
        if fn() then
          return ''
        end
        return key -- (an <expr> map replaces key codes itself)
      end, { expr = true, desc = 'codefill: accept the next ' .. name:sub(8) .. ' of the ghost text' })
    end
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
