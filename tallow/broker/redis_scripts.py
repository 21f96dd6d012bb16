"""The Lua scripts of the Redis broker: every state change is one atomic script, one round trip.

Keys (``P`` is REDIS_PREFIX):

    P:peer:<peer>     hash   node, conn (empty while away), room, resume (token hash), hold
    P:resume:<hash>   string peer id the resume token stands for (single use)
    P:room:<room>     hash   peer -> member JSON; Redis deletes it with its last member
    P:queue:<peer>    list   frames waiting for the peer (while away, or while its replica is
                             not subscribed); TTL grace + KEEP_EXTRA
    P:held:<peer>     list   frames sent while the peer's last replica still hands over (below)
    P:away            zset   peer -> deadline (ms, Redis clock) of peers inside their grace period
    P:holds           zset   peer -> deadline of its hand-over (a dead replica's hold lapses)
    P:nodes           zset   replica -> last heartbeat (ms, Redis clock)
    P:joins           set    replicas that read joined (j) messages (their heartbeat adds them,
                             and drops those no longer in P:nodes)
    P:epoch           string random, set once: tells a replica taken for dead from a Redis that
                             lost its data
    P:node:<replica>  set    peers attached on that replica
    P:routes:<peer>   set    replicas that send the peer's frames straight to its replica's
                             channel (*routes*); told (x) when it leaves there
    P:routable        set    replicas that take routed frames (r): routes lead only to them
    channel P:ch:<replica>   frames for peers attached there

Messages on a replica's channel, one line of header then the frame (if any):

    d <peer>...            a frame for these peers, attached there
    D <echo> <peer>/<conn>...  the same, sent by a session of that very replica, numbered: it
                           waits for these *echoes* before its local fast path takes over
    r <peer> <room> <replica> <sender>  a frame sent on a route: the header line, then the
                           signal's request id (JSON) on a line, then the frame (one line of
                           JSON); several such triples, one after another, in one message
    x <peer> <replica>     the peer left that replica: drop the route to it, then answer y
    y <peer>               a route holder's answer to x: nothing more of it is on its way here
    e <sender> <result>    a frame ``sender`` sent on a route was refused after all (full, gone):
                           the request id (JSON) follows the header line
    f <peer>               frames wait in the peer's queue: take them
    s <peer> <conn> [<n>]  a resume elsewhere took the peer: close that connection (n: the route
                           holders told, whose y the hand-over waits for; absent when none)
    m <peer> <conn> <n>    hand-over marker: nothing older for the peer is on its way here but
                           what the n route holders told still send
    u <peer>               the peer's hold ended: everything held for it has been sent here
    p                      a probe (ignored): is the subscription on the primary?
    j                      several d and D messages, each a header line and a frame line: what
                           one script run sent there (a *post*, below)

A replica that lets go of a peer (its connection closed, was cut off, or resumed elsewhere) may
still have frames for it in flight on its channel. Until it has passed those on, the peer is *held*:
new frames wait in P:held, and the replica's ``release`` sends its frames first, then the held
ones, so one sender's frames never overtake each other across the hand-over. The replicas that
hold a route to the peer are in flight too: each is told (x) and answers (y) behind the frames it
sent on the route, and the release waits for their answers as for its marker.

Every script gets the same first arguments (``CONTEXT`` below), then its own (``A`` in Lua): the
timing constants live in redis.py and nowhere else. Timestamps come from Redis' own clock (TIME),
so replicas never compare their clocks. Scripts build key names from the prefix. In a Redis
Cluster the prefix is a hash tag (``{tallow}``), so every key and channel above lives on one slot:
each script declares one key of it (``P:epoch``) for routing, touches only that slot, and
publishes with SPUBLISH (sharded pub/sub), which a script may do on a channel of its own slot.
"""

from __future__ import annotations

# The arguments every script call starts with, in this order.
CONTEXT = ("prefix", "node", "grace_ms", "bound", "keep_extra_ms", "hold_ms", "publish")

