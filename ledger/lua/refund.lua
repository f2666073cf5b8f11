-- KEYS[3] account. ARGV[6] amount, ARGV[7] reason. Money out to the family; allowed while frozen.
local acc, _, replay = load_account(KEYS[3])
if replay then return replay end
if not acc then return refuse('unknown_account', 'no account ' .. SCOPE) end
if acc.s == 'closed' then return refuse('account_not_active', 'account is closed') end
local amt = tonumber(ARGV[6])
if acc.p - acc.h < amt then
  return refuse('insufficient_funds', 'available ' .. (acc.p - acc.h) .. ' < ' .. amt)
end
acc.p = acc.p - amt
return commit_account('refund', balance(acc), KEYS[3], acc, -amt, 0, '', nil, amt, ARGV[7], '')
