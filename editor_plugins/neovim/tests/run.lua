-- Headless specs of the codesearch plugin against the real server.
-- Run from a copy of tests/fixtures/lsp_repo (the current directory) with:
--   CODESEARCH_SERVER=/path/to/codesearch nvim --headless -u NONE -i NONE -n -l tests/run.lua
-- tests/test_neovim.py does this. Prints one "ok"/"not ok" line per spec, exits non-zero on failure.

local here = vim.fs.dirname(vim.fs.normalize(debug.getinfo(1, "S").source:sub(2)))
local plugin_root = vim.fs.dirname(here)
vim.opt.runtimepath:prepend(plugin_root)
vim.cmd("runtime plugin/codesearch.lua")
vim.cmd("filetype on")

local server = assert(os.getenv("CODESEARCH_SERVER"), "set CODESEARCH_SERVER")
local root = vim.fn.getcwd()
local TIMEOUT = 120000

local failures, count = 0, 0
local report = os.getenv("CODESEARCH_SPEC_REPORT") -- one JSON line per spec, for tests/test_neovim.py
local function it(name, fn)
  count = count + 1
  local ok, err = xpcall(fn, debug.traceback)
  if not ok then
    failures = failures + 1
  end
  -- Leading newline: Neovim's own messages (e.g. "Running healthchecks...") end without one.
  io.stdout:write(("\n%s %d - %s%s\n"):format(ok and "ok" or "not ok", count, name, ok and "" or ("\n" .. err)))
  if report then
    local f = assert(io.open(report, "a"))
    f:write(vim.json.encode({ name = name, ok = ok, error = ok and vim.NIL or err }) .. "\n")
    f:close()
  end
end

local function eq(expected, actual, what)
  if not vim.deep_equal(expected, actual) then
    error(("%s: expected %s, got %s"):format(what or "value", vim.inspect(expected), vim.inspect(actual)), 2)
  end
end

local function truthy(value, what)
  if not value then
    error((what or "condition") .. " is false", 2)
  end
end

--- Run an Ex command that fills the quickfix list and wait for CodeSearchDone.
local function search(cmdline)
  local done = false
  local id = vim.api.nvim_create_autocmd("User", {
    pattern = "CodeSearchDone",
    once = true,
    callback = function()
      done = true
    end,
  })
  vim.cmd(cmdline)
  truthy(vim.wait(TIMEOUT, function()
    return done
  end, 20), "search finished in time")
  pcall(vim.api.nvim_del_autocmd, id)
  return vim.fn.getqflist({ title = 1, items = 1 })
end

local function rel(item)
  return vim.fn.fnamemodify(vim.api.nvim_buf_get_name(item.bufnr), ":.")
end

require("codesearch").setup({ cmd = { server, "lsp" }, k = 5, init_options = { debounceMs = 50 } })

it("the commands exist before anything is loaded", function()
  eq(2, vim.fn.exists(":CodeSearch"), ":CodeSearch")
  eq(2, vim.fn.exists(":CodeSearchReindex"), ":CodeSearchReindex")
  eq(2, vim.fn.exists(":CodeSearchStatus"), ":CodeSearchStatus")
end)

