-- KEYS[3] hold queue (lease expiry). ARGV[6] hold id, ARGV[7] amount, ARGV[8] expires (s), ARGV[9] meta json.
local a, replay = load_account('h:' .. ARGV[6])
if not a then return replay end
local bad = inactive(a)
if bad then return bad end
if a[9] then
  return refuse('id_conflict', 'hold id ' .. ARGV[6] .. ' already used on this account')
end
local amt = ARGV[7]
local available = a[2] - a[3]
if available < tonumber(amt) then
  return refuse('insufficient_funds', 'available ' .. available .. ' < ' .. amt)
end
local held = fmt('%d', a[3] + amt)
redis.call('ZADD', KEYS[3], ARGV[8], SCOPE .. '|' .. ARGV[6])
return commit_account('hold', '=' .. a[2] .. '|' .. held .. '|' .. a[1], a, a[1], a[2], held, '0', amt, amt,
  '', ARGV[9], ARGV[6], amt, '0', 'pending', ARGV[8], '0', ARGV[9])
