-- KEYS[3] block flag. ARGV[6] facility, ARGV[7] number, ARGV[8] '1' block / '0' unblock, ARGV[9] source.
local r = replayed()
if r then return r end
if ARGV[8] == '1' then
  redis.call('SET', KEYS[3], ARGV[9])
else
  redis.call('DEL', KEYS[3])
end
return commit('block', '=ok', ARGV[6] .. US .. ARGV[7] .. US .. ARGV[8] .. US .. ARGV[9])
