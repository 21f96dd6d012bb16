"""The Lua scripts of the Redis broker: every state change is one atomic script, one round trip.

Keys (``P`` is REDIS_PREFIX; every script gets it as ARGV[1]):

    P:peer:<peer>     hash   node, conn (empty while away), room, resume (token hash)
    P:resume:<hash>   string peer id the resume token stands for (single use)
    P:room:<room>     hash   peer -> member JSON; Redis deletes it with its last member
    P:queue:<peer>    list   frames waiting for the peer (while away, or while its replica is
                             not subscribed); TTL grace + 60 s
    P:held:<peer>     list   frames sent while the peer's last replica still hands over (below)
    P:away            zset   peer -> deadline (ms, Redis clock) of peers inside their grace period
    P:holds           zset   peer -> deadline of its hand-over (a dead replica's hold lapses)
    P:nodes           zset   replica -> last heartbeat (ms, Redis clock)
    P:node:<replica>  set    peers attached on that replica
    channel P:ch:<replica>   frames for peers attached there

A replica that lets go of a peer (its connection closed, was cut off, or resumed elsewhere) may
still have frames for it in flight on its channel. Until it has passed those on, the peer is *held*:
new frames wait in P:held, and the replica's ``release`` sends its frames first, then the held
ones, so one sender's frames never overtake each other across the hand-over.

Timestamps come from Redis' own clock (TIME), so replicas never compare their clocks.
Scripts build key names from the prefix, which a single Redis (or a primary of Sentinel) allows;
docs/scaling.md explains what Redis Cluster would need instead.
"""

from __future__ import annotations

