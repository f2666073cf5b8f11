-- KEYS[3] account. ARGV[6] signed delta, ARGV[7] reason. Never makes available negative.
local r = replayed()
if r then return r end
local acc = load_account(KEYS[3])
if not acc then return refuse('unknown_account', 'no account ' .. SCOPE) end
if acc.s == 'closed' then return refuse('account_not_active', 'account is closed') end
local delta = tonumber(ARGV[6])
if acc.p - acc.h + delta < 0 then
  return refuse('insufficient_funds', 'available ' .. (acc.p - acc.h) .. ' + ' .. delta .. ' < 0')
end
acc.p = acc.p + delta
if acc.s == 'opened' and acc.p > 0 then acc.s = 'active' end
save_account(KEYS[3], acc)
return commit_account('adjust', balance(acc), acc, delta, 0, '', nil, delta, ARGV[7], '')
