-- Turning search results into quickfix items and picker entries (pure functions, no state).

local M = {}

--- The text of a line of a file: from its buffer when loaded (unsaved text), else from disk.
local function line_text(fname, lnum)
  local buf = vim.fn.bufnr(fname)
  if buf ~= -1 and vim.api.nvim_buf_is_loaded(buf) then
    return vim.api.nvim_buf_get_lines(buf, lnum - 1, lnum, false)[1] or ""
  end
  local ok, lines = pcall(vim.fn.readfile, fname, "", lnum)
  return ok and lines[lnum] or ""
end

--- 1-based byte column of an LSP `character` on line `lnum` of `fname`, in the client's encoding.
function M.byte_col(fname, lnum, character, encoding)
  if character == 0 or encoding == "utf-8" then
    return character + 1
  end
  local line = line_text(fname, lnum)
  if not line:find("[\128-\255]") then
    return character + 1 -- ASCII: every encoding counts the same
  end
  local ok, col
  if vim.fn.has("nvim-0.11") == 1 then
    ok, col = pcall(vim.str_byteindex, line, encoding, character, false)
  else
    ok, col = pcall(vim.str_byteindex, line, character, encoding == "utf-16")
  end
  return (ok and col or character) + 1
end

--- One line describing a result: its name, kind (and role when it is not implementation code, e.g.
--- `[function, test]`) and the first line of its summary (or its signature).
function M.describe(result)
  local about = (result.summary ~= "" and result.summary or result.signature or ""):gsub("\n.*", "")
  local tag = result.kind
  if result.role and result.role ~= "implementation" then
    tag = tag .. ", " .. result.role
  end
  return ("%s  [%s]  %s"):format(result.qualifiedName, tag, about)
end

--- Quickfix items for results, in the server's order.
---@param results table[] codesearch/search results
---@param encoding string the client's offset encoding
function M.qf_items(results, encoding)
  local items = {}
  for _, r in ipairs(results) do
    local fname = vim.uri_to_fname(r.uri)
    local lnum = r.range.start.line + 1
    local end_lnum = r.range["end"].line + 1
    table.insert(items, {
      filename = fname,
      lnum = lnum,
      col = M.byte_col(fname, lnum, r.range.start.character, encoding),
      end_lnum = end_lnum,
      text = M.describe(r),
      user_data = { codesearch = { score = r.score, path = r.path, kind = r.kind, language = r.language,
                                   role = r.role } },
    })
  end
  return items
end

--- A Telescope entry for a result; `index` is its rank, which the sorter keeps.
function M.entry(result, index, encoding)
  local fname = vim.uri_to_fname(result.uri)
  local lnum = result.range.start.line + 1
  local display = ("%s  %s:%d"):format(M.describe(result), result.path, lnum)
  return {
    value = result,
    ordinal = display,
    display = display,
    filename = fname,
    lnum = lnum,
    col = M.byte_col(fname, lnum, result.range.start.character, encoding),
    index = index,
  }
end

--- Telescope's scoring (lower is better): the server's rank, whatever was typed.
function M.order_score(_, _, _, entry)
  return entry.index or 1
end

return M
