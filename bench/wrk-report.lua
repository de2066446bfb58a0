-- bench/run.sh: wrk prints its summary as one JSON line, so nothing has to
-- parse wrk's human-readable text. Only done() is defined: no per-request Lua
-- callback, so the script costs nothing on the hot path.
-- Latencies are in microseconds. wrk's `status` error counts responses that
-- are neither 2xx nor 3xx (none of the benchmarked routes redirect).
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"duration_us":%d,"requests":%d,"bytes":%d,' ..
    '"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,' ..
    '"p50_us":%d,"p99_us":%d,"mean_us":%.1f,"max_us":%d}\n',
    summary.duration, summary.requests, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.mean, latency.max))
end
