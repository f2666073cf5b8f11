-- ARGV[6] amount, ARGV[7] source, ARGV[8] reference.
local a, replay = load_account()
if not a then return replay end
local bad = inactive(a)
if bad then return bad end
local amt = ARGV[6]
local p = fmt('%d', a[2] + amt)
local s = a[1] == 'opened' and 'active' or a[1]
return commit_account('deposit', '=' .. p .. '|' .. a[3] .. '|' .. s, a, s, p, a[3], amt, '0', amt, ARGV[7],
  ARGV[8])
