//! The Lua scripts that make each multi-step change atomic.

use std::sync::LazyLock;

use redis::Script;

/// Publishes a message unless its id was seen inside the window.
///
/// KEYS: stream, sequence counter, dedup key. ARGV: subject, headers,
/// payload, message id, window (ms, 0: no dedup), trim strategy (``,
/// `MAXLEN`, `MINID`), trim threshold. Returns `{sequence, duplicate}`.
pub(super) static PUBLISH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local dup = redis.call('GET', KEYS[3])
if dup then return {tonumber(dup), 1} end
local seq = redis.call('INCR', KEYS[2])
if ARGV[6] == '' then
  redis.call('XADD', KEYS[1], '*', 's', ARGV[1], 'h', ARGV[2], 'p', ARGV[3], 'q', seq, 'i', ARGV[4])
else
  redis.call('XADD', KEYS[1], ARGV[6], '~', ARGV[7], '*', 's', ARGV[1], 'h', ARGV[2], 'p', ARGV[3], 'q', seq, 'i', ARGV[4])
end
if tonumber(ARGV[5]) > 0 then redis.call('SET', KEYS[3], seq, 'PX', ARGV[5]) end
return {seq, 0}
",
    )
});

/// Takes over what is due: parked retries whose time has come, then
/// entries of consumers that went silent for `min_idle` (a crash), leaving
/// parked ones parked. Each delivery increments the entry's count once.
///
/// KEYS: stream, parked set. ARGV: group, consumer, now (ms), min idle
/// (ms), count, the parking consumer's name. Returns
/// `{{{id, fields, delivered}...}, next due (ms) or -1}`.
pub(super) static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local out = {}
local n = tonumber(ARGV[5])
local function take(id)
  local e = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, id)
  if e[1] and e[1][2] then
    local p = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
    local count = 1
    if p[1] then count = p[1][4] end
    table.insert(out, {e[1][1], e[1][2], count})
  else
    redis.call('XACK', KEYS[1], ARGV[1], id)
  end
end
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[3], 'LIMIT', 0, n)
for _, id in ipairs(due) do
  redis.call('ZREM', KEYS[2], id)
  take(id)
end
if #out < n then
  local r = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[4], '0-0', 'COUNT', n - #out, 'JUSTID')
  for _, id in ipairs(r[2]) do
    if redis.call('ZSCORE', KEYS[2], id) then
      redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[6], 0, id, 'JUSTID')
    else
      take(id)
    end
  end
end
local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
local next_due = -1
if first[2] then next_due = tonumber(first[2]) end
return {out, next_due}
",
    )
});

/// Parks an entry for a retry at `due`: it leaves the consumer (to the
/// parking consumer, so that no replica claims it as stale) and stays
/// pending, so a crash meanwhile loses nothing.
///
/// KEYS: stream, parked set. ARGV: group, entry id, due (ms), the parking
/// consumer's name.
pub(super) static PARK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[2], ARGV[2], 1)[1] == nil then return 0 end
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[4], 0, ARGV[2], 'JUSTID')
return 1
",
    )
});

/// Restarts the idle time of an entry this consumer still owns (progress).
///
/// KEYS: stream. ARGV: group, consumer, entry id.
pub(super) static PROGRESS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if p[1] and p[1][2] == ARGV[2] then
  redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'JUSTID')
  return 1
end
return 0
",
    )
});

/// Removes a consumer name from its group once it owns nothing.
///
/// KEYS: stream. ARGV: group, consumer.
pub(super) static RETIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local p = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if #p == 0 then redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2]) end
return #p
",
    )
});
