-- Neovim 0.12+: native ghost text (vim.lsp.inline_completion). Source this from init.lua or copy the lines.
-- Adjust the path to your codefill checkout (or copy lsp/codefill.lua into ~/.config/nvim/lsp/).
vim.opt.runtimepath:append(vim.fs.joinpath(vim.fn.expand('~'), 'src/codefill/editors/nvim'))

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
-- Several alternatives on request (0.12 only asks automatically, which answers one): Alt-\ via the small module.
vim.keymap.set('i', '<M-\\>', function() require('codefill').suggest() end)
