-- KEYS[3] block flag: the facility's for the number, or one inmate's. KEYS[4] (inmate blocks only) the
-- number's hash of blocked inmates (inmate -> source), for listing. ARGV[6] facility, ARGV[7] number,
-- ARGV[8] '1' block / '0' unblock, ARGV[9] source, ARGV[10] (inmate blocks only) inmate.
local r = replayed()
if r then return r end
local inmate = ARGV[10]
if ARGV[8] == '1' then
  redis.call('SET', KEYS[3], ARGV[9])
  if inmate then redis.call('HSET', KEYS[4], inmate, ARGV[9]) end
else
  redis.call('DEL', KEYS[3])
  if inmate then redis.call('HDEL', KEYS[4], inmate) end
end
local tail = ARGV[6] .. US .. ARGV[7] .. US .. ARGV[8] .. US .. ARGV[9]
if inmate then tail = tail .. US .. inmate end
return commit('block', '=ok', tail)