# Shared helpers, prepended to every script.
_COMMON = """
local P, NODE = ARGV[1], ARGV[2]
local GRACE, BOUND = tonumber(ARGV[3]), tonumber(ARGV[4])
local KEEP_EXTRA, HOLD_MS = tonumber(ARGV[5]), tonumber(ARGV[6])
local PUB = ARGV[7]  -- PUBLISH, or SPUBLISH in a Redis Cluster (the channel is in the keys' slot)
local KEEP = GRACE + KEEP_EXTRA  -- how long an away peer's frames are kept
local A = {}  -- the script's own arguments
for i = 8, #ARGV do A[#A + 1] = ARGV[i] end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function rec_key(peer) return P .. ':peer:' .. peer end
local function queue_key(peer) return P .. ':queue:' .. peer end

-- The peer is no longer on ``node``: the replicas with a route to it there hear so (x).
-- Returns how many heard it (a holder that is not subscribed will not answer).
local function unroute(peer, node)
  local key = P .. ':routes:' .. peer
  local told = 0
  for _, holder in ipairs(redis.call('SMEMBERS', key)) do
    told = told + redis.call(PUB, P .. ':ch:' .. holder, 'x ' .. peer .. ' ' .. node .. '\\n')
  end
  redis.call('DEL', key)
  return told
end

-- The peer is no longer attached on ``node``: off its list, and its route holders told (x).
local function leave_node(peer, node)
  redis.call('SREM', P .. ':node:' .. node, peer)
  return unroute(peer, node)
end

-- The peer is away until ``deadline``; its keys outlive that a little, then vanish by themselves.
-- Returns how many route holders were told it left its replica.
local function set_away(peer, deadline)
  local rec = rec_key(peer)
  local f = redis.call('HMGET', rec, 'node', 'resume')
  local told = 0
  if f[1] then told = leave_node(peer, f[1]) end
  redis.call('HSET', rec, 'conn', '')
  redis.call('ZADD', P .. ':away', deadline, peer)
  redis.call('PEXPIREAT', rec, deadline + KEEP_EXTRA)
  if f[2] then redis.call('PEXPIREAT', P .. ':resume:' .. f[2], deadline + KEEP_EXTRA) end
  return told
end

-- Remove every trace of a peer; returns the room it was in ('' for none).
local function drop(peer)
  local rec = rec_key(peer)
  local f = redis.call('HMGET', rec, 'node', 'room', 'resume')
  if f[1] then leave_node(peer, f[1]) end
  if f[2] and f[2] ~= '' then redis.call('HDEL', P .. ':room:' .. f[2], peer) end
  if f[3] then redis.call('DEL', P .. ':resume:' .. f[3]) end
  redis.call('DEL', rec, queue_key(peer), P .. ':held:' .. peer)
  redis.call('ZREM', P .. ':away', peer)
  redis.call('ZREM', P .. ':holds', peer)
  return f[2] or ''
end

-- Queue a frame for a peer; 'queued' or 'full'.
local function enqueue(peer, frame, bound)
  local q = queue_key(peer)
  if redis.call('LLEN', q) >= bound then return 'full' end
  redis.call('RPUSH', q, frame)
  redis.call('PEXPIRE', q, KEEP)
  return 'queued'
end

-- Where a frame for ``peer`` goes, given its record's node, conn and hold (``f``): the replica
-- to publish it on and the connection there, or nil and what became of it instead: 'gone', or
-- kept for later ('queued', 'full'). Once anything waits in a peer's queue, later frames queue
-- behind it (and its replica is told to flush), so one sender's frames never overtake each
-- other; while its last replica still hands over, they wait in P:held.
local function place(peer, f, frame, bound)
  if not f[1] then return nil, 'gone' end
  if f[3] and f[3] ~= '' then
    local held = P .. ':held:' .. peer
    if redis.call('LLEN', held) >= bound then return nil, 'full' end
    redis.call('RPUSH', held, frame)
    redis.call('PEXPIRE', held, KEEP)
    return nil, 'queued'
  end
  if f[2] ~= '' and redis.call('LLEN', queue_key(peer)) == 0 then return f[1], f[2] end
  local result = enqueue(peer, frame, bound)
  if result == 'queued' and f[2] ~= '' then
    redis.call(PUB, P .. ':ch:' .. f[1], 'f ' .. peer .. '\\n')
  end
  return nil, result
end

-- How a frame published to ``node`` names its target peer attached through ``conn`` there: a
-- D message (``here``) names the connection too. A message's header line is its kind, then
-- its targets.
local function here(node, echo) return echo and node == NODE end
local function kind(node, echo)
  if here(node, echo) then return 'D ' .. echo end
  return 'd'
end
local function target(node, echo, peer, conn)
  if here(node, echo) then return peer .. '/' .. conn end
  return peer
end

-- The result of a frame published to ``node`` for a connection there: 'here:<conn>' when that
-- is the calling replica and the frame carries an ``echo`` number (a D message), else
-- 'delivered'.
local function published(node, conn, echo)
  if here(node, echo) then return 'here:' .. conn end
  return 'delivered'
end

-- Publish ``message`` on ``node``'s channel, or, if nobody hears it (the replica is not
-- subscribed: restarting, or dead and not yet noticed), queue ``frames[k]`` for ``peers[k]``
-- instead and note each result in ``results[slots[k]]``.
local function publish(node, message, peers, frames, results, slots, bound)
  if redis.call(PUB, P .. ':ch:' .. node, message) > 0 then return end
  for k, peer in ipairs(peers) do results[slots[k]] = enqueue(peer, frames[k], bound) end
end

-- Hand ``frame`` to each peer of ``peers`` (``place``), one message per replica naming its
-- peers. Returns one result per peer: 'delivered', 'here:<conn>' (``published``), 'queued',
-- 'full' or 'gone'.
local function send(peers, frame, bound, echo)
  local results, groups, order = {}, {}, {}
  for i, peer in ipairs(peers) do
    local f = redis.call('HMGET', rec_key(peer), 'node', 'conn', 'hold')
    local node, conn = place(peer, f, frame, bound)
    if node then
      results[i] = published(node, conn, echo)
      local group = groups[node]
      if not group then
        group = {targets = {}, peers = {}, frames = {}, slots = {}}
        groups[node] = group
        order[#order + 1] = node
      end
      local k = #group.peers + 1
      group.targets[k] = target(node, echo, peer, conn)
      group.peers[k], group.frames[k], group.slots[k] = peer, frame, i
    else
      results[i] = conn
    end
  end
  for _, node in ipairs(order) do
    local group = groups[node]
    local line = kind(node, echo) .. ' ' .. table.concat(group.targets, ' ')
    local message = line .. '\\n' .. frame
    publish(node, message, group.peers, group.frames, results, group.slots, bound)
  end
  return results
end

-- A *post* gathers the frames a script run sends one peer at a time (``post_send``), and
-- ``post_all`` publishes them as one message per replica: ``j``, then a header line and a
-- frame line each, so the replica reads one message per pipeline instead of one per frame.
-- Only to replicas that read them (P:joins, which their heartbeat keeps: a rolling upgrade has
-- older replicas beside); a frame holding a newline (Tallow's JSON never does) goes alone,
-- after what was gathered before it. Results go to ``results[slot]``.
local function new_post(results, bound)
  return {results = results, bound = bound, order = {}, replicas = {}}
end

-- What a post gathers for one replica: its header and frame lines (after ``j``), and for each
-- frame its peer, the frame and the result's slot, to queue it if nobody hears the message.
local function gathering(joins)
  return {joins = joins, lines = {'j'}, peers = {}, frames = {}, slots = {}}
end

local function post_flush(post, node)
  local gathered = post.replicas[node]
  local lines, count = gathered.lines, #gathered.peers
  if count == 0 then return end
  local message
  if count == 1 then message = lines[2] .. '\\n' .. lines[3]
  else message = table.concat(lines, '\\n') end
  publish(node, message, gathered.peers, gathered.frames, post.results, gathered.slots, post.bound)
  post.replicas[node] = gathering(gathered.joins)
end

-- ``frame`` for ``peer``, whose record's node, conn and hold are ``f``.
local function post_send(post, slot, peer, f, frame, echo)
  local node, conn = place(peer, f, frame, post.bound)
  if not node then
    post.results[slot] = conn
    return
  end
  post.results[slot] = published(node, conn, echo)
  local gathered = post.replicas[node]
  if not gathered then
    gathered = gathering(redis.call('SISMEMBER', P .. ':joins', node) == 1)
    post.replicas[node] = gathered
    post.order[#post.order + 1] = node
  end
  local alone = not gathered.joins or string.find(frame, '\\n', 1, true)
  if alone then post_flush(post, node) end
  gathered = post.replicas[node]
  local k = #gathered.peers + 1
  gathered.lines[2 * k] = kind(node, echo) .. ' ' .. target(node, echo, peer, conn)
  gathered.lines[2 * k + 1] = frame
  gathered.peers[k], gathered.frames[k], gathered.slots[k] = peer, frame, slot
  if alone then post_flush(post, node) end
end

local function post_all(post)
  for _, node in ipairs(post.order) do post_flush(post, node) end
end

-- ``node`` still has frames in flight for ``peer``: hold new ones until it releases them.
local function hold(peer, node)
  redis.call('HSET', rec_key(peer), 'hold', node)
  redis.call('ZADD', P .. ':holds', now_ms() + HOLD_MS, peer)
end

-- End a hold: ``frames`` (in flight at the holder), then the held ones, go where the peer is now,
-- and its replica hears (u) that nothing held is left behind them.
local function release(peer, node, frames, bound)
  local rec, held = rec_key(peer), P .. ':held:' .. peer
  redis.call('ZREM', P .. ':holds', peer)
  if redis.call('EXISTS', rec) == 0 then
    redis.call('DEL', held)
    return
  end
  if node ~= nil and redis.call('HGET', rec, 'hold') ~= node then
    node = nil  -- a newer hold (another hand-over) is in charge now
  else
    redis.call('HSET', rec, 'hold', '')
  end
  local waiting = redis.call('LRANGE', held, 0, -1)
  redis.call('DEL', held)
  local post = new_post({}, bound)
  for _, list in ipairs({frames, waiting}) do
    for _, frame in ipairs(list) do
      local f = redis.call('HMGET', rec, 'node', 'conn', 'hold')
      post_send(post, #post.results + 1, peer, f, frame, nil)
    end
  end
  post_all(post)
  local f = redis.call('HMGET', rec, 'node', 'conn', 'hold')
  if f[2] ~= '' and f[3] == '' then
    redis.call(PUB, P .. ':ch:' .. f[1], 'u ' .. peer .. ' ' .. f[2] .. '\\n')
  end
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

# Every script's arguments start with CONTEXT; below, ``A`` are the ones after it.

# A: peer, conn, resume_hash -> {room, member JSON, held (1/0), frames queued for the peer...}
ATTACH = """
local peer, conn, resume = A[1], A[2], A[3]
local f = redis.call('HMGET', rec_key(peer), 'room', 'hold')
local room = f[1]
if not room then
  room = ''
  redis.call('HSET', rec_key(peer), 'room', room)
