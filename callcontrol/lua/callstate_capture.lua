-- Raise captured_k/captured only forward: two instances metering one call never move it back.
local k = tonumber(ARGV[1])
local cur = tonumber(redis.call('HGET', KEYS[1], 'captured_k') or '0')
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if k > cur then
  redis.call('HSET', KEYS[1], 'captured_k', ARGV[1], 'captured', ARGV[2])
  return k
end
return cur
