-- Neovim 0.12+: native ghost text (vim.lsp.inline_completion).
-- Source this file from your init.lua: `dofile('/path/to/codefill/editors/nvim/init-0.12.lua')` (or start
-- `nvim -u /path/to/codefill/editors/nvim/init-0.12.lua`); it puts its own folder, editors/nvim, on 'runtimepath'.
-- If you copy the lines instead, put your checkout's editors/nvim path in place of `here`.
local here = vim.fs.dirname(vim.fs.abspath(debug.getinfo(1, 'S').source:sub(2)))
vim.opt.runtimepath:append(here)

vim.lsp.enable('codefill')
vim.lsp.inline_completion.enable()

-- Tab accepts the ghost text (falls back to a normal Tab); Alt-] / Alt-[ cycle through the alternatives.
vim.keymap.set('i', '<Tab>', function()
  local codefill = require('codefill')
  if codefill.current() ~= '' then -- alternatives asked for with Alt-\
    vim.schedule(codefill.accept)
    return ''
  end
  if not vim.lsp.inline_completion.get() then
    return '<Tab>'
  end
end, { expr = true, desc = 'codefill: accept the inline completion' })
vim.keymap.set('i', '<M-]>', function()
  if require('codefill').current() ~= '' then return require('codefill').select(1) end
  vim.lsp.inline_completion.select({ count = 1 })
end)
vim.keymap.set('i', '<M-[>', function()
  if require('codefill').current() ~= '' then return require('codefill').select(-1) end
  vim.lsp.inline_completion.select({ count = -1 })
end)
-- Alt-Right accepts the next word of the ghost text, Alt-Ctrl-Right its next line (VS Code's Ctrl+Right is a Vim
-- insert-mode motion; these are copilot.vim's keys). 0.12 hands the item to `on_accept` (vim.lsp.inline_completion.get),
-- which inserts the part; the client asks again as the cursor moves and the server answers the rest from its cache.
-- A full accept (Tab) runs the item's command (0.12 does that itself), a partial one does not.
for key, accept in pairs({ ['<M-Right>'] = 'accept_word', ['<M-C-Right>'] = 'accept_line' }) do
  vim.keymap.set('i', key, function()
    if not require('codefill')[accept]() then
      return key
    end
    return ''
  end, { expr = true, desc = 'codefill: ' .. accept:gsub('_', ' the next ') .. ' of the ghost text' })
end
-- Several alternatives on request (0.12 only asks automatically, which answers one): Alt-\ via the small module.
vim.keymap.set('i', '<M-\\>', function() require('codefill').suggest() end)