end
set_attached(peer, NODE, conn, resume)
local member = ''
if room ~= '' then member = redis.call('HGET', P .. ':room:' .. room, peer) or '' end
local frames = take_queue(peer)
local held = 0
if f[2] and f[2] ~= '' then held = 1 end
table.insert(frames, 1, held)
table.insert(frames, 1, member)
table.insert(frames, 1, room)
return frames
"""

# A: resume_hash -> {peer, room, old node, old conn, interrupted (1/0)} or nil. Interrupted: the
# connection was still listed on a replica that hears nothing (it died, not yet noticed), so
# frames it held in memory for the peer may be lost.
CLAIM = """
local peer = redis.call('GETDEL', P .. ':resume:' .. A[1])
if not peer then return nil end
local f = redis.call('HMGET', rec_key(peer), 'node', 'conn', 'room')
if not f[1] then return nil end
-- Its old connection is still open somewhere: close it, and hold until that replica lets go.
-- A replica that hears nothing (it died, not yet noticed) has nothing to let go: no hold.
-- Route holders hear first (x, from set_away); the old replica's release waits for their y.
local holders = set_away(peer, now_ms() + GRACE)
local told = 0
if f[2] ~= '' then
  local note = 's ' .. peer .. ' ' .. f[2]
  if holders > 0 then note = note .. ' ' .. holders end
  told = redis.call(PUB, P .. ':ch:' .. f[1], note .. '\\n')
