-- KEYS[3] account. ARGV[6] reason. Refused while anything is held or posted: refund first.
local r = replayed()
if r then return r end
local acc = load_account(KEYS[3])
if not acc then return refuse('unknown_account', 'no account ' .. SCOPE) end
if acc.h > 0 then return refuse('account_not_empty', acc.h .. ' cents still held') end
if acc.p > 0 then return refuse('account_not_empty', acc.p .. ' cents still posted: refund them first') end
acc.s = 'closed'
save_account(KEYS[3], acc)
return commit_account('close', balance(acc), acc, 0, 0, '', nil, 0, ARGV[6], '')
