-- Neovim 0.11 (no vim.lsp.inline_completion): the small `codefill` Lua module requests inline completions itself,
-- shows them as ghost text with extmarks and accepts them with a key.
-- Source this file from your init.lua: `dofile('/path/to/codefill/editors/nvim/init-0.11.lua')` (or start
-- `nvim -u /path/to/codefill/editors/nvim/init-0.11.lua`); it puts its own folder, editors/nvim, on 'runtimepath'.
-- If you copy the lines instead, put your checkout's editors/nvim path in place of `here`.
local here = vim.fs.dirname(vim.fs.abspath(debug.getinfo(1, 'S').source:sub(2)))
vim.opt.runtimepath:append(here)

vim.lsp.enable('codefill')
require('codefill').setup({
  -- defaults:
  -- auto = true,            -- ask while typing (debounced); false: only on the `suggest` key
  -- debounce_ms = 150,
  -- keys = { accept = '<Tab>', accept_word = '<M-Right>', accept_line = '<M-C-Right>',
  --          next = '<M-]>', prev = '<M-[>', suggest = '<M-\\>', dismiss = '<C-]>' },   -- a key = false: no mapping
})
