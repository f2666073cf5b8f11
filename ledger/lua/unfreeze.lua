-- KEYS[3] account. A frozen account returns to active; an open one is left as it is.
local r = replayed()
if r then return r end
local acc = load_account(KEYS[3])
if not acc then return refuse('unknown_account', 'no account ' .. SCOPE) end
if acc.s == 'closed' then return refuse('account_not_active', 'account is closed') end
if acc.s == 'frozen' then acc.s = 'active' end
save_account(KEYS[3], acc)
return commit_account('unfreeze', balance(acc), acc, 0, 0, '', nil, 0, '', '')
