-- KEYS[3] account, KEYS[4] partition account set. ARGV[6] facility, ARGV[7] number, ARGV[8] owner.
-- Opening an existing account changes nothing; opening a closed one reopens it (its balance is zero).
local acc, _, replay = load_account(KEYS[3])
if replay then return replay end
if not acc then
  acc = { s = 'opened', p = 0, h = 0, v = 0, f = ARGV[6], n = ARGV[7], o = ARGV[8] }
  redis.call('HSET', KEYS[3], 'f', acc.f, 'n', acc.n, 'o', acc.o, 'c', NOW)
  redis.call('SADD', KEYS[4], SCOPE)
elseif acc.s == 'closed' then
  acc.s = 'opened'
end
return commit_account('open', balance(acc), KEYS[3], acc, 0, 0, '', nil, 0, '', '')
