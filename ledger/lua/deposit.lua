-- ARGV[6] amount, ARGV[7] source, ARGV[8] reference.
local a, replay = load_account()
if not a then return replay end
local bad = inactive(a)
if bad then return bad end
local amt = ARGV[6]
local posted = a[2] + amt
if posted > 9007199254740991 then    -- 2^53-1: beyond it Lua's doubles no longer count every cent
  return refuse('bad_amount', 'posted ' .. a[2] .. ' + ' .. amt .. ' would exceed 2^53-1 cents')
end
local p = fmt('%d', posted)
local s = a[1] == 'opened' and 'active' or a[1]
return commit_account('deposit', '=' .. p .. '|' .. a[3] .. '|' .. s, a, s, p, a[3], amt, '0', amt, ARGV[7],
  ARGV[8])
