-- KEYS[3] account. ARGV[6] reason. Refused while anything is held or posted: refund first.
local acc, _, replay = load_account(KEYS[3])
if replay then return replay end
if not acc then return refuse('unknown_account', 'no account ' .. SCOPE) end
if acc.h > 0 then return refuse('account_not_empty', acc.h .. ' cents still held') end
if acc.p > 0 then return refuse('account_not_empty', acc.p .. ' cents still posted: refund them first') end
acc.s = 'closed'
return commit_account('close', balance(acc), KEYS[3], acc, 0, 0, '', nil, 0, ARGV[6], '')
