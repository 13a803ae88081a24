-- Neovim 0.11 (no vim.lsp.inline_completion): the small `codefill` Lua module requests inline completions itself,
-- shows them as ghost text with extmarks and accepts them with a key.
vim.opt.runtimepath:append(vim.fs.joinpath(vim.fn.expand('~'), 'src/codefill/editors/nvim'))

vim.lsp.enable('codefill')
require('codefill').setup({
  -- defaults:
  -- auto = true,            -- ask while typing (debounced); false: only on the `suggest` key
  -- debounce_ms = 150,
  -- keys = { accept = '<Tab>', next = '<M-]>', prev = '<M-[>', suggest = '<M-\\>', dismiss = '<C-]>' },
})
