-- User commands of codesearch (modules load on first use).

if vim.g.loaded_codesearch == 1 then
  return
end
vim.g.loaded_codesearch = 1

if vim.fn.has("nvim-0.9") == 0 then
  vim.notify_once("codesearch needs Neovim 0.9 or newer", vim.log.levels.ERROR)
  return
end

vim.api.nvim_create_user_command("CodeSearch", function(o)
  require("codesearch.search").run(o.args, { jump = o.bang })
end, {
  nargs = "+",
  bang = true,
  desc = "codesearch: semantic search into the quickfix list (! jumps to the first result)",
})

vim.api.nvim_create_user_command("CodeSearchReindex", function()
  require("codesearch").reindex()
end, { nargs = 0, desc = "codesearch: re-check every file of the index" })

vim.api.nvim_create_user_command("CodeSearchStatus", function()
  require("codesearch").show_status()
end, { nargs = 0, desc = "codesearch: show the index state" })
