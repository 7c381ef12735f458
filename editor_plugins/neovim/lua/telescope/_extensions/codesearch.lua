-- :Telescope codesearch: search as you type, results in the server's order.
-- Load with require("telescope").load_extension("codesearch").

local has_telescope, telescope = pcall(require, "telescope")
if not has_telescope then
  error("codesearch: the Telescope picker needs nvim-telescope/telescope.nvim")
end

local pickers = require("telescope.pickers")
local finders = require("telescope.finders")
local sorters = require("telescope.sorters")
local conf = require("telescope.config").values
local channel = require("plenary.async.control").channel

local search = require("codesearch.search")
local ui = require("codesearch.ui")

local function requester(opts)
  local cancel = function() end
  return function(prompt)
    cancel()
    if prompt == nil or vim.trim(prompt) == "" then
      return {}
    end
    local tx, rx = channel.oneshot()
    cancel = search.search(prompt, opts, function(err, results, client)
      tx(err, results, client)
    end)
    local err, results, client = rx()
    if err then
      vim.notify("codesearch: " .. require("codesearch").message(err), vim.log.levels.ERROR)
      return {}
    end
    local encoding = client and client.offset_encoding or "utf-16"
    local out = {}
    for i, r in ipairs(results) do
      out[i] = { result = r, index = i, encoding = encoding }
    end
    return out
  end
end

local function codesearch_picker(opts)
  opts = opts or {}
  pickers
    .new(opts, {
      prompt_title = "codesearch",
      default_text = opts.query,
      finder = finders.new_dynamic({
        fn = requester(opts),
        entry_maker = function(item)
          return ui.entry(item.result, item.index, item.encoding)
        end,
      }),
      previewer = conf.qflist_previewer(opts),
      -- The server ranks: keep its order, never re-rank by what was typed.
      sorter = sorters.Sorter:new({ scoring_function = ui.order_score }),
    })
    :find()
end

return telescope.register_extension({
  exports = {
    codesearch = codesearch_picker,
  },
})
