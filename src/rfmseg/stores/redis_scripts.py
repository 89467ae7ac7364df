"""The Lua scripts the Redis store runs on the server: each is one atomic step (a read of the pointer and
the hash together, the pointer swap under the lock with the publish's changes appended to the feed, the
lock's release, a staged batch's check and record, and the trim of the change feed). The key layout they
work on is described in :mod:`rfmseg.stores.redis`."""

# KEYS[1] = pointer; ARGV = customer ids -> {pointer, value or false per id}, or nil if never published
READ_LUA = """
local ptr = redis.call('GET', KEYS[1])
if not ptr then return false end
local key = cjson.decode(ptr)['key']
local out = {ptr}
for i = 1, #ARGV, 1000 do
  local vals = redis.call('HMGET', key, unpack(ARGV, i, math.min(i + 999, #ARGV)))
  for j = 1, #vals do out[#out + 1] = vals[j] end
end
return out
"""
# KEYS[1] = lock, KEYS[2] = pointer, KEYS[3] = change feed (stream), KEYS[4] = the version's changes (a list
# of 5 values per change: customer_id, from_segment, to_segment, reason, segment_reason; '' = NULL), KEYS[5] =
# the staged batches' changes (Arrow parts); ARGV[1] = lock token, ARGV[2] = new pointer, ARGV[3..5] = run_id,
# as_of, model_version -> 1 if swapped (the changes appended to the feed, the lists deleted), 0 if the lock was lost
FLIP_LUA = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local n = redis.call('LLEN', KEYS[4])
for i = 0, n - 1, 5000 do
  local v = redis.call('LRANGE', KEYS[4], i, i + 4999)
  for j = 1, #v, 5 do
    redis.call('XADD', KEYS[3], '*', 'customer_id', v[j], 'from_segment', v[j + 1], 'to_segment', v[j + 2],
      'reason', v[j + 3], 'segment_reason', v[j + 4], 'run_id', ARGV[3], 'as_of', ARGV[4], 'model_version', ARGV[5])
  end
end
redis.call('DEL', KEYS[4], KEYS[5])
redis.call('SET', KEYS[2], ARGV[2])
return 1
"""
# KEYS[1] = change feed, KEYS[2] = its trim point; ARGV[1] = first id to keep (the cursor trimmed through, plus
# one), ARGV[2] = that cursor -> number removed, or -1 if the cursor is past the last change (nothing done)
TRIM_LUA = """
local function before(a, b)
  local ams, aseq = string.match(a, '^(%d+)-(%d+)$')
  local bms, bseq = string.match(b, '^(%d+)-(%d+)$')
  ams, aseq, bms, bseq = tonumber(ams), tonumber(aseq), tonumber(bms), tonumber(bseq)
  return ams < bms or (ams == bms and aseq < bseq)
end
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #last == 0 or before(last[1][1], ARGV[2]) then return -1 end
local removed = redis.call('XTRIM', KEYS[1], 'MINID', ARGV[1])
local trimmed = redis.call('GET', KEYS[2])
if not trimmed or before(trimmed, ARGV[2]) then redis.call('SET', KEYS[2], ARGV[2]) end
return removed
"""
# KEYS[1] = lock; ARGV[1] = token -> delete the lock only if it still holds that token
RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# KEYS[1] = pointer, KEYS[2] = stage; ARGV[1] = version served at begin ('' = none), ARGV[2] = its hash key
# ('' = none), ARGV[3..] = customer ids -> {'ok', value or false per id} | {'moved', run id} | {'gone'} |
# {'problem', text}
STAGE_READ_LUA = """
local ptr = redis.call('GET', KEYS[1])
local served, run = '', ''
if ptr then
  local p = cjson.decode(ptr)
  served, run = tostring(p['version']), p['run_id']
end
if served ~= ARGV[1] then return {'moved', run} end
if redis.call('EXISTS', KEYS[2]) == 0 then return {'gone'} end
local problem = redis.call('HGET', KEYS[2], 'problem')
if problem then return {'problem', problem} end
local out = {'ok'}
if ARGV[2] == '' then return out end
for i = 3, #ARGV, 1000 do
  local vals = redis.call('HMGET', ARGV[2], unpack(ARGV, i, math.min(i + 999, #ARGV)))
  for j = 1, #vals do out[#out + 1] = vals[j] end
end
return out
"""
# KEYS[1] = stage, KEYS[2] = versions, KEYS[3] = state list, KEYS[4] = changes list; ARGV[1] = version,
# ARGV[2..4] = rows, changed, new, ARGV[5] = problem ('' = none), ARGV[6] = batch key ('' = none), ARGV[7] =
# number of history parts, then the Arrow history parts, then the Arrow parts of the batch's changes -> 1 if
# recorded, 0 if the stage is gone, 2 if a batch of that key was recorded already (nothing is added)
STAGE_RECORD_LUA = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('SADD', KEYS[2], ARGV[1])  -- what the batch wrote stays findable: the next publish removes it
  return 0
end
if ARGV[5] ~= '' then
  redis.call('HSETNX', KEYS[1], 'problem', ARGV[5])
  return 1
end
if ARGV[6] ~= '' then
  local figures = ARGV[2] .. ',' .. ARGV[3] .. ',' .. ARGV[4]
  if redis.call('HSETNX', KEYS[1], 'batch:' .. ARGV[6], figures) == 0 then return 2 end
end
local states = tonumber(ARGV[7])
for i = 8, 7 + states do redis.call('RPUSH', KEYS[3], ARGV[i]) end
for i = 8 + states, #ARGV do redis.call('RPUSH', KEYS[4], ARGV[i]) end
redis.call('HINCRBY', KEYS[1], 'rows', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'changed', ARGV[3])
redis.call('HINCRBY', KEYS[1], 'new', ARGV[4])
redis.call('HINCRBY', KEYS[1], 'batches', 1)
return 1
"""
# KEYS[1] = change feed, KEYS[2] = its trim point; ARGV[1] = start ('-' or '(' .. cursor; '' for none: the cursor
# is at or past the largest stream id, nothing can follow it), ARGV[2] = count ->
# {entries as one JSON text ([[id, [field, value, ...]], ...]), trim point or false, id of the last entry or
# false}: one snapshot of all three, and one reply to parse instead of seventeen per entry
CHANGES_LUA = """
local entries = {}
if ARGV[1] ~= '' then entries = redis.call('XRANGE', KEYS[1], ARGV[1], '+', 'COUNT', ARGV[2]) end
local text = '[]'
if #entries > 0 then text = cjson.encode(entries) end
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local id = false
if #last > 0 then id = last[1][1] end
return {text, redis.call('GET', KEYS[2]), id}
"""
