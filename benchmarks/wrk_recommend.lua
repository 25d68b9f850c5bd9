-- wrk load for POST /v1/recommend: a uniformly random user id from "1".."N" per request.
-- wrk is a C client, so on a 2-core machine it leaves the server more CPU than the
-- Python client in bench_service.py. N defaults to ml-latest-small's 610 users.
--   whyrec serve --bundle B --port 8765 --rate-limit 0 --cache-size 0 &
--   wrk -t1 -c32 -d10s --latency -s benchmarks/wrk_recommend.lua http://127.0.0.1:8765
local n_users = tonumber(os.getenv("WHYREC_WRK_USERS") or "610")
math.randomseed(1)
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  local body = string.format('{"user_id": "%d", "k": 10}', math.random(1, n_users))
  return wrk.format(nil, "/v1/recommend", nil, body)
end
