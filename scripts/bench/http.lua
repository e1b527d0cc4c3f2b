-- wrk script for `make bench-http` (scripts/bench-http.sh): builds the
-- requests of one route and counts its answers.
--
--   wrk ... -s scripts/bench/http.lua http://127.0.0.1:PORT -- MODE RUN TERMINALS
--
-- MODE      health | availability | strong | avail100 | hold | hold_issued | sale | cart | order
--           (strong: the one-SKU read with consistency=strong, admin key: one
--           SKU object call and no write, the ceiling of any one-call route)
--           (avail100: one read of the 100 SKUs EDGE-001..EDGE-100 at store-1, pk_dev)
--           (order: a one-line order created, then, once created, moved to
--           paid: two requests per order; `units` counts the orders created)
-- RUN       a token unique to this wrk run (ids and Idempotency-Keys start with it)
-- TERMINALS POS terminals per wrk thread for `sale` (each thread's requests
--           cycle through them, device_seq rising per terminal)
--
-- Every write carries a unique id and Idempotency-Key, so no request is a
-- replay: each 2xx is one new hold or sale. Each thread counts its 2xx and
-- non-2xx answers (by status); done() adds them up over the threads and prints
-- one line starting with "BENCH " that the shell parses:
--   BENCH mode=.. requests=.. duration_us=.. rps=.. p50_ms=.. p99_ms=.. ok=.. bad=..
--         connect=.. read=.. write=.. status=.. timeout=.. statuses=409:3,503:1
-- and, when there was a non-2xx answer, a line "BENCH_FIRST_BAD <status> <body>".

-- The hot SKUs (scripts/bench-http.sh seeds them).
local HOLD_SKU = "HOT"
local ISSUED_SKU = "HOT-ID"
local SALE_SKU = "HOT-SALE"
local CART_SKUS = { "CART-1", "CART-2", "CART-3", "CART-4", "CART-5" }
local ORDER_SKU = "ORDER"
local LOCATION = "store-1"

-- Main state: the threads, to read their counters in done().
local threads = {}
local next_tid = 1

function setup(thread)
  thread:set("tid", next_tid)
  next_tid = next_tid + 1
  table.insert(threads, thread)
end