# Shared helpers, prepended to every script.
_COMMON = """
local P = ARGV[1]
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function rec_key(peer) return P .. ':peer:' .. peer end
local function queue_key(peer) return P .. ':queue:' .. peer end

-- The peer is away until ``deadline``; its keys outlive that a little, then vanish by themselves.
local function set_away(peer, deadline)
  local rec = rec_key(peer)
  local f = redis.call('HMGET', rec, 'node', 'resume')
  if f[1] then redis.call('SREM', P .. ':node:' .. f[1], peer) end
  redis.call('HSET', rec, 'conn', '')
  redis.call('ZADD', P .. ':away', deadline, peer)
  redis.call('PEXPIREAT', rec, deadline + 60000)
  if f[2] then redis.call('PEXPIREAT', P .. ':resume:' .. f[2], deadline + 60000) end
end

-- Remove every trace of a peer; returns the room it was in ('' for none).
local function drop(peer)
  local rec = rec_key(peer)
  local f = redis.call('HMGET', rec, 'node', 'room', 'resume')
  if f[1] then redis.call('SREM', P .. ':node:' .. f[1], peer) end
  if f[2] and f[2] ~= '' then redis.call('HDEL', P .. ':room:' .. f[2], peer) end
  if f[3] then redis.call('DEL', P .. ':resume:' .. f[3]) end
  redis.call('DEL', rec, queue_key(peer), P .. ':held:' .. peer)
  redis.call('ZREM', P .. ':away', peer)
  redis.call('ZREM', P .. ':holds', peer)
  return f[2] or ''
end

-- Queue a frame for a peer; 'queued' or 'full'.
local function enqueue(peer, frame, bound, keep_ms)
  local q = queue_key(peer)
  if redis.call('LLEN', q) >= bound then return 'full' end
  redis.call('RPUSH', q, frame)
  redis.call('PEXPIRE', q, keep_ms)
  return 'queued'
end

-- Hand ``frame`` to each peer of ``peers``: published to the replica it is attached to, or
-- queued while it is away. Once anything waits in a peer's queue, later frames queue behind it
-- (and its replica is told to flush), so one sender's frames never overtake each other.
-- A replica that is not subscribed (restarting, or dead and not yet noticed) gets nothing
-- published: its peers' frames wait in their queues. Returns one result per peer.
local function send(peers, frame, bound, keep_ms)
  local results, groups, order = {}, {}, {}
  for i, peer in ipairs(peers) do
    local f = redis.call('HMGET', rec_key(peer), 'node', 'conn', 'hold')
    if not f[1] then
      results[i] = 'gone'
    elseif f[3] and f[3] ~= '' then
      local held = P .. ':held:' .. peer
      if redis.call('LLEN', held) >= bound then
        results[i] = 'full'
      else
        redis.call('RPUSH', held, frame)
        redis.call('PEXPIRE', held, keep_ms)
        results[i] = 'queued'
      end
    elseif f[2] ~= '' and redis.call('LLEN', queue_key(peer)) == 0 then
      if not groups[f[1]] then groups[f[1]] = {}; order[#order + 1] = f[1] end
      table.insert(groups[f[1]], i)
      results[i] = 'delivered'
    else
      results[i] = enqueue(peer, frame, bound, keep_ms)
      if results[i] == 'queued' and f[2] ~= '' then
        redis.call('PUBLISH', P .. ':ch:' .. f[1], 'f ' .. peer .. '\\n')
      end
    end
  end
  for _, node in ipairs(order) do
    local targets = {}
    for _, i in ipairs(groups[node]) do targets[#targets + 1] = peers[i] end
    local header = 'd ' .. table.concat(targets, ' ') .. '\\n'
    if redis.call('PUBLISH', P .. ':ch:' .. node, header .. frame) == 0 then
      for _, i in ipairs(groups[node]) do results[i] = enqueue(peers[i], frame, bound, keep_ms) end
    end
  end
  return results
end

-- ``node`` still has frames in flight for ``peer``: hold new ones until it releases them.
local function hold(peer, node)
  redis.call('HSET', rec_key(peer), 'hold', node)
  redis.call('ZADD', P .. ':holds', now_ms() + 10000, peer)
end

-- End a hold: ``frames`` (in flight at the holder), then the held ones, go where the peer is now.
local function release(peer, node, frames, bound, keep_ms)
  local rec, held = rec_key(peer), P .. ':held:' .. peer
  redis.call('ZREM', P .. ':holds', peer)
  if redis.call('EXISTS', rec) == 0 then
    redis.call('DEL', held)
    return
  end
  if node == nil or redis.call('HGET', rec, 'hold') == node then
    redis.call('HSET', rec, 'hold', '')
  end
  for _, frame in ipairs(frames) do send({peer}, frame, bound, keep_ms) end
  local waiting = redis.call('LRANGE', held, 0, -1)
  redis.call('DEL', held)
  for _, frame in ipairs(waiting) do send({peer}, frame, bound, keep_ms) end
end

-- Take everything queued for a peer (in order) and clear the queue.
local function take_queue(peer)
  local q = queue_key(peer)
  local frames = redis.call('LRANGE', q, 0, -1)
  redis.call('DEL', q)
  return frames
end

-- Mark ``peer`` attached through ``conn`` on ``node`` with a fresh resume hash.
local function set_attached(peer, node, conn, resume)
  local rec = rec_key(peer)
  local old = redis.call('HGET', rec, 'resume')
  if old and old ~= resume then redis.call('DEL', P .. ':resume:' .. old) end
  redis.call('HSET', rec, 'node', node, 'conn', conn, 'resume', resume)
  redis.call('PERSIST', rec)
  redis.call('SET', P .. ':resume:' .. resume, peer)
  redis.call('SADD', P .. ':node:' .. node, peer)
  redis.call('ZREM', P .. ':away', peer)
end
"""

# ARGV: P, peer, node, conn, resume_hash -> {room, member JSON, frames queued for the peer...}
ATTACH = """
local peer, node, conn, resume = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local room = redis.call('HGET', rec_key(peer), 'room')
if not room then
  room = ''
  redis.call('HSET', rec_key(peer), 'room', room)
end
set_attached(peer, node, conn, resume)
local member = ''
if room ~= '' then member = redis.call('HGET', P .. ':room:' .. room, peer) or '' end
local frames = take_queue(peer)
table.insert(frames, 1, member)
table.insert(frames, 1, room)
return frames
"""