end
if told > 0 then hold(peer, f[1]) end
redis.call('HDEL', rec_key(peer), 'resume')
local interrupted = 0
if f[2] ~= '' and told == 0 then interrupted = 1 end
return {peer, f[3], f[1], f[2], interrupted}
"""

# A: peer, conn -> what became of the peer this connection let go of: 'held' (now away; a
# marker follows the frames in flight), 'claimed' (a resume holds it for this replica already),
# 'other' (attached or away elsewhere), 'gone'.
HANDOFF = """
local peer, conn = A[1], A[2]
local f = redis.call('HMGET', rec_key(peer), 'conn', 'hold')
if not f[1] then return 'gone' end
if f[1] == conn then
  local holders = set_away(peer, now_ms() + GRACE)
  hold(peer, NODE)
  redis.call(PUB, P .. ':ch:' .. NODE, 'm ' .. peer .. ' ' .. conn .. ' ' .. holders .. '\\n')
  return 'held'
end
if f[2] == NODE then return 'claimed' end
return 'other'
"""

# A: peer, bound, frames...: this replica lets go of the peer.
RELEASE = """
local frames = {}
for i = 3, #A do frames[#frames + 1] = A[i] end
release(A[1], NODE, frames, tonumber(A[2]))
return 1
"""

# A: peer, conn -> room ('' for none), or false if the peer is not attached through conn
FORGET = """
if redis.call('HGET', rec_key(A[1]), 'conn') ~= A[2] then return false end
return drop(A[1])
"""

# A: room, peer, member_json, capacity, announcement, echo -> {count, members already there...,
# results of sending them the announcement...}, or false when full. Joining and announcing are
# one step: a peer that joins later lists the newcomer instead of hearing of it.
JOIN = """
local room = P .. ':room:' .. A[1]
if redis.call('HLEN', room) >= tonumber(A[4]) then return false end
local peers = redis.call('HKEYS', room)
local present = redis.call('HVALS', room)
redis.call('HSET', room, A[2], A[3])
redis.call('HSET', rec_key(A[2]), 'room', A[1])
local results = send(peers, A[5], BOUND, A[6])
local reply = {#present}
for _, member in ipairs(present) do reply[#reply + 1] = member end
for i, peer in ipairs(peers) do reply[#reply + 1] = peer; reply[#reply + 1] = results[i] end
return reply
"""

# A: room, peer. Route holders hear (x): their next frames for the peer take DELIVER, which
# refuses them at once, instead of the peer's replica, which would refuse them later.
LEAVE = """
redis.call('HDEL', P .. ':room:' .. A[1], A[2])
local f = redis.call('HMGET', rec_key(A[2]), 'room', 'node')
if f[1] == A[1] then
  redis.call('HSET', rec_key(A[2]), 'room', '')
  unroute(A[2], f[2] or '')
end
return 1
"""

# A: room, to, frame, echo; as many times over as deliveries were merged into this run
# (ScriptBatch.register) -> a list, for each: at:<replica> | delivered | here:<conn> | queued |
# full | gone. What goes to one replica goes as one message (a post). ``at``: published to that
# replica, which takes routed frames: the caller may send the peer's next frames there itself
# (a route), until told otherwise (x).
DELIVER = """
local results, nodes, peers = {}, {}, {}
local post = new_post(results, BOUND)
for i = 1, #A, 4 do
  local slot, room, peer = (i + 3) / 4, A[i], A[i + 1]
  local f = redis.call('HMGET', rec_key(peer), 'node', 'conn', 'hold', 'room')
  if f[4] == room then  -- (a peer's record names its room, as the room lists the peer)
    post_send(post, slot, peer, f, A[i + 2], A[i + 3])
    nodes[slot], peers[slot] = f[1], peer
  else
    results[slot] = 'gone'
  end
end
post_all(post)
-- Published and heard: a route, if that replica takes routed frames (asked once per replica).
local routable = {}
for slot, node in pairs(nodes) do
  if results[slot] == 'delivered' then
    if routable[node] == nil then
      routable[node] = redis.call('SISMEMBER', P .. ':routable', node) == 1
    end
    if routable[node] then
      redis.call('SADD', P .. ':routes:' .. peers[slot], NODE)
      results[slot] = 'at:' .. node
    end
  end
end
return results
"""

# A: peer: frames wait in its queue; this replica's channel says so (f), behind what it carries.
NOTICE = """
redis.call(PUB, P .. ':ch:' .. NODE, 'f ' .. A[1] .. '\\n')
return 1
"""

# A: room, frame, echo, excluded peers... -> {peer, result, ...} for every peer it was sent to
PUBLISH = """
local skip = {}
for i = 4, #A do skip[A[i]] = true end
local peers = {}
for _, peer in ipairs(redis.call('HKEYS', P .. ':room:' .. A[1])) do
  if not skip[peer] then peers[#peers + 1] = peer end
end
local results = send(peers, A[2], BOUND, A[3])
local reply = {}
for i, peer in ipairs(peers) do reply[#reply + 1] = peer; reply[#reply + 1] = results[i] end
return reply
"""

# A: peer, frame, room ('' for any): a frame reached this replica where its peer no longer is
# (or, for a routed frame, no longer in that room); send it on, or queue it if the peer still
# counts as attached here.
REROUTE = """
local f = redis.call('HMGET', rec_key(A[1]), 'node', 'conn', 'room')
if not f[1] or (A[3] ~= '' and f[3] ~= A[3]) then return 'gone' end
if f[1] == NODE or f[2] == '' then return enqueue(A[1], A[2], BOUND) end
return send({A[1]}, A[2], BOUND, nil)[1]
"""

# A: peer, conn -> frames queued for a peer attached here (after a flush request)
FLUSH = """
if redis.call('HGET', rec_key(A[1]), 'conn') ~= A[2] then return {} end
return take_queue(A[1])
"""

# A: a fresh epoch -> {1 if this replica was registered, else 0; the epoch of Redis' data}.
# Unregistered means Redis lost its data (a new epoch) or took this replica for dead (the same
# epoch): either way it must re-register its peers, and in the second case announce them again.
HEARTBEAT = """
local known = redis.call('ZSCORE', P .. ':nodes', NODE)
redis.call('ZADD', P .. ':nodes', now_ms(), NODE)
redis.call('SADD', P .. ':joins', NODE)
redis.call('SADD', P .. ':routable', NODE)
-- A replica of an earlier release that found a newer one dead left it listed here.
for _, set in ipairs({P .. ':joins', P .. ':routable'}) do
  for _, node in ipairs(redis.call('SMEMBERS', set)) do
    if not redis.call('ZSCORE', P .. ':nodes', node) then redis.call('SREM', set, node) end
  end
end
local epoch = redis.call('GET', P .. ':epoch')
if not epoch then
  epoch = A[1]
  redis.call('SET', P .. ':epoch', epoch)
end
if known then return {1, epoch} end
return {0, epoch}
"""

# A: none. Unregister this replica as it stops; peers still listed here (their detach failed)
# get the grace period like any other dropped connection.
GOODBYE = """
redis.call('ZREM', P .. ':nodes', NODE)
redis.call('SREM', P .. ':joins', NODE)
redis.call('SREM', P .. ':routable', NODE)
local deadline = now_ms() + GRACE
for _, peer in ipairs(redis.call('SMEMBERS', P .. ':node:' .. NODE)) do
  if redis.call('HGET', rec_key(peer), 'node') == NODE then set_away(peer, deadline) end
end
redis.call('DEL', P .. ':node:' .. NODE)
return 1
"""

# A: peer, conn, resume, room, member_json, announcement -> {'ok'|'lost', frames...}
# After Redis lost or dropped this replica's state: put a peer attached here back, unless a
# resume elsewhere has taken it since. With an announcement (the others heard it leave: this
# replica was taken for dead), the room's members on other replicas hear it join again.
RESYNC = """
local peer, conn, resume, room = A[1], A[2], A[3], A[4]
local f = redis.call('HMGET', rec_key(peer), 'node', 'conn', 'resume')
if f[1] and not (f[2] == conn or (f[2] == '' and f[1] == NODE and f[3] == resume)) then
  return {'lost'}
end
set_attached(peer, NODE, conn, resume)
if room ~= '' then
  redis.call('HSET', rec_key(peer), 'room', room)
  local others = redis.call('HKEYS', P .. ':room:' .. room)
  if redis.call('HSET', P .. ':room:' .. room, peer, A[5]) == 1 and A[6] ~= '' then
    local elsewhere = {}
    for _, other in ipairs(others) do
      if redis.call('HGET', rec_key(other), 'node') ~= NODE then
        elsewhere[#elsewhere + 1] = other
      end
    end
    send(elsewhere, A[6], BOUND, nil)
  end
end
local frames = take_queue(peer)
table.insert(frames, 1, 'ok')
return frames
"""

# A: peer. Redis lists the peer on this replica, which no longer has it (its detach was lost in
# an outage): it becomes away now, if nothing else took it since.
ABANDON = """
local f = redis.call('HMGET', rec_key(A[1]), 'node', 'conn')
if f[1] == NODE and f[2] and f[2] ~= '' then set_away(A[1], now_ms() + GRACE) end
redis.call('SREM', P .. ':node:' .. NODE, A[1])
return 1
"""

# A: none -> how many subscribers of this replica's channel the primary counts (a script never
# runs on a replica, which would count its own: see RedisBroker._check_subscription).
PROBE = """
return redis.call(PUB, P .. ':ch:' .. NODE, 'p\\n')
"""

# A: node_timeout_ms, check_nodes (0/1), limit -> {{peer, room, ...}, {peer, room, ...}}
# Replicas silent for node_timeout are dead: their peers become away (deadline: last heartbeat
# plus grace) and, being in a room, *interrupted* (second list: frames the dead replica held
# for them may be lost). Peers whose deadline passed are removed (first list); the caller
# announces them leaving.
REAP = """
local now = now_ms()
local limit = tonumber(A[3])
local interrupted = {}
if A[2] == '1' then
  local dead = redis.call('ZRANGEBYSCORE', P .. ':nodes', '-inf', now - tonumber(A[1]),
                          'WITHSCORES', 'LIMIT', 0, 10)
  for i = 1, #dead, 2 do
    local node, seen = dead[i], tonumber(dead[i + 1])
    for _, peer in ipairs(redis.call('SMEMBERS', P .. ':node:' .. node)) do
      local f = redis.call('HMGET', rec_key(peer), 'node', 'conn', 'room')
      if f[1] == node then
        set_away(peer, seen + GRACE)
        if f[2] ~= '' and f[3] and f[3] ~= '' then
          interrupted[#interrupted + 1] = peer
          interrupted[#interrupted + 1] = f[3]
        end
      end
    end
    redis.call('DEL', P .. ':node:' .. node)
    redis.call('ZREM', P .. ':nodes', node)
    redis.call('SREM', P .. ':joins', node)
    redis.call('SREM', P .. ':routable', node)
  end
end
for _, peer in ipairs(redis.call('ZRANGEBYSCORE', P .. ':holds', '-inf', now, 'LIMIT', 0, limit)) do
  release(peer, nil, {}, BOUND)  -- its holder died mid hand-over
end
local gone = {}
for _, peer in ipairs(redis.call('ZRANGEBYSCORE', P .. ':away', '-inf', now, 'LIMIT', 0, limit)) do
  gone[#gone + 1] = peer
  gone[#gone + 1] = drop(peer)
end
return {gone, interrupted}
"""


def full(body: str) -> str:
    """A script body with the shared helpers in front."""
    return _COMMON + body
