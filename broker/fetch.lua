-- fetch.lua: take one message off a worker's queues AND register it as unacknowledged, in one
-- atomic step.
--
-- Why: kombu 5.7's Redis transport takes a message with BRPOP and only afterwards, in a second
-- round trip, registers it in its `unacked` structures (QoS.append: ZADD unacked_index + HSET
-- unacked). A worker SIGKILLed between the two loses the message for good: it is in no queue and
-- in no unacked entry, so the visibility-timeout restore never brings it back (celery/kombu#305).
-- Redis runs a script without interleaving any other command, so here a message is either still on
-- its queue or already in unacked: kombu's own restore (QoS.restore_visible) recovers it after the
-- visibility timeout if the worker dies at any point afterwards.
--
-- Caller: broker/transport.py (GuardedChannel._brpop_start). Every key carries kombu's
-- global_keyprefix (`P:celery:`).
-- Keys:
--   KEYS[1]      P:celery:unacked_index  zset  delivery tag -> time taken (ZADD, score ARGV[1])
--   KEYS[2]      P:celery:unacked        hash  delivery tag -> JSON [message, exchange, routing
--                                              key], the exact form kombu's QoS.append writes
--                                              and QoS.restore_by_tag reads (HSET)
--   KEYS[3..n]   the queue lists, in kombu's BRPOP order (priority, then fair queue cycle); the
--                first non-empty one is popped from the right (RPOP), as BRPOP would
-- Arguments:
--   ARGV[1]      now, seconds since the epoch (float): the unacked_index score, as kombu's
--                QoS.append uses the client's clock
-- Returns:
--   nil                       every queue is empty
--   {i, item, tag}            KEYS[i] gave `item`, registered in unacked under delivery tag `tag`
--   {i, item, false}          KEYS[i] gave `item`, which is not a kombu envelope with a string
--                             delivery tag and string exchange / routing key: NOT registered
--                             (the caller drops it with a log line)
--
-- The unacked entry is built by splicing the item's own text, never by re-encoding it: cjson
-- would turn an empty JSON array in a task's arguments into an object.
for i = 3, #KEYS do
  local item = redis.call('RPOP', KEYS[i])
  if item then
    local ok, payload = pcall(cjson.decode, item)
    if ok and type(payload) == 'table' and type(payload['properties']) == 'table' then
      local properties = payload['properties']
      local tag, info = properties['delivery_tag'], properties['delivery_info']
      if type(tag) == 'string' and type(info) == 'table'
          and type(info['exchange']) == 'string' and type(info['routing_key']) == 'string' then
        redis.call('ZADD', KEYS[1], ARGV[1], tag)
        redis.call('HSET', KEYS[2], tag, '[' .. item .. ',' .. cjson.encode(info['exchange'])
          .. ',' .. cjson.encode(info['routing_key']) .. ']')
        return {i, item, tag}
      end
    end
    return {i, item, false}
  end
end
return nil
