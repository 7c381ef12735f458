-- :checkhealth codesearch

local M = {}

local health = vim.health or require("health")
local start = health.start or health.report_start
local ok = health.ok or health.report_ok
local warn = health.warn or health.report_warn
local err = health.error or health.report_error
local info = health.info or health.report_info

function M.check()
  local config = require("codesearch.config")
  local codesearch = require("codesearch")

  start("codesearch")
  if vim.fn.has("nvim-0.9") == 1 then
    ok("Neovim " .. tostring(vim.version()))
  else
    err("Neovim 0.9 or newer is needed (vim.lsp.start)")
  end

  local cmd = config.options.cmd
  if vim.fn.executable(cmd[1]) == 1 then
    local out = vim.fn.system({ cmd[1], "--version" })
    if vim.v.shell_error == 0 then
      ok(("server: %s (%s)"):format(vim.trim(out), vim.fn.exepath(cmd[1])))
    else
      err(("`%s --version` failed: %s"):format(cmd[1], vim.trim(out)))
    end
  else
    err(("`%s` is not executable"):format(cmd[1]), {
      "Install codesearch (pip install codesearch) into a virtual environment",
      "or set cmd = { '/path/to/venv/bin/codesearch', 'lsp' } in require('codesearch').setup()",
    })
  end

  local root = codesearch.root_dir()
  info("repository root: " .. root)
  local client = codesearch.client(root)
  if client == nil then
    info("server not started for this root (it starts on :CodeSearch, or when a source file opens after setup())")
  else
    local s = codesearch.status
    if s == nil then
      warn("server started (client " .. client.id .. "), no status yet")
    elseif s.state == "ready" then
      ok(("index ready: %d units"):format(s.units or 0))
    elseif s.state == "error" then
      err("index: " .. (s.message or "error"))
    else
      info(("index %s: %s"):format(s.state, s.message or ""))
    end
  end

  if pcall(require, "telescope") then
    ok("Telescope found: :Telescope codesearch (after require('telescope').load_extension('codesearch'))")
  else
    info("Telescope not installed (optional): :CodeSearch fills the quickfix list")
  end
end

return M
