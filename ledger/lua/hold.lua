-- KEYS[3] account, KEYS[4] hold queue (lease expiry).
-- ARGV[6] hold id, ARGV[7] amount, ARGV[8] expires (s), ARGV[9] meta json.
local acc, old, replay = load_account(KEYS[3], 'h:' .. ARGV[6])
if replay then return replay end
local bad = active_or_refuse(acc)
if bad then return bad end
if old then
  return refuse('id_conflict', 'hold id ' .. ARGV[6] .. ' already used on this account')
end
local amt = tonumber(ARGV[7])
if acc.p - acc.h < amt then
  return refuse('insufficient_funds', 'available ' .. (acc.p - acc.h) .. ' < ' .. amt)
end
acc.h = acc.h + amt
local h = { a = amt, c = 0, s = 'pending', e = ARGV[8], r = 0, m = ARGV[9] }
redis.call('ZADD', KEYS[4], h.e, SCOPE .. '|' .. ARGV[6])
return commit_account('hold', balance(acc), KEYS[3], acc, 0, amt, ARGV[6], h, amt, '', h.m)
