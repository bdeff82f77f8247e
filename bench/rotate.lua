-- rotate.lua -- wrk script (copied from ../shared/peers/rotate.lua for bench/proxies.py): explicit-proxy (absolute-form) GETs rotating through
-- a list of "host path" lines (default /tmp/peer-data/requests.txt, override with
-- env REQS=...).  Every request is
--     GET http://<host><path> HTTP/1.1
--     Host: <host>
-- sent to whatever address wrk was pointed at (a proxy, or the origin itself,
-- which accepts absolute-form too).  Each wrk thread starts at a different
-- offset.  wrk's own -d bounds the run (it stops itself).
-- If env TARGET=ip:port is set, the request-line URL uses it instead
-- (GET http://127.0.0.1:18080<path>, Host: <host>): used for the "regular mode,
-- no DNS" variants where the proxy connects straight to the origin.
-- At the end prints one machine-readable line:
--   RESULT rps=<req/s> p50_ms=.. p90_ms=.. p99_ms=.. max_ms=.. requests=.. non2xx3xx=.. errors=..
-- (no response() callback on purpose: it would slow wrk down.)
local reqs = {}
local idx = 0
local counter = 0

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
end

function init(args)
  local path = os.getenv("REQS") or "/tmp/peer-data/requests.txt"
  local target = os.getenv("TARGET")
  for line in io.lines(path) do
    local h, p = line:match("^(%S+)%s+(%S+)$")
    if h then
      reqs[#reqs + 1] = wrk.format("GET", "http://" .. (target or h) .. p,
        { ["Host"] = h, ["User-Agent"] = "wrk-peer-bench", ["Accept"] = "*/*" })
    end
  end
  idx = ((tid or 0) * 4999) % #reqs
end

function request()
  idx = idx + 1
  if idx > #reqs then idx = 1 end
  return reqs[idx]
end

function done(summary, latency, requests)
  local secs = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    "RESULT rps=%.1f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f requests=%d non2xx3xx=%d errors=connect:%d,read:%d,write:%d,timeout:%d\n",
    summary.requests / secs,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000,
    summary.requests, e.status, e.connect, e.read, e.write, e.timeout))
end
