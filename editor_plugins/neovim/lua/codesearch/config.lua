-- Options of the codesearch plugin: defaults, merging and validation.

local M = {}

---@class codesearch.Options
M.defaults = {
  -- The command that starts the language server.
  cmd = { "codesearch", "lsp" },
  -- Files or directories that mark a repository root (searched upward from the buffer or cwd).
  root_markers = { ".codesearch", ".codesearch.toml", ".git" },
  -- Buffers of these filetypes are attached to the server, so unsaved edits are searchable.
  filetypes = { "python", "java", "javascript", "javascriptreact", "go", "php", "ruby" },
  -- Attach to those buffers automatically (needs setup()).
  auto_attach = true,
  -- Results per search.
  k = 20,
  -- Sent as initializationOptions (see docs/lsp.md): modelPath, indexDir, ignorePatterns, mode,
  -- debounceMs, watch, threads, k.
  init_options = {},
  -- :CodeSearch opens the quickfix window when there are results.
  open_quickfix = true,
}

---@type codesearch.Options
M.options = vim.deepcopy(M.defaults)

local function check(name, value, kind, optional)
  if value == nil then
    if optional then
      return
    end
    error(("codesearch: option %s is required"):format(name), 3)
  end
  if type(value) ~= kind then
    error(("codesearch: option %s must be a %s, not %s"):format(name, kind, type(value)), 3)
  end
end

--- Merge user options over the defaults and validate them.
---@param opts table|nil
---@return codesearch.Options
function M.set(opts)
  opts = opts or {}
  check("opts", opts, "table")
  local merged = vim.tbl_deep_extend("force", vim.deepcopy(M.defaults), opts)
  -- Lists replace the defaults rather than merging index by index.
  for _, key in ipairs({ "cmd", "root_markers", "filetypes" }) do
    if opts[key] ~= nil then
      merged[key] = opts[key]
    end
  end
  check("cmd", merged.cmd, "table")
  if type(merged.cmd[1]) ~= "string" then
    error("codesearch: option cmd must be a list of strings, e.g. { 'codesearch', 'lsp' }", 2)
  end
  check("root_markers", merged.root_markers, "table")
  check("filetypes", merged.filetypes, "table")
  check("auto_attach", merged.auto_attach, "boolean")
  check("k", merged.k, "number")
  if merged.k < 1 or merged.k > 1000 then
    error("codesearch: option k must be from 1 to 1000", 2)
  end
  check("init_options", merged.init_options, "table")
  check("open_quickfix", merged.open_quickfix, "boolean")
  M.options = merged
  return merged
end

return M