it(":CodeSearch builds the index and fills the quickfix list in the server's order", function()
  local qf = search("CodeSearch retry a call with exponential backoff")
  eq("CodeSearch: retry a call with exponential backoff", qf.title, "title")
  eq(5, #qf.items, "number of items")
  local first = qf.items[1]
  eq("net/retry.go", rel(first), "file")
  eq(10, first.lnum, "line")
  eq(1, first.col, "column")
  truthy(first.text:find("^RetryWithBackoff  %[function%]  RetryWithBackoff calls fn"), "text: " .. first.text)
  truthy(vim.bo[vim.api.nvim_get_current_buf()].buftype == "quickfix", "the quickfix window is open")
  vim.cmd("cclose")
  -- Searches run as soon as the index opens; "ready" follows once the watcher runs too.
  vim.wait(TIMEOUT, function()
    local s = require("codesearch").status
    return s ~= nil and s.state == "ready"
  end, 20)
  local status = require("codesearch").status
  eq("ready", status and status.state, "status")
  eq(11, status.units, "units")
end)

it("filters and columns of methods", function()
  local qf = search("CodeSearch lang:python add an item to the cart")
  eq("shop/cart.py", rel(qf.items[1]), "file")
  eq(12, qf.items[1].lnum, "line")
  eq(5, qf.items[1].col, "column (a method, indented)")
  for _, item in ipairs(qf.items) do
    truthy(rel(item):match("%.py$"), "only python: " .. rel(item))
  end
  vim.cmd("cclose")
end)

it("unsaved buffer text is searched, the file on disk is untouched", function()
  local path = root .. "/shop/cart.py"
  local before = table.concat(vim.fn.readfile(path), "\n")
  vim.cmd("edit " .. vim.fn.fnameescape(path))
  local buf = vim.api.nvim_get_current_buf()
  local attached = vim.wait(TIMEOUT, function()
    return #vim.lsp.get_clients({ bufnr = buf, name = "codesearch" }) == 1
  end, 20)
  truthy(attached, "the buffer is attached to the server")
  local n = vim.api.nvim_buf_line_count(buf)
  vim.api.nvim_buf_set_lines(buf, n, n, false, {
    "",
    "",
    "def drop_expired_coupons(coupons, today):",
    '    """Remove every coupon whose expiry date lies before today."""',
    "    return [c for c in coupons if c.expires >= today]",
  })
  local qf = search("CodeSearch discard coupons that have expired")
  eq("shop/cart.py", rel(qf.items[1]), "file")
  eq(n + 3, qf.items[1].lnum, "line in the buffer")
  truthy(qf.items[1].text:find("^drop_expired_coupons"), "text: " .. qf.items[1].text)
  eq(before, table.concat(vim.fn.readfile(path), "\n"), "file on disk")
  vim.cmd("cclose")
  vim.cmd("bwipeout!")
end)

it("the jump form opens the first result", function()
  search("CodeSearch! turn a title into a url slug")
  eq(root .. "/web/format.js", vim.api.nvim_buf_get_name(0), "current file")
  eq({ 17, 0 }, vim.api.nvim_win_get_cursor(0), "cursor")
end)

it("a bad query reports the server's error", function()
  local messages = {}
  local notify = vim.notify
  vim.notify = function(msg, level)
    table.insert(messages, { msg, level })
  end
  search("CodeSearch lang:klingon warp drive")
  vim.notify = notify
  truthy(messages[1] and messages[1][1]:find("unknown language 'klingon'"), vim.inspect(messages))
  eq(vim.log.levels.ERROR, messages[1][2], "level")
end)

it(":checkhealth codesearch", function()
  vim.cmd("checkhealth codesearch")
  local text = table.concat(vim.api.nvim_buf_get_lines(0, 0, -1, false), "\n")
  truthy(text:find("OK Neovim"), text)
  truthy(text:find("OK server: codesearch"), text)
  truthy(text:find("OK index ready: 11 units"), text)
  truthy(text:find("Telescope not installed"), text)
  vim.cmd("bwipeout!")
end)

it("telescope entries keep the server's order", function()
  local ui = require("codesearch.ui")
  local results = {
    { uri = vim.uri_from_fname(root .. "/b.py"), path = "b.py", name = "b", qualifiedName = "b", kind = "function",
      summary = "Zzz.", signature = "def b():", range = { start = { line = 0, character = 0 }, ["end"] = { line = 1, character = 0 } } },
    { uri = vim.uri_from_fname(root .. "/a.py"), path = "a.py", name = "a", qualifiedName = "a", kind = "class",
      summary = "", signature = "class a:", range = { start = { line = 4, character = 0 }, ["end"] = { line = 9, character = 0 } } },
  }
  local e1, e2 = ui.entry(results[1], 1, "utf-16"), ui.entry(results[2], 2, "utf-16")
  truthy(ui.order_score(nil, "a", e1.ordinal, e1) < ui.order_score(nil, "a", e2.ordinal, e2), "rank 1 sorts first")
  eq(5, e2.lnum, "lnum")
  eq("a  [class]  class a:  a.py:5", e2.display, "display")
  results[1].role = "test"
  eq("b  [function, test]  Zzz.", ui.describe(results[1]), "a test is tagged")
  results[1].role = "implementation"
  eq("b  [function]  Zzz.", ui.describe(results[1]), "implementation is not")
  local ok, err = pcall(require, "telescope._extensions.codesearch")
  truthy(not ok and tostring(err):find("needs nvim%-telescope"), "a clear error without Telescope")
end)

it("setup validates its options", function()
  local ok, err = pcall(require("codesearch.config").set, { k = "many" })
  truthy(not ok and err:find("option k must be a number"), tostring(err))
  ok, err = pcall(require("codesearch.config").set, { cmd = "codesearch lsp" })
  truthy(not ok and err:find("option cmd must be a table"), tostring(err))
  require("codesearch.config").set({ cmd = { server, "lsp" }, k = 5 })
end)

it("the server stops cleanly", function()
  local clients = vim.lsp.get_clients({ name = "codesearch" })
  eq(1, #clients, "one client for the repository")
  local client = clients[1]
  client:stop()
  truthy(vim.wait(20000, function()
    return client:is_stopped()
  end, 20), "stopped")
end)

io.stdout:write(("\n1..%d\n"):format(count))
if failures > 0 then
  os.exit(1)
end
os.exit(0)
