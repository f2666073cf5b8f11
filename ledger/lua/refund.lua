-- ARGV[6] amount, ARGV[7] reason. Money out to the family; allowed while frozen.
local a, replay = load_account()
if not a then return replay end
if not a[1] then return refuse('unknown_account', 'no account ' .. SCOPE) end
if a[1] == 'closed' then return refuse('account_not_active', 'account is closed') end
local amt = ARGV[6]
local available = a[2] - a[3]
if available < tonumber(amt) then
  return refuse('insufficient_funds', 'available ' .. available .. ' < ' .. amt)
end
local p = fmt('%d', a[2] - amt)
return commit_account('refund', '=' .. p .. '|' .. a[3] .. '|' .. a[1], a, a[1], p, a[3], '-' .. amt, '0',
  amt, ARGV[7], '')
