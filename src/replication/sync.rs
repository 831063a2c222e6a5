//! Replication of maps with `sync` through Redis: what one round trip sends for
//! a map (its batch of changes, and a read of what every host wrote since), and
//! how the reply is applied to the local map. The connection is
//! `connection.rs`'s, the round trip around the scripts `round_trip.rs`'s.
//!
//! Redis keys, for the map `M` and the prefix `P` (`shared_map_redis prefix=`):
//!
//! - `P:M` a hash of the current values (numbers in decimal, strings as bytes);
//! - `P:M:meta` a hash of each key's type and absolute expiry (`l:0`, `s:1700000000`);
//! - `P:M:log` a stream of every change, in Redis's order, trimmed to about
//!   the map's entries: `h` (the writing host), `o` (`a` add, `p` put, `r`
//!   remove, `c` clear), `k`, `t`, `v` (the value after the change), `e`;
//! - `P:M:seq` a hash of each host's last applied batch number.
//!
//! One Lua script applies a host's batch (unless its number was applied
//! already: a batch resent after a lost reply changes nothing), then returns
//! the stream's entries after the host's last one, or, for a host that has none
//! yet or fell behind the trimmed stream, the whole contents. A host then sets
//! each key to the value Redis holds plus its own additions not yet
//! acknowledged, so counters converge to the exact sum and every host applies
//! conflicting writes in Redis's order.

use redis_protocol::resp2::types::OwnedFrame;
use shared_map_engine::{Batch, Op, OwnedValue, SyncStatus, Ttl, Value};

use crate::zone::{now, SharedMap};

/// The script every round trip runs. KEYS: values, meta, log, seq. ARGV: host,
/// batch number (0: none), stream length, last entry id read ('': none), entries
/// to read at most, clear (1/0), bytes to read at most (the entries' fields;
/// one entry at least), then five words per change: op, key, type, value,
/// expiry.
pub const SCRIPT: &str = r#"
local function before(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)
  return am < bm or (am == bm and as < bs)
end
-- A key of another type (written by another tool) fails the whole round
-- trip before anything changes: the batch is not acknowledged and is resent.
for i = 1, 4 do
  local want = i == 3 and 'stream' or 'hash'
  local t = redis.call('TYPE', KEYS[i])['ok']
  if t ~= 'none' and t ~= want then
    return redis.error_reply('WRONGTYPE ' .. KEYS[i] .. ' holds a ' .. t .. ', not a ' .. want)
  end
end
local host, seq, maxlen = ARGV[1], tonumber(ARGV[2]), ARGV[3]
if seq > 0 and seq > tonumber(redis.call('HGET', KEYS[4], host) or '0') then
  if ARGV[6] == '1' then
    redis.call('DEL', KEYS[1], KEYS[2])
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', maxlen, '*', 'h', host, 'o', 'c', 'k', '', 't', '', 'v', '', 'e', '0')
  end
  for i = 8, #ARGV, 5 do
    local op, k, t, v, e = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
    if op == 'a' then
      local m = redis.call('HGET', KEYS[2], k)
      if m and string.sub(m, 1, 1) == 's' then
        redis.call('HDEL', KEYS[1], k)
        m = nil
      end
      t = m and string.sub(m, 1, 1) or 'l'
      -- An addition that would take a long beyond 64 bits (HINCRBY's error)
      -- or an int beyond 32 is refused, as a local one is: the value stays,
      -- and the entry below tells every host, the adding one included, the
      -- value it keeps. The rest of the batch goes on.
      local old = t == 'i' and redis.call('HGET', KEYS[1], k)
      local r = redis.pcall('HINCRBY', KEYS[1], k, v)
      if type(r) == 'number' and t == 'i' and (r > 2147483647 or r < -2147483648) then
        if old then redis.call('HSET', KEYS[1], k, old) else redis.call('HDEL', KEYS[1], k) end
        r = nil
      end
      -- As text: exact below 2^53 (a Lua number is a double; tostring
      -- writes 1e+14), read back beyond.
      if type(r) == 'number' and r < 9007199254740992 and r > -9007199254740992 then
        v = string.format('%.0f', r)
      else
        v = redis.call('HGET', KEYS[1], k) or '0'
      end
      if type(r) == 'number' then
        redis.call('HSET', KEYS[2], k, t .. ':' .. e)
      else
        e = m and string.match(m, ':(%d+)$') or '0'
      end
    elseif op == 'p' then
      redis.call('HSET', KEYS[1], k, v)
      redis.call('HSET', KEYS[2], k, t .. ':' .. e)
    else
      redis.call('HDEL', KEYS[1], k)
      redis.call('HDEL', KEYS[2], k)
    end
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', maxlen, '*', 'h', host, 'o', op, 'k', k, 't', t, 'v', v, 'e', e)
  end
  -- Last: a batch is marked applied only once all of it was.
  redis.call('HSET', KEYS[4], host, seq)
end
local last = ARGV[4]
local exists = redis.call('EXISTS', KEYS[3]) == 1
if last ~= '' and exists then
  -- Entries after `last` were trimmed (the oldest kept is newer) or deleted.
  local first = redis.call('XRANGE', KEYS[3], '-', '+', 'COUNT', 1)
  if #first > 0 and before(last, first[1][1]) then
    last = ''
  end
  local info = redis.call('XINFO', 'STREAM', KEYS[3])
  for i = 1, #info, 2 do
    if last ~= '' and info[i] == 'max-deleted-entry-id' and before(last, info[i + 1]) then
      last = ''
    end
    -- Entries the host read are not here: a replica promoted by a failover
    -- before it copied them. The whole contents, as Redis now holds them.
    if last ~= '' and info[i] == 'last-generated-id' and before(info[i + 1], last) then
      last = ''
    end
  end
end
if last == '' then
  local id = '0-0'
  if exists then
    local e = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1)
    if #e > 0 then id = e[1][1] end
  end
  return {1, id, redis.call('HGETALL', KEYS[1]), redis.call('HGETALL', KEYS[2])}
