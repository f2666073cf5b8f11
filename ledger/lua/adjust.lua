-- ARGV[6] signed delta, ARGV[7] reason. Never makes available negative.
local a, replay = load_account()
if not a then return replay end
if not a[1] then return refuse('unknown_account', 'no account ' .. SCOPE) end
if a[1] == 'closed' then return refuse('account_not_active', 'account is closed') end
local delta = ARGV[6]
local available = a[2] - a[3]
if available + delta < 0 then
  return refuse('insufficient_funds', 'available ' .. available .. ' + ' .. delta .. ' < 0')
end
local posted = a[2] + delta
if posted > 9007199254740991 then    -- 2^53-1: beyond it Lua's doubles no longer count every cent
  return refuse('bad_amount', 'posted ' .. a[2] .. ' + ' .. delta .. ' would exceed 2^53-1 cents')
end
local p = fmt('%d', posted)
local s = (a[1] == 'opened' and posted > 0) and 'active' or a[1]
return commit_account('adjust', '=' .. p .. '|' .. a[3] .. '|' .. s, a, s, p, a[3], delta, '0', delta,
  ARGV[7], '')
