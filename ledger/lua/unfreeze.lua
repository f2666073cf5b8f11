-- A frozen account returns to active; an open one is left as it is.
local a, replay = load_account()
if not a then return replay end
if not a[1] then return refuse('unknown_account', 'no account ' .. SCOPE) end
if a[1] == 'closed' then return refuse('account_not_active', 'account is closed') end
local s = a[1] == 'frozen' and 'active' or a[1]
return commit_account('unfreeze', '=' .. a[2] .. '|' .. a[3] .. '|' .. s, a, s, a[2], a[3], '0', '0', '0', '',
  '')
