-- wrk script for obo-sidecar's benchmark (bench/wrk.ts runs it).
--
-- Arguments after "--": REQUEST_TARGET HOST TOKEN_FILE
--   REQUEST_TARGET  "/small" for the upstream itself, or the absolute form
--                   "http://127.0.0.1:PORT/small" that HTTP_PROXY clients send to a proxy
--   HOST            value of the Host header, the upstream's host:port
--   TOKEN_FILE      user tokens, one a line; each request carries "Authorization: Bearer <token>"
--                   with the next token of the list, round robin
--
-- The requests are built once in init(), so picking one costs a table lookup per request.
-- done() prints one line "WRK_RESULT {json}" with the counts and latency quantiles.

local prepared = {}
local prepared_count = 0
local next_index = 1

function init(args)
  local request_target, host, token_file = args[1], args[2], args[3]
  if request_target == nil or host == nil or token_file == nil then
    error("usage: wrk ... -s wrk-requests.lua URL -- REQUEST_TARGET HOST TOKEN_FILE")
  end
  for token in io.lines(token_file) do
    if token ~= "" then
      prepared_count = prepared_count + 1
      prepared[prepared_count] = wrk.format("GET", request_target, {
        ["Host"] = host,
        ["Authorization"] = "Bearer " .. token,
      })
    end
  end
  if prepared_count == 0 then
    error("no tokens in " .. token_file)
  end
end

function request()
  local selected = prepared[next_index]
  next_index = next_index % prepared_count + 1
  return selected
end

function done(summary, latency, _)
  local errors = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,"connect_errors":%d,"read_errors":%d,' ..
    '"write_errors":%d,"status_errors":%d,"timeouts":%d,"p50_us":%d,"p99_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, errors.connect, errors.read, errors.write,
    errors.status, errors.timeout, latency:percentile(50), latency:percentile(99), latency.max))
end