# ARGV: P, resume_hash, this node, grace_ms -> {peer, room, old node, old conn} or nil
CLAIM = """
local peer = redis.call('GETDEL', P .. ':resume:' .. ARGV[2])
if not peer then return nil end
local f = redis.call('HMGET', rec_key(peer), 'node', 'conn', 'room')
if not f[1] then return nil end
if f[2] ~= '' then
  -- Its old connection is still open somewhere: close it, and hold until that replica lets go.
  hold(peer, f[1])
  redis.call('PUBLISH', P .. ':ch:' .. f[1], 's ' .. peer .. ' ' .. f[2] .. '\\n')
end
redis.call('HDEL', rec_key(peer), 'resume')
set_away(peer, now_ms() + tonumber(ARGV[4]))
return {peer, f[3], f[1], f[2]}
"""

# ARGV: P, peer, conn, node, grace_ms -> what became of the peer this connection let go of:
# 'held' (now away; a marker follows the frames in flight), 'claimed' (a resume holds it for this
# replica already), 'other' (attached or away elsewhere), 'gone'.
HANDOFF = """
local peer, conn, node = ARGV[2], ARGV[3], ARGV[4]
local f = redis.call('HMGET', rec_key(peer), 'conn', 'hold')
if not f[1] then return 'gone' end
if f[1] == conn then
  set_away(peer, now_ms() + tonumber(ARGV[5]))
  hold(peer, node)
  redis.call('PUBLISH', P .. ':ch:' .. node, 'm ' .. peer .. ' ' .. conn .. '\\n')
  return 'held'
end
if f[2] == node then return 'claimed' end
return 'other'
"""

# ARGV: P, peer, node, bound, keep_ms, frames...: this replica lets go of the peer.
RELEASE = """
local frames = {}
for i = 6, #ARGV do frames[#frames + 1] = ARGV[i] end
release(ARGV[2], ARGV[3], frames, tonumber(ARGV[4]), tonumber(ARGV[5]))
return 1
"""

# ARGV: P, peer, conn -> room ('' for none), or false if the peer is not attached through conn
FORGET = """
if redis.call('HGET', rec_key(ARGV[2]), 'conn') ~= ARGV[3] then return false end
return drop(ARGV[2])
"""

# ARGV: P, room, peer, member_json, capacity -> members already there, or false when full
JOIN = """
local room = P .. ':room:' .. ARGV[2]
if redis.call('HLEN', room) >= tonumber(ARGV[5]) then return false end
local present = redis.call('HVALS', room)
redis.call('HSET', room, ARGV[3], ARGV[4])
redis.call('HSET', rec_key(ARGV[3]), 'room', ARGV[2])
return present
"""

# ARGV: P, room, peer
LEAVE = """
redis.call('HDEL', P .. ':room:' .. ARGV[2], ARGV[3])
if redis.call('HGET', rec_key(ARGV[3]), 'room') == ARGV[2] then
  redis.call('HSET', rec_key(ARGV[3]), 'room', '')
end
return 1
"""

# ARGV: P, room, to, frame, bound, keep_ms -> delivered | queued | full | gone
DELIVER = """
if redis.call('HEXISTS', P .. ':room:' .. ARGV[2], ARGV[3]) == 0 then return 'gone' end
return send({ARGV[3]}, ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6]))[1]
"""

# ARGV: P, room, exclude, frame, bound, keep_ms[, only...] -> number of peers it was handed to
# With ``only``, just those of them still in the room get it.
PUBLISH = """
local only = nil
if #ARGV > 6 then
  only = {}
  for i = 7, #ARGV do only[ARGV[i]] = true end
end
local peers = {}
for _, peer in ipairs(redis.call('HKEYS', P .. ':room:' .. ARGV[2])) do
  if peer ~= ARGV[3] and (only == nil or only[peer]) then peers[#peers + 1] = peer end
end
return #send(peers, ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6]))
"""

# ARGV: P, peer, this node, frame, bound, keep_ms: a frame reached a replica where its peer no
# longer is; send it on, or queue it if the peer still counts as attached here.
REROUTE = """
local f = redis.call('HMGET', rec_key(ARGV[2]), 'node', 'conn')
if not f[1] then return 'gone' end
if f[1] == ARGV[3] or f[2] == '' then
  return enqueue(ARGV[2], ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6]))
end
return send({ARGV[2]}, ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6]))[1]
"""

# ARGV: P, peer, conn -> frames queued for a peer attached here (after a flush request)
FLUSH = """
if redis.call('HGET', rec_key(ARGV[2]), 'conn') ~= ARGV[3] then return {} end
return take_queue(ARGV[2])
"""

