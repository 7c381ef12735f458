-- Neovim 0.11 native LSP config: `vim.lsp.enable("codesearch")` attaches the server to source
-- buffers without calling require("codesearch").setup(). The commands (:CodeSearch) work either way.
return {
  cmd = { "codesearch", "lsp" },
  filetypes = { "python", "java", "javascript", "javascriptreact", "go", "php", "ruby" },
  root_markers = { ".codesearch", ".codesearch.toml", ".git" },
  handlers = {
    ["codesearch/status"] = function(_, params)
      require("codesearch").on_status(params)
    end,
  },
}
