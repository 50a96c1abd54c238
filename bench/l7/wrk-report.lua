-- bench/l7: wrk prints one line of exact figures at the end of a run, read by
-- bench/l7/run: requests, duration, socket errors, non-2xx/3xx answers, and
-- the latency percentiles (microseconds) over every request of the run.
done = function(summary, latency, requests)
    local e = summary.errors
    io.write(string.format("wrk n=%d us=%d errors=%d status=%d p50_us=%d p99_us=%d\n",
        summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout,
        e.status, latency:percentile(50), latency:percentile(99)))
end
