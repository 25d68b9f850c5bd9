-- wrk load for chat turns: POST /v1/sessions/{id}/messages over sessions made beforehand.
-- Reads "session_id token" lines from $WHYREC_WRK_SESSIONS (bench_load.py makes them)
-- and sends the next scripted message to the next session, round robin, so with many
-- more sessions than connections no two requests share a session at once.
local sessions = {}
for line in io.lines(os.getenv("WHYREC_WRK_SESSIONS")) do
  local id, token = line:match("(%S+)%s+(%S+)")
  sessions[#sessions + 1] = { id = id, token = token }
end
local script = {
  "a funny animated film from the 90s",
  "something like Toy Story",
  "why the first one?",
  "none of these",
  "I love The Matrix",
  "start over",
}
local counter = 0
request = function()
  counter = counter + 1
  local s = sessions[(counter % #sessions) + 1]
  local text = script[(math.floor(counter / #sessions) % #script) + 1]
  local headers = { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. s.token }
  return wrk.format("POST", "/v1/sessions/" .. s.id .. "/messages", headers,
    string.format('{"text": "%s"}', text))
end
