-- Call records and blocks: the idempotency record is the string key KEYS[1] (fingerprint .. result).

-- A replay returns the first result; the same id with another payload is refused.
local function replayed()
  local prev = redis.call('GET', KEYS[1])
  if prev then
    if string.sub(prev, 1, 32) == ARGV[4] then
      return string.sub(prev, 33)
    end
    return '!id_conflict|operation id ' .. ARGV[3] .. ' was already used with a different payload'
  end
  return false
end

-- Record the result for replays, then journal.
local function commit(op, res, tail)
  redis.call('SET', KEYS[1], ARGV[4] .. res, 'EX', ARGV[2])
  local US = '\31'
  redis.call('XADD', KEYS[2], '*', 'e', op .. US .. ARGV[1] .. US .. ARGV[3] .. US .. ARGV[5] .. US .. ARGV[4]
    .. US .. res .. US .. tail)
  return res
end