end
-- The read is bounded in bytes too: the host refuses a reply larger than
-- its map could hold, and would ask for the same one again.
local entries = redis.call('XRANGE', KEYS[3], '(' .. last, '+', 'COUNT', ARGV[5])
local budget, used = tonumber(ARGV[7]), 0
for i, entry in ipairs(entries) do
  for j = 2, #entry[2], 2 do used = used + #entry[2][j] end
  if used > budget and i > 1 then
    local kept = {}
    for x = 1, i - 1 do kept[x] = entries[x] end
    return {0, last, kept}
  end
end
return {0, last, entries}
"#;

/// Changes sent in one round trip at most, and stream entries read.
const BATCH: usize = 512;
/// Stream entries read in one round trip at most.
pub const READ: usize = 1024;

/// What a host remembers of one synced map between round trips.
pub struct MapSync {
    pub map: &'static SharedMap,
    /// The last stream entry applied; empty: load the whole contents next.
    pub last_id: String,
    /// The name of the map's replication log at the server, as last sent. A
    /// map made again after a death in its allocator (`zone::rebuild`) has a
    /// new log under a new name, and loads the whole contents again.
    pub host: u64,
    /// The batch number of the round trip under way, if it carries one.
    pub flight: u64,
    /// The last round trip was full (a whole batch sent or a whole read
    /// received): the next one should follow at once.
    pub more: bool,
}

fn bulk(b: impl Into<Vec<u8>>) -> OwnedFrame {
    OwnedFrame::BulkString(b.into())
}

fn decimal(n: impl itoa::Integer) -> OwnedFrame {
    bulk(itoa::Buffer::new().format(n).as_bytes())
}

/// The command of one map's round trip: its batch, if any, and the read. With
/// the script's SHA-1 (`SCRIPT LOAD` on this connection), `EVALSHA`; else `EVAL`.
pub fn request(sync: &mut MapSync, prefix: &str, sha: &[u8]) -> OwnedFrame {
    let now = now();
    let map = sync.map;
    let taken = map
        .with(|m| (m.sync_take(BATCH, now), m.sync_host(), m.config().entries))
        .ok();
    let (batch, host, entries) = taken.unwrap_or((None, sync.host, 0));
    if host != sync.host {
        sync.host = host;
        sync.last_id.clear();
    }
    let batch = batch.unwrap_or_default();
    sync.flight = batch.seq;
    sync.more = batch.changes.len() >= BATCH;
    let name = format!("{prefix}:{}", map.name);
    let (eval, script) = if sha.is_empty() {
        ("EVAL", SCRIPT.as_bytes())
    } else {
        ("EVALSHA", sha)
    };
    let mut words = vec![
        bulk(eval),
        bulk(script),
        bulk("4"),
        bulk(name.clone()),
        bulk(format!("{name}:meta")),
        bulk(format!("{name}:log")),
        bulk(format!("{name}:seq")),
        bulk(format!("{host:016x}")),
        decimal(batch.seq),
        decimal(entries.max(1000)),
        bulk(sync.last_id.clone()),
        decimal(READ),
        bulk(if batch.clear { "1" } else { "0" }),
        decimal(map.spec.space),
    ];
    push_changes(&mut words, &batch);
    OwnedFrame::Array(words)
}

