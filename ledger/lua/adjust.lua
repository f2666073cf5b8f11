-- KEYS[3] account. ARGV[6] signed delta, ARGV[7] reason. Never makes available negative.
local acc, _, replay = load_account(KEYS[3])
if replay then return replay end
if not acc then return refuse('unknown_account', 'no account ' .. SCOPE) end
if acc.s == 'closed' then return refuse('account_not_active', 'account is closed') end
local delta = tonumber(ARGV[6])
if acc.p - acc.h + delta < 0 then
  return refuse('insufficient_funds', 'available ' .. (acc.p - acc.h) .. ' + ' .. delta .. ' < 0')
end
acc.p = acc.p + delta
if acc.s == 'opened' and acc.p > 0 then acc.s = 'active' end
return commit_account('adjust', balance(acc), KEYS[3], acc, delta, 0, '', nil, delta, ARGV[7], '')
