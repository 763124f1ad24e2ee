-- wrk script of the benchmark: BENCH_METHOD (GET or PUT) and BENCH_BODY_BYTES set the request,
-- BENCH_CLOSE=1 a new connection for each; done() prints one JSON line that bench/loads.py reads.
local method = os.getenv("BENCH_METHOD") or "GET"
wrk.method = method
if os.getenv("BENCH_CLOSE") == "1" then
  wrk.headers["Connection"] = "close"
end
if method == "PUT" then
  local size = tonumber(os.getenv("BENCH_BODY_BYTES") or "4096")
  local pattern = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ+/"
  wrk.body = string.rep(pattern, math.ceil(size / #pattern)):sub(1, size)
  wrk.headers["Content-Type"] = "application/octet-stream"
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