-- Thread state (each thread has its own Lua state; `tid` was set by setup).
local run, terminals
mode = nil -- global: done() reads it from a thread
local n = 0
local static_request
local seq = {}
local now_s, now_text = -1, ""
ok, bad, statuses, first_bad, units = 0, 0, "", "", 0
-- Orders created and not yet sent to paid (this thread's).
local ready = {}
local by_status = {}

local function json_headers(key, idem)
  return {
    ["Authorization"] = "Bearer " .. key,
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = idem,
  }
end

local function now_rfc3339()
  local t = os.time()
  if t ~= now_s then
    now_s = t
    now_text = os.date("!%Y-%m-%dT%H:%M:%SZ", t)
  end
  return now_text
end

function init(args)
  mode = args[1] or "health"
  run = args[2] or tostring(os.time())
  terminals = tonumber(args[3] or "1") or 1
  if terminals < 1 then terminals = 1 end
  if mode == "health" then
    static_request = wrk.format("GET", "/v1/health")
  elseif mode == "availability" then
    static_request = wrk.format("GET", "/v1/availability?sku=" .. HOLD_SKU .. "&location=" .. LOCATION,
      { ["Authorization"] = "Bearer pk_dev" })
  elseif mode == "strong" then
    static_request = wrk.format("GET", "/v1/availability?sku=" .. HOLD_SKU .. "&location=" .. LOCATION
      .. "&consistency=strong", { ["Authorization"] = "Bearer sk_dev_admin" })
  elseif mode == "avail100" then
    local skus = {}
    for i = 1, 100 do
      skus[i] = string.format("EDGE-%03d", i)
    end
    static_request = wrk.format("GET", "/v1/availability?sku=" .. table.concat(skus, ",")
      .. "&location=" .. LOCATION, { ["Authorization"] = "Bearer pk_dev" })
  elseif mode ~= "hold" and mode ~= "hold_issued" and mode ~= "sale" and mode ~= "cart"
    and mode ~= "order" then
    error("unknown mode " .. mode)
  end
end

local function reservation(lines)
  local id = run .. "-" .. tid .. "-" .. n
  local body = '{"id":"' .. id .. '","lines":[' .. lines .. '],'
    .. '"fulfillment":{"type":"pickup","location":"' .. LOCATION .. '"},"ttl_seconds":3600}'
  return wrk.format("POST", "/v1/reservations", json_headers("sk_dev_storefront", "k-" .. id), body)
end

local function cart_lines()
  local parts = {}
  for i, sku in ipairs(CART_SKUS) do
    parts[i] = '{"sku":"' .. sku .. '","qty":1}'
  end
  return table.concat(parts, ",")
end
local CART_LINES = cart_lines()

function request()
  if static_request then
    return static_request
  end
  n = n + 1
  if mode == "hold" then
    return reservation('{"sku":"' .. HOLD_SKU .. '","qty":1}')
  elseif mode == "hold_issued" then
    -- No id: the server issues one that names the SKU object (no pointer).
    local key = "k-" .. run .. "-" .. tid .. "-" .. n
    local body = '{"lines":[{"sku":"' .. ISSUED_SKU .. '","qty":1}],'
      .. '"fulfillment":{"type":"pickup","location":"' .. LOCATION .. '"},"ttl_seconds":3600}'
    return wrk.format("POST", "/v1/reservations", json_headers("sk_dev_storefront", key), body)
  elseif mode == "cart" then
    return reservation(CART_LINES)
  elseif mode == "order" then
    local paid = table.remove(ready, 1)
    if paid then
      n = n - 1
      return wrk.format("POST", "/v1/orders/" .. paid .. "/transitions",
        json_headers("sk_dev_admin", "kp-" .. paid), '{"to":"paid"}')
    end
    local id = run .. "-" .. tid .. "-" .. n
    local body = '{"id":"' .. id .. '","lines":[{"sku":"' .. ORDER_SKU .. '","qty":1}],'
      .. '"fulfillment":{"type":"ship","location":"' .. LOCATION .. '"}}'
    return wrk.format("POST", "/v1/orders", json_headers("sk_dev_storefront", "k-" .. id), body)
  else -- sale
    local t = n % terminals
    local s = (seq[t] or 0) + 1
    seq[t] = s
    local id = run .. "-" .. tid .. "-" .. n
    local body = '{"sale_id":"' .. id .. '","terminal_id":"' .. run .. "-t" .. tid .. "-" .. t .. '",'
      .. '"device_seq":' .. s .. ',"location":"' .. LOCATION .. '","occurred_at":"' .. now_rfc3339() .. '",'
      .. '"lines":[{"sku":"' .. SALE_SKU .. '","qty":1,"unit_price":{"amount":"19.90","currency":"EUR"}}],'
      .. '"payments":[{"method":"card","amount":{"amount":"19.90","currency":"EUR"}}]}'
    return wrk.format("POST", "/v1/pos/sales", json_headers("sk_dev_pos_store-1", "k-" .. id), body)
  end
end

-- BENCH_HONOR_RETRY_AFTER=1 (read when the script loads): clients that do
-- what API.md asks of them. A 503 or 429 with Retry-After makes this thread's
-- next request wait that long (at most 10 s); wrk's latency counts from each
-- request's send, so the wait is not in p50/p99. Without it (the default)
-- wrk sends again at once, as a client that ignores Retry-After would.
local honor = os.getenv("BENCH_HONOR_RETRY_AFTER") == "1"
local owed = {}
if honor then
  function delay()
    local ms = table.remove(owed, 1)
    return ms or 0
  end
end

function response(status, headers, body)
  if honor and (status == 503 or status == 429) then
    local after = tonumber(headers["Retry-After"] or headers["retry-after"] or "")
    if after then
      owed[#owed + 1] = math.min(after, 10) * 1000
    end
  end
  if mode == "order" and status == 201 then
    local id = string.match(body or "", '"id":"([^"]+)"')
    if id then
      units = units + 1
      table.insert(ready, id)
    end
  end
  if status >= 200 and status < 300 then
    ok = ok + 1
  else
    bad = bad + 1
    by_status[status] = (by_status[status] or 0) + 1
    local parts = {}
    for s, c in pairs(by_status) do
      parts[#parts + 1] = s .. ":" .. c
    end
    statuses = table.concat(parts, ",")
    if first_bad == "" then
      first_bad = status .. " " .. string.gsub(string.sub(body or "", 1, 300), "[\r\n]", " ")
    end
  end
end

function done(summary, latency, requests)
  local total_ok, total_bad, total_units = 0, 0, 0
  local merged = {}
  local first = ""
  for _, t in ipairs(threads) do
    total_ok = total_ok + t:get("ok")
    total_bad = total_bad + t:get("bad")
    total_units = total_units + (t:get("units") or 0)
    for s, c in string.gmatch(t:get("statuses") or "", "(%d+):(%d+)") do
      merged[s] = (merged[s] or 0) + tonumber(c)
    end
    if first == "" then first = t:get("first_bad") or "" end
  end
  local parts = {}
  for s, c in pairs(merged) do
    parts[#parts + 1] = s .. ":" .. c
  end
  table.sort(parts)
  local e = summary.errors
  local secs = summary.duration / 1e6
  io.write(string.format(
    "BENCH mode=%s requests=%d duration_us=%d rps=%.1f p50_ms=%.3f p99_ms=%.3f ok=%d bad=%d "
      .. "connect=%d read=%d write=%d status=%d timeout=%d statuses=%s units=%d\n",
    (threads[1] and threads[1]:get("mode")) or "?", summary.requests, summary.duration, summary.requests / secs,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, total_ok, total_bad,
    e.connect, e.read, e.write, e.status, e.timeout, (#parts > 0) and table.concat(parts, ",") or "-",
    total_units))
  if first ~= "" then
    io.write("BENCH_FIRST_BAD " .. first .. "\n")
  end
end
