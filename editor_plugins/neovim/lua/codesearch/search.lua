-- :CodeSearch: ask the server, fill the quickfix list in the server's order.

local codesearch = require("codesearch")
local config = require("codesearch.config")
local ui = require("codesearch.ui")

local M = {}

--- Search; `callback(err, results, client)`. Returns a cancel function.
---@param query string query text (may contain lang:, path:, kind: and "phrases")
---@param opts table|nil { k = number, language = string|string[], path = string|string[], kind = ..., root = string }
function M.search(query, opts, callback)
  opts = opts or {}
  local params = {
    query = query,
    k = opts.k or config.options.k,
    language = opts.language,
    path = opts.path,
    kind = opts.kind,
    mode = opts.mode,
  }
  return codesearch.request("codesearch/search", params, function(err, result, client)
    if err then
      callback(err)
    else
      callback(nil, result.results, client)
    end
  end, opts.root)
end

--- The :CodeSearch command: results go to the quickfix list (opened, or jumped to with `jump`).
---@param query string
---@param opts table|nil { jump = boolean, k = number }
function M.run(query, opts)
  opts = opts or {}
  query = vim.trim(query or "")
  if query == "" then
    vim.notify("codesearch: usage: :CodeSearch describe the code (lang:go path:src/ kind:method)", vim.log.levels.WARN)
    return
  end
  return M.search(query, opts, function(err, results, client)
    if err then
      vim.notify("codesearch: " .. codesearch.message(err), vim.log.levels.ERROR)
    else
      local items = ui.qf_items(results, client.offset_encoding or "utf-16")
      vim.fn.setqflist({}, " ", { title = "CodeSearch: " .. query, items = items })
      if #items == 0 then
        vim.notify("codesearch: no results for " .. query, vim.log.levels.INFO)
      elseif opts.jump then
        vim.cmd("cfirst")
      elseif config.options.open_quickfix then
        vim.cmd("copen")
      end
    end
    vim.api.nvim_exec_autocmds("User", { pattern = "CodeSearchDone", modeline = false })
  end)
end

return M
