//! The Lua scripts that make a write and its announcement one step. Every key a script names
//! shares the connection's hash tag, so each runs on one Cluster node.

pub const PUT_SCRIPT: &str = r#"
-- KEYS[1] record, KEYS[2] lock; ARGV[1] "any" | "absent" | version; ARGV[2] owner or "";
-- ARGV[3] sealed value; ARGV[4] channel; ARGV[5] id
if ARGV[2] ~= "" and redis.call("GET", KEYS[2]) ~= ARGV[2] then return -2 end
local current = redis.call("HGET", KEYS[1], "v")
if ARGV[1] == "absent" then
  if current then return -1 end
elseif ARGV[1] ~= "any" then
  if current ~= ARGV[1] then return -1 end
end
local version = (tonumber(current) or 0) + 1
redis.call("HSET", KEYS[1], "v", version, "d", ARGV[3])
redis.call("PUBLISH", ARGV[4], ARGV[5])
return version
"#;

pub const DELETE_SCRIPT: &str = r#"
local n = redis.call("DEL", KEYS[1])
redis.call("PUBLISH", ARGV[1], ARGV[2])
return n
"#;

pub const UNLOCK_SCRIPT: &str = r#"
if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end
return 0
"#;
