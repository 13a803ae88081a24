-- codefill language server, for Neovim 0.11+ (`vim.lsp.config` / `vim.lsp.enable`).
-- Put this directory (editors/nvim) on 'runtimepath', then in init.lua:
--   vim.lsp.enable('codefill')
-- Override anything with vim.lsp.config('codefill', { init_options = { maxTokens = 64 } }).
---@type vim.lsp.Config
return {
  cmd = { 'codefill', 'lsp' },
  -- no `filetypes`: attach to every buffer (disable languages with init_options.disabledLanguages)
  root_markers = { '.git' },
  -- where the cursor is, so the server warms that place's prompt while you read (see lua/codefill/init.lua)
  on_attach = function(client, bufnr)
    local ok, codefill = pcall(require, 'codefill')
    if ok then
      codefill.track_cursor(client, bufnr)
    end
  end,
  -- Settings (initializationOptions): add them with vim.lsp.config('codefill', { init_options = { ... } }), e.g.
  --   model = '~/models/qwen2.5-coder-1.5b-q8_0.gguf',  -- default: the configured model, else the embedded one
  --   maxTokens = 128, mode = 'auto' ('line' | 'block'), timeBudgetMs = 1000, suggestions = 3,
  --   disabledLanguages = { 'markdown', 'text' },
  --   gateThreshold = 0.389 (hide likely-wrong ghost text; 0: show all), adaptiveSamples = 7 (default: 7 on a GPU, 0 on a CPU),
  -- No empty `init_options = {}` here: Lua's empty table goes out as the JSON list [] and the server says
  -- "settings must be a JSON object, got list".
}
