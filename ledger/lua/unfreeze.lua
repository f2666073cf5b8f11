-- KEYS[3] account. A frozen account returns to active; an open one is left as it is.
local acc, _, replay = load_account(KEYS[3])
if replay then return replay end
if not acc then return refuse('unknown_account', 'no account ' .. SCOPE) end
if acc.s == 'closed' then return refuse('account_not_active', 'account is closed') end
if acc.s == 'frozen' then acc.s = 'active' end
return commit_account('unfreeze', balance(acc), KEYS[3], acc, 0, 0, '', nil, 0, '', '')