fn push_changes(words: &mut Vec<OwnedFrame>, batch: &Batch) {
    for c in &batch.changes {
        let (op, t, v, e): (&str, &str, Vec<u8>, u32) = match &c.op {
            Op::Add { delta, expire } => ("a", "l", itoa::Buffer::new().format(*delta).into(), *expire),
            Op::Put { value, expire } => match value {
                OwnedValue::Long(n) => ("p", "l", itoa::Buffer::new().format(*n).into(), *expire),
                OwnedValue::Int(n) => ("p", "i", itoa::Buffer::new().format(*n).into(), *expire),
                OwnedValue::Str(s) => ("p", "s", s.clone(), *expire),
            },
            Op::Remove => ("r", "", Vec::new(), 0),
        };
        words.extend([bulk(op), bulk(c.key.clone()), bulk(t), bulk(v), decimal(e)]);
    }
}

fn text(f: &OwnedFrame) -> Option<&[u8]> {
    match f {
        OwnedFrame::BulkString(b) | OwnedFrame::SimpleString(b) => Some(b),
        _ => None,
    }
}

fn number(f: &OwnedFrame) -> Option<i64> {
    match f {
        OwnedFrame::Integer(n) => Some(*n),
        other => core::str::from_utf8(text(other)?).ok()?.parse().ok(),
    }
}

/// A stream entry id's milliseconds.
fn id_ms(id: &str) -> u64 {
    id.split('-').next().and_then(|ms| ms.parse().ok()).unwrap_or(0)
}

/// Applies the reply of one map's round trip and reports it in the map's
/// statistics. `Err` with a message when the reply is not the script's.
pub fn apply(sync: &mut MapSync, reply: OwnedFrame, now_ms: u64) -> Result<(), String> {
    let (applied, lag_ms) = apply_reply(sync, reply, now_ms)?;
    let _ = sync.map.with(|m| {
        m.set_sync_status(&SyncStatus {
            connected: true,
            applied,
            lag_ms: Some(lag_ms),
            error: None,
        })
    });
    Ok(())
}

/// Reports a failure in the statistics of every synced map.
pub fn report_error(maps: &[MapSync], connected: bool, error: &str) {
    for sync in maps {
        let _ = sync.map.with(|m| {
            m.set_sync_status(&SyncStatus {
                connected,
                applied: 0,
                lag_ms: None,
                error: Some(error.as_bytes()),
            })
        });
    }
}

/// Applies a reply; returns how many changes from the stream were applied and
/// the largest lag among them (0: none, the host is up to date).
fn apply_reply(sync: &mut MapSync, reply: OwnedFrame, now_ms: u64) -> Result<(u64, u64), String> {
    let items = match reply {
        OwnedFrame::Array(items) => items,
        OwnedFrame::Error(e) => return Err(e),
        _ => return Err("unexpected reply".into()),
    };
    let mut items = items.into_iter();
    let (Some(mode), Some(id)) = (items.next(), items.next()) else {
        return Err("short reply".into());
    };
    let mode = number(&mode).ok_or("bad reply")?;
    let id = String::from_utf8_lossy(text(&id).ok_or("bad reply")?).into_owned();
    // The batch is in Redis (applied now or before): it leaves the log first,
    // so that "unacknowledged" below excludes it.
    if sync.flight != 0 {
        let seq = sync.flight;
        let _ = sync.map.with(|m| m.sync_ack(seq));
        sync.flight = 0;
    }
    let now = now();
    if mode == 1 {
        let values = items.next().ok_or("short reply")?;
        let meta = items.next().ok_or("short reply")?;
        load(sync.map, values, meta, now);
        sync.last_id = id;
        return Ok((0, 0));
    }
    let Some(OwnedFrame::Array(entries)) = items.next() else {
        return Err("bad reply".into());
    };
    let (mut applied, mut lag) = (0u64, 0u64);
    sync.more |= entries.len() >= READ;
    for chunk in entries.chunks(64) {
        let _ = sync.map.with(|m| {
            m.set_replicate(false);
            for entry in chunk {
                let OwnedFrame::Array(pair) = entry else { continue };
                let [id, OwnedFrame::Array(fields)] = pair.as_slice() else {
                    continue;
                };
                let field = |name: &[u8]| {
                    fields
                        .chunks(2)
                        .find(|kv| text(&kv[0]) == Some(name))
                        .and_then(|kv| kv.get(1))
                        .and_then(text)
                        .unwrap_or(b"")
                };
                let expire = core::str::from_utf8(field(b"e"))
                    .ok()
                    .and_then(|e| e.parse().ok())
                    .unwrap_or(0);
                let key = field(b"k");
                match field(b"o") {
                    b"c" => {
                        m.clear();
                    }
                    b"r" => remove(m, key, now),
                    _ => set(m, key, field(b"t"), field(b"v"), expire, now),
                }
                if let Some(id) = text(id) {
                    let id = String::from_utf8_lossy(id);
                    lag = lag.max(now_ms.saturating_sub(id_ms(&id)));
                    sync.last_id = id.into_owned();
                }
                applied += 1;
            }
            m.set_replicate(true);
        });
    }
    Ok((applied, lag))
}

