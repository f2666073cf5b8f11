-- Shared by every ledger script (prepended at load time).
-- KEYS[1] idempotency record (call and block scopes; account scopes keep it in the account hash),
-- KEYS[2] journal stream of the partition, KEYS[3..] operation keys.
-- ARGV[1] op id, ARGV[2] payload fingerprint (32 hex), ARGV[3] now (ms), ARGV[4] idempotency TTL (s),
-- ARGV[5] scope (account id, call:<id> or blk:<facility>:<number>), ARGV[6..] operation arguments.
-- Replies are one string: "=<result>" on success, "!<code>|<message>" on refusal (nothing changed).
-- A hold lives in its account's hash (field "h:<hold id>" = "amount|captured|status|expires|review|meta").
local OPKEY, JOURNAL = KEYS[1], KEYS[2]
local OP_ID, FP, NOW, TTL, SCOPE = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]

local function refuse(code, msg)
  return '!' .. code .. '|' .. msg
end

-- A replay returns the first result; the same id with another payload is refused (call, block).
local function replayed()
  local prev = redis.call('GET', OPKEY)
  if prev then
    if string.sub(prev, 1, 32) == FP then
      return string.sub(prev, 33)
    end
    return refuse('id_conflict', 'operation id ' .. OP_ID .. ' was already used with a different payload')
  end
  return false
end

-- The journal entry is one stream field "e": the values joined by US (\31), in a fixed order per kind
-- (ledger/journal.py decodes it). One field, built by one concatenation, is several times cheaper in
-- Redis' Lua and AOF than one stream field per value. Free text never contains control characters.
local US = '\31'

local function append(op, res, tail)
  redis.call('XADD', JOURNAL, '*', 'e', op .. US .. SCOPE .. US .. OP_ID .. US .. NOW .. US .. FP .. US .. res
    .. US .. tail)
  return res
end

-- Record the result for replays, then journal.
local function commit(op, res, tail)
  redis.call('SET', OPKEY, FP .. res, 'EX', TTL)
  return append(op, res, tail)
end

-- Account operations keep their idempotency record in the account's own hash (field "o:<op id>" =
-- fingerprint .. time(ms, 13 digits) .. result), so one HMGET reads account, hold and record and one
-- HSET writes them: every redis.call costs microseconds in Redis' Lua. Records older than the TTL and
-- resolved holds past their retention are dropped by compact(): every COMPACT_EVERY versions, and only
-- when the oldest record (field "m", ms) has passed the TTL, so a scan never runs for nothing.
local OPF = 'o:' .. OP_ID
local COMPACT_EVERY = 50

local function parse_hold(raw)
  if not raw then
    return nil
  end
  local a, c, s, e, r, m = string.match(raw, '^(%d+)|(%d+)|(%a+)|([^|]*)|(%d)|(.*)$')
  return { a = tonumber(a), c = tonumber(c), s = s, e = e, r = r, m = m }
end

local function pack_hold(h)
  return h.a .. '|' .. h.c .. '|' .. h.s .. '|' .. h.e .. '|' .. h.r .. '|' .. h.m
end

-- The account (nil if unknown), the named hold (nil if none) and, for a replayed operation id, the
-- reply to give (the first result, or an id_conflict refusal).
local function load_account(key, hold_field)
  local a
  if hold_field then
    a = redis.call('HMGET', key, 's', 'p', 'h', 'v', 'f', 'n', 'o', 'm', OPF, hold_field)
  else
    a = redis.call('HMGET', key, 's', 'p', 'h', 'v', 'f', 'n', 'o', 'm', OPF)
  end
  if a[9] then
    if string.sub(a[9], 1, 32) == FP then
      return nil, nil, string.sub(a[9], 46)
    end
    return nil, nil, refuse('id_conflict', 'operation id ' .. OP_ID .. ' was already used with a different payload')
  end
  if not a[1] then
    return nil, nil, nil
  end
  local acc = { s = a[1], p = tonumber(a[2]), h = tonumber(a[3]), v = tonumber(a[4]), f = a[5], n = a[6], o = a[7],
    m = a[8] }
  return acc, parse_hold(a[10]), nil
end

local function compact(key)
  local fields = redis.call('HGETALL', key)
  local now, keep = tonumber(NOW), tonumber(TTL) * 1000
  local drop, oldest = {}, now
  for i = 1, #fields, 2 do
    local name, value = fields[i], fields[i + 1]
    local kind = string.sub(name, 1, 2)
    local t = nil
    if kind == 'o:' then
      t = tonumber(string.sub(value, 33, 45))
    elseif kind == 'h:' then
      local h = parse_hold(value)
      if h and h.s ~= 'pending' then t = tonumber(h.e) * 1000 end
    end
    if t then
      if t + keep < now then
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

-- Journal an account operation: the account's state after it (the SQL sync upserts by version), the
-- hold fields (empty when no hold is involved), then the operation's amount and two texts.
local function account_tail(acc, dp, dh, hold_id, h, amt, text1, text2)
  if h then
    return acc.f .. US .. acc.n .. US .. acc.o .. US .. acc.s .. US .. acc.p .. US .. acc.h .. US .. acc.v
      .. US .. dp .. US .. dh .. US .. hold_id .. US .. h.a .. US .. h.c .. US .. h.s .. US .. h.e .. US .. h.r
      .. US .. amt .. US .. text1 .. US .. text2
  end
  return acc.f .. US .. acc.n .. US .. acc.o .. US .. acc.s .. US .. acc.p .. US .. acc.h .. US .. acc.v
    .. US .. dp .. US .. dh .. US .. US .. US .. US .. US .. US .. US .. amt .. US .. text1 .. US .. text2
end

-- Write the account (and hold) state with the idempotency record in one HSET, then journal.
local function commit_account(op, res, key, acc, dp, dh, hold_id, h, amt, text1, text2)
  acc.v = acc.v + 1
  local record = FP .. NOW .. res
  local m = acc.m or NOW
  if h then
    redis.call('HSET', key, 's', acc.s, 'p', acc.p, 'h', acc.h, 'v', acc.v, 'm', m, 'h:' .. hold_id, pack_hold(h),
      OPF, record)
  else
    redis.call('HSET', key, 's', acc.s, 'p', acc.p, 'h', acc.h, 'v', acc.v, 'm', m, OPF, record)
  end
  if acc.v % COMPACT_EVERY == 0 and tonumber(m) + tonumber(TTL) * 1000 < tonumber(NOW) then
    compact(key)
  end
  return append(op, res, account_tail(acc, dp, dh, hold_id, h, amt, text1, text2))
end

local function balance(acc)
  return '=' .. acc.p .. '|' .. acc.h .. '|' .. acc.s
end

local function hold_result(h)
  return '=' .. h.a .. '|' .. h.c .. '|' .. h.s .. '|' .. h.e .. '|' .. h.m
end

local function active_or_refuse(acc)
  if not acc then
    return refuse('unknown_account', 'no account ' .. SCOPE)
  end
  if acc.s == 'frozen' or acc.s == 'closed' then
    return refuse('account_not_active', 'account is ' .. acc.s)
  end
  return nil
end
