-- Account operations: KEYS[1] is the account hash. It keeps the operation's idempotency record (field
-- "o:<op id>" = fingerprint .. time(ms, 13 digits) .. result) and the holds (field "h:<hold id>" =
-- "amount|captured|status|expires|review|meta"), so one HMGET reads account, hold and record and one
-- HSET writes them: every redis.call costs microseconds in Redis' Lua.
-- Values stay strings: Lua 5.1 turns a number into text with sprintf("%.14g"), about a microsecond each,
-- so a value that does not change is passed on as the string HMGET returned, and a new one is formatted
-- once, with fmt('%d', n) (integer printf, half the cost). Amounts arrive as canonical positive integers
-- (ledger/core.py checks them), so they are used as given.
local HOLD = '^(%d+)|(%d+)|(%a+)|([^|]*)|(%d)|(.*)$'   -- amount, captured, status, expires, review, meta
local fmt = string.format

-- The HMGET reply {state, posted, held, version, facility, number, owner, record, hold} (state nil:
-- no such account), or nil and the reply to give for a replayed op id (the first result, or id_conflict).
local function load_account(hold_field)
  local a
  if hold_field then
    a = redis.call('HMGET', KEYS[1], 's', 'p', 'h', 'v', 'f', 'n', 'o', 'o:' .. ARGV[3], hold_field)
  else
    a = redis.call('HMGET', KEYS[1], 's', 'p', 'h', 'v', 'f', 'n', 'o', 'o:' .. ARGV[3])
  end
  local rec = a[8]
  if rec then
    if string.sub(rec, 1, 32) == ARGV[4] then
      return nil, string.sub(rec, 46)
    end
    return nil, '!id_conflict|operation id ' .. ARGV[3] .. ' was already used with a different payload'
  end
  return a
end

local function inactive(a)
  if not a[1] then
    return '!unknown_account|no account ' .. ARGV[1]
  end
  if a[1] == 'frozen' or a[1] == 'closed' then
    return '!account_not_active|account is ' .. a[1]
  end
  return nil
end

-- The named hold's fields (amount, captured, status, expires, review, meta) while it is pending, else
-- nil and the refusal (no such hold, or resolved already: a hold resolves at most once).
local function pending_hold(a)
  if not a[9] then
    return nil, '!unknown_hold|no hold ' .. ARGV[6]
  end
  local ha, hc, hs, he, hr, hm = string.match(a[9], HOLD)
  if hs ~= 'pending' then
    return nil, '!hold_not_pending|hold is ' .. hs
  end
  return ha, hc, hs, he, hr, hm
end

-- An operation that changes nothing (opening an open account, freezing a frozen one...): no new version
-- and no journal entry, only the op id's record, so a replay still gets this first result.
local function unchanged(res)
  redis.call('HSET', KEYS[1], 'o:' .. ARGV[3], ARGV[4] .. ARGV[5] .. res)
  return res
end

-- Journal an account operation: the account's state after it (the SQL sync upserts by version), the
-- deltas, the hold after it (empty fields when no hold is involved), then the amount and two texts.
local function journal(op, res, a, s, p, h, v, dp, dh, amt, text1, text2, hold_id, ha, hc, hs, he, hr)
  local US, scope, op_id, now, fp = '\31', ARGV[1], ARGV[3], ARGV[5], ARGV[4]
  local hold = '\31\31\31\31\31'    -- six empty fields
  if hold_id then
    hold = hold_id .. US .. ha .. US .. hc .. US .. hs .. US .. he .. US .. hr
  end
  redis.call('XADD', KEYS[2], '*', 'e', op .. US .. scope .. US .. op_id .. US .. now .. US .. fp .. US .. res
    .. US .. a[5] .. US .. a[6] .. US .. a[7] .. US .. s .. US .. p .. US .. h .. US .. v
    .. US .. dp .. US .. dh .. US .. hold .. US .. amt .. US .. text1 .. US .. text2)
  return res
end

-- Write what changed (state s, posted p, held h: strings), the next version, the hold (if any) and the
-- idempotency record in one HSET, compact now and then, then journal.
-- Compaction drops records older than the TTL and resolved holds past their retention, every 50
-- versions, and only when the oldest record (field "m", ms; absent after a rebuild) has passed the TTL,
-- so a scan never runs for nothing.
local function commit_account(op, res, a, s, p, h, dp, dh, amt, text1, text2,
                               hold_id, ha, hc, hs, he, hr, hm)
  local key, now = KEYS[1], ARGV[5]
  local ver = a[4] + 1
  local v, opf, rec = string.format('%d', ver), 'o:' .. ARGV[3], ARGV[4] .. now .. res
  if hold_id then    -- no hold operation changes the account's state
    local hv = ha .. '|' .. hc .. '|' .. hs .. '|' .. he .. '|' .. hr .. '|' .. hm
    if p == a[2] then
      redis.call('HSET', key, 'h', h, 'v', v, opf, rec, 'h:' .. hold_id, hv)
    else
      redis.call('HSET', key, 'p', p, 'h', h, 'v', v, opf, rec, 'h:' .. hold_id, hv)
    end
  else
    redis.call('HSET', key, 's', s, 'p', p, 'h', h, 'v', v, opf, rec)
  end
  if ver % 50 == 0 then
    local m = redis.call('HGET', key, 'm')
    local t_now, keep = tonumber(now), tonumber(ARGV[2]) * 1000
    if not m or tonumber(m) + keep < t_now then
      local fields = redis.call('HGETALL', key)
      local drop, oldest = {}, t_now
      for i = 1, #fields, 2 do
        local name, value = fields[i], fields[i + 1]
        local kind, t = string.sub(name, 1, 2), nil
        if kind == 'o:' then
          t = tonumber(string.sub(value, 33, 45))
        elseif kind == 'h:' then
          local status, expires = string.match(value, '^%d+|%d+|(%a+)|([^|]*)|')
          if status and status ~= 'pending' then t = tonumber(expires) * 1000 end
        end
        if t then
          if t + keep < t_now then
            drop[#drop + 1] = name
          elseif t < oldest then
            oldest = t
          end
        end
      end
      if #drop > 0 then
        redis.call('HDEL', key, unpack(drop))
      end
      redis.call('HSET', key, 'm', string.format('%d', oldest))
    end
  end
  return journal(op, res, a, s, p, h, v, dp, dh, amt, text1, text2, hold_id, ha, hc, hs, he, hr)
end