type LocalMap<'a> = shared_map_engine::Map<'a, crate::zone::SlabArena>;

/// Sets `key` to what Redis holds plus this host's additions not yet
/// acknowledged, unless this host's own latest state is still to be sent.
fn set(m: &mut LocalMap<'_>, key: &[u8], t: &[u8], v: &[u8], expire: u32, now: u32) {
    if m.has_unacked_latest(key) {
        return;
    }
    if expire != 0 && expire <= now {
        m.remove(key, now);
        return;
    }
    let ttl = if expire == 0 {
        Ttl::Never
    } else {
        Ttl::Secs(expire - now)
    };
    if t == b"s" {
        let _ = m.put(key, Value::Str(v), ttl, now);
        return;
    }
    let Some(held) = core::str::from_utf8(v).ok().and_then(|s| s.parse::<i64>().ok()) else {
        return;
    };
    let value = local_number(t, held, m.unacked_delta(key));
    let _ = m.put(key, value, ttl, now);
}

/// The value a host shows for a number Redis holds as `held`, of type `t`,
/// given its own additions not yet acknowledged: their sum, never wrapped.
/// When the sum leaves the type, Redis will refuse those additions as a local
/// overflow is refused, so the host shows what Redis holds. A value beyond an
/// int (written by an older version or another tool) is kept as a long.
fn local_number(t: &[u8], held: i64, unacked: i128) -> Value<'static> {
    let sum = i128::from(held) + unacked;
    match t {
        b"i" => match (i32::try_from(sum), i32::try_from(held)) {
            (Ok(n), _) | (Err(_), Ok(n)) => Value::Int(n),
            (Err(_), Err(_)) => Value::Long(held),
        },
        _ => Value::Long(i64::try_from(sum).unwrap_or(held)),
    }
}

fn remove(m: &mut LocalMap<'_>, key: &[u8], now: u32) {
    if m.has_unacked_latest(key) {
        return;
    }
    let delta = m.unacked_delta(key);
    if m.has_unacked(key) {
        // Removed in Redis before this host's additions arrive there.
        let _ = m.put(key, local_number(b"l", 0, delta), Ttl::Default, now);
    } else {
        m.remove(key, now);
    }
}

/// Replaces the local contents with Redis's, keeping this host's changes not
/// yet acknowledged.
fn load(map: &SharedMap, values: OwnedFrame, meta: OwnedFrame, now: u32) {
    let (OwnedFrame::Array(values), OwnedFrame::Array(meta)) = (values, meta) else {
        return;
    };
    let meta: std::collections::HashMap<&[u8], &[u8]> = meta
        .chunks(2)
        .filter_map(|kv| Some((text(kv.first()?)?, text(kv.get(1)?)?)))
        .collect();
    let mut present = std::collections::HashSet::new();
    for chunk in values.chunks(2 * 64) {
        let _ = map.with(|m| {
            m.set_replicate(false);
            for kv in chunk.chunks(2) {
                let (Some(k), Some(v)) = (kv.first().and_then(text), kv.get(1).and_then(text)) else {
                    continue;
                };
                let (t, e) = meta
                    .get(k)
                    .and_then(|m| core::str::from_utf8(m).ok())
                    .and_then(|m| m.split_once(':'))
                    .map_or(("l", 0), |(t, e)| (t, e.parse().unwrap_or(0)));
                set(m, k, t.as_bytes(), v, e, now);
                present.insert(k.to_vec());
            }
            m.set_replicate(true);
        });
    }
    // What Redis no longer holds goes, but for this host's own changes.
    // Walked in batches of buckets, the lock released between them.
    let mut gone = Vec::new();
    let mut cursor = Some(0);
    while let Some(from) = cursor {
        cursor = map
            .with(|m| {
                m.walk(from, 1024, b"", now, |k, _, _| {
                    if !present.contains(k) {
                        gone.push(k.to_vec());
                    }
                })
            })
            .ok()
            .flatten();
    }
    for chunk in gone.chunks(64) {
        let _ = map.with(|m| {
            m.set_replicate(false);
            for k in chunk {
                if !m.has_unacked(k) {
                    m.remove(k, now);
                }
            }
            m.set_replicate(true);
        });
    }
}
