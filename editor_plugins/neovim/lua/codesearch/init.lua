-- codesearch for Neovim: starts `codesearch lsp` with the built-in LSP client and talks to it.
-- All ranking happens in the server; this plugin only sends requests and shows answers.

local config = require("codesearch.config")

local M = {}

--- The last `codesearch/status` notification (see docs/lsp.md), or nil.
M.status = nil

local augroup = vim.api.nvim_create_augroup("codesearch", { clear = true })

local function get_clients(filter)
  if vim.lsp.get_clients then
    return vim.lsp.get_clients(filter)
  end
  return vim.lsp.get_active_clients(filter) -- Neovim 0.9
end

local function client_request(client, method, params, handler)
  if vim.fn.has("nvim-0.11") == 1 then
    return client:request(method, params, handler)
  end
  return client.request(method, params, handler)
end

local function client_cancel(client, id)
  if vim.fn.has("nvim-0.11") == 1 then
    return client:cancel_request(id)
  end
  return client.cancel_request(id)
end

--- Set options and attach to source buffers as they are opened.
---@param opts table|nil see codesearch.config
function M.setup(opts)
  config.set(opts)
  vim.api.nvim_clear_autocmds({ group = augroup })
  if config.options.auto_attach then
    vim.api.nvim_create_autocmd("FileType", {
      group = augroup,
      pattern = config.options.filetypes,
      callback = function(ev)
        M.attach(ev.buf)
      end,
      desc = "codesearch: attach source buffers to the server",
    })
    -- Buffers already open when setup() runs.
    for _, buf in ipairs(vim.api.nvim_list_bufs()) do
      if vim.api.nvim_buf_is_loaded(buf) and vim.tbl_contains(config.options.filetypes, vim.bo[buf].filetype) then
        M.attach(buf)
      end
    end
  end
end

--- The repository root for a path (a file or directory; default: the current directory).
---@param path string|nil
---@return string
function M.root_dir(path)
  path = path and path ~= "" and vim.fs.normalize(path) or vim.fn.getcwd()
  if vim.fn.isdirectory(path) == 0 then
    path = vim.fs.dirname(path)
  end
  local found = vim.fs.find(config.options.root_markers, { path = path, upward = true })[1]
  if found then
    return vim.fs.dirname(found)
  end
  return path
end

local function lsp_config(root)
  return {
    name = "codesearch",
    cmd = config.options.cmd,
    root_dir = root,
    workspace_folders = { { uri = vim.uri_from_fname(root), name = vim.fs.basename(root) } },
    init_options = config.options.init_options,
    handlers = {
      ["codesearch/status"] = function(_, params)
        M.on_status(params)
      end,
    },
  }
end

--- Record a `codesearch/status` notification and fire `User CodeSearchStatus`.
function M.on_status(params)
  M.status = params
  vim.api.nvim_exec_autocmds("User", { pattern = "CodeSearchStatus", modeline = false })
end

--- The running client for `root`, if any.
function M.client(root)
  for _, client in ipairs(get_clients({ name = "codesearch" })) do
    if client.config.root_dir == root then
      return client
    end
  end
  return nil
end

--- Start (or reuse) the server for `root`; attach `bufnr` if given. Returns the client id.
---@param root string|nil
---@param bufnr integer|nil
---@return integer|nil
function M.start(root, bufnr)
  root = root or M.root_dir()
  local existing = M.client(root)
  if bufnr == nil then
    if existing then
      return existing.id
    end
    if vim.fn.has("nvim-0.11") == 1 then
      return vim.lsp.start(lsp_config(root), { attach = false })
    end
    return vim.lsp.start_client(lsp_config(root))
  end
  return vim.lsp.start(lsp_config(root), {
    bufnr = bufnr,
    reuse_client = function(client, conf)
      return client.name == conf.name and client.config.root_dir == conf.root_dir
    end,
  })
end

--- Attach a buffer (its unsaved text becomes searchable).
function M.attach(bufnr)
  local name = vim.api.nvim_buf_get_name(bufnr)
  if name == "" or vim.bo[bufnr].buftype ~= "" then
    return
  end
  M.start(M.root_dir(name), bufnr)
end

--- Run `fn(client)` once the client has finished `initialize` (or `fn(nil, err)` if it stopped).
local function when_ready(client_id, fn, waited)
  local client = vim.lsp.get_client_by_id(client_id)
  if client == nil or (client.is_stopped and client:is_stopped()) then
    fn(nil, "the codesearch server stopped (see :checkhealth codesearch and :LspLog)")
  elseif client.initialized then
    fn(client)
  elseif (waited or 0) > 120000 then
    fn(nil, "the codesearch server did not initialize")
  else
    vim.defer_fn(function()
      when_ready(client_id, fn, (waited or 0) + 20)
    end, 20)
  end
end

--- Send a request to the server of `root` (started if needed).
--- `callback(err, result, client)`; `err` is a string or an LSP error. Returns a cancel function.
---@return fun()
function M.request(method, params, callback, root)
  local id = M.start(root)
  if id == nil then
    callback("cannot start " .. table.concat(config.options.cmd, " "))
    return function() end
  end
  local cancelled, request_id, req_client = false, nil, nil
  when_ready(id, function(client, err)
    if client == nil then
      callback(err)
      return
    end
    if cancelled then
      return
    end
    local ok
    ok, request_id = client_request(client, method, params, function(e, result)
      callback(e, result, client)
    end)
    if not ok then
      callback("the codesearch server is not running")
    end
    req_client = client
  end)
  return function()
    cancelled = true
    if req_client and request_id then
      client_cancel(req_client, request_id)
    end
  end
end

local function message(err)
  if type(err) == "table" then
    return err.message or vim.inspect(err)
  end
  return tostring(err)
end
M.message = message

--- `codesearch.reindex`: re-check every file now.
function M.reindex()
  M.request("workspace/executeCommand", { command = "codesearch.reindex", arguments = {} }, function(err, result)
    if err then
      vim.notify("codesearch: " .. message(err), vim.log.levels.ERROR)
      return
    end
    local files, units, embedded = 0, 0, 0
    for _, r in ipairs(result.roots or {}) do
      files, units, embedded = files + (r.files or 0), units + (r.units or 0), embedded + (r.embedded or 0)
    end
    vim.notify(("codesearch: %d files, %d units (%d embedded)"):format(files, units, embedded))
  end)
end

--- `codesearch.status`, printed.
function M.show_status()
  M.request("workspace/executeCommand", { command = "codesearch.status", arguments = {} }, function(err, result)
    if err then
      vim.notify("codesearch: " .. message(err), vim.log.levels.ERROR)
      return
    end
    M.status = result
    local lines = { "codesearch: " .. result.message }
    for _, r in ipairs(result.roots or {}) do
      table.insert(lines, ("  %s: %s, %s%s"):format(vim.uri_to_fname(r.root), r.state, r.message,
        r.freshness ~= "" and (" (kept fresh by " .. r.freshness .. ")") or ""))
    end
    vim.notify(table.concat(lines, "\n"))
  end)
end

--- A short status for statuslines, e.g. "codesearch: 1234 units".
function M.statusline()
  local s = M.status
  if s == nil then
    return ""
  end
  if s.state == "ready" then
    return ("codesearch: %d units"):format(s.units or 0)
  end
  return "codesearch: " .. (s.message or s.state)
end

return M
