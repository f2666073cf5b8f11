-- ARGV[6] hold id, ARGV[7] total.
-- Allowed on a frozen account so a running call finishes exactly. The hold's queue entry stays until its
-- lease end, when the reaper drops it.
local a, replay = load_account('h:' .. ARGV[6])
if not a then return replay end
if not a[1] then return refuse('unknown_account', 'no account ' .. SCOPE) end
local ha, hc, hs, he, hr, hm = pending_hold(a)
if not ha then return hc end
local total = ARGV[7]
local t, amount, captured = tonumber(total), tonumber(ha), tonumber(hc)
if t > amount then return refuse('exceeds_hold', 'total ' .. total .. ' > hold ' .. ha) end
if t < captured then return refuse('bad_amount', 'total ' .. total .. ' < captured ' .. hc) end
local post, release = t - captured, amount - captured
local post_s, release_s = fmt('%d', post), fmt('%d', release)
hs = 'settled'
return commit_account('settle', '=' .. ha .. '|' .. total .. '|' .. hs .. '|' .. he .. '|' .. hm, a, a[1],
  fmt('%d', a[2] - post), fmt('%d', a[3] - release), post == 0 and '0' or '-' .. post_s,
  release == 0 and '0' or '-' .. release_s, post_s, '', '', ARGV[6], ha, total, hs, he, hr, hm)
