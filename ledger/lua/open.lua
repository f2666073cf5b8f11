-- KEYS[3] partition account set. ARGV[6] facility, ARGV[7] number, ARGV[8] owner.
-- Opening an existing account changes nothing (no new version, no journal entry; the op id keeps its
-- result for replays); opening a closed one reopens it (its balance is zero).
local a, replay = load_account()
if not a then return replay end
local s = a[1]
if s and s ~= 'closed' then return unchanged('=' .. a[2] .. '|' .. a[3] .. '|' .. s) end
if not s then
  s = 'opened'
  a = { s, '0', '0', '0', ARGV[6], ARGV[7], ARGV[8] }
  redis.call('HSET', OPKEY, 'f', ARGV[6], 'n', ARGV[7], 'o', ARGV[8], 'c', NOW, 'm', NOW)
  redis.call('SADD', KEYS[3], SCOPE)
else    -- closed: reopened
  s = 'opened'
end
return commit_account('open', '=' .. a[2] .. '|' .. a[3] .. '|' .. s, a, s, a[2], a[3], '0', '0', '0', '', '')