# ARGV: P, node -> 1 if the replica was registered, 0 if Redis had forgotten it (restart without
# data, or it was taken for dead): then it must re-register its peers.
HEARTBEAT = """
local known = redis.call('ZSCORE', P .. ':nodes', ARGV[2])
redis.call('ZADD', P .. ':nodes', now_ms(), ARGV[2])
if known then return 1 end
return 0
"""

# ARGV: P, node, grace_ms: unregister a replica that stops; peers still listed here (their
# detach failed) get the grace period like any other dropped connection.
GOODBYE = """
redis.call('ZREM', P .. ':nodes', ARGV[2])
local deadline = now_ms() + tonumber(ARGV[3])
for _, peer in ipairs(redis.call('SMEMBERS', P .. ':node:' .. ARGV[2])) do
  if redis.call('HGET', rec_key(peer), 'node') == ARGV[2] then set_away(peer, deadline) end
end
redis.call('DEL', P .. ':node:' .. ARGV[2])
return 1
"""

# ARGV: P, node, peer, conn, resume, room, member_json -> {'ok'|'lost', frames...}
# After Redis lost or dropped this replica's state: put a peer attached here back, unless a
# resume elsewhere has taken it since.
RESYNC = """
local peer, node, conn, resume, room = ARGV[3], ARGV[2], ARGV[4], ARGV[5], ARGV[6]
local f = redis.call('HMGET', rec_key(peer), 'node', 'conn', 'resume')
if f[1] and not (f[2] == conn or (f[2] == '' and f[1] == node and f[3] == resume)) then
  return {'lost'}
end
set_attached(peer, node, conn, resume)
if room ~= '' then
  redis.call('HSET', rec_key(peer), 'room', room)
  redis.call('HSET', P .. ':room:' .. room, peer, ARGV[7])
end
local frames = take_queue(peer)
table.insert(frames, 1, 'ok')
return frames
"""

# ARGV: P, peer, node, grace_ms: Redis lists the peer on this replica, which no longer has it
# (its detach was lost in an outage): it becomes away now, if nothing else took it since.
ABANDON = """
local f = redis.call('HMGET', rec_key(ARGV[2]), 'node', 'conn')
if f[1] == ARGV[3] and f[2] and f[2] ~= '' then set_away(ARGV[2], now_ms() + tonumber(ARGV[4])) end
redis.call('SREM', P .. ':node:' .. ARGV[3], ARGV[2])
return 1
"""

# ARGV: P, grace_ms, node_timeout_ms, check_nodes (0/1), limit, bound -> {peer, room, ...}
# Replicas silent for node_timeout are dead: their peers become away (deadline: last heartbeat
# plus grace). Peers whose deadline passed are removed; the caller announces them leaving.
REAP = """
local now = now_ms()
local grace, limit = tonumber(ARGV[2]), tonumber(ARGV[5])
if ARGV[4] == '1' then
  local dead = redis.call('ZRANGEBYSCORE', P .. ':nodes', '-inf', now - tonumber(ARGV[3]),
                          'WITHSCORES', 'LIMIT', 0, 10)
  for i = 1, #dead, 2 do
    local node, seen = dead[i], tonumber(dead[i + 1])
    for _, peer in ipairs(redis.call('SMEMBERS', P .. ':node:' .. node)) do
      if redis.call('HGET', rec_key(peer), 'node') == node then set_away(peer, seen + grace) end
    end
    redis.call('DEL', P .. ':node:' .. node)
    redis.call('ZREM', P .. ':nodes', node)
  end
end
for _, peer in ipairs(redis.call('ZRANGEBYSCORE', P .. ':holds', '-inf', now, 'LIMIT', 0, limit)) do
  release(peer, nil, {}, tonumber(ARGV[6]), grace + 60000)  -- its holder died mid hand-over
end
local gone = {}
for _, peer in ipairs(redis.call('ZRANGEBYSCORE', P .. ':away', '-inf', now, 'LIMIT', 0, limit)) do
  gone[#gone + 1] = peer
  gone[#gone + 1] = drop(peer)
end
return gone
"""


def full(body: str) -> str:
    """A script body with the shared helpers in front."""
    return _COMMON + body
