//! Redis command names: recognising them and describing a command safely.

use std::fmt::Write as _;

use super::resp::Value;
use crate::protocols::SharedStr;

/// Commands of Redis 7, upper case, sorted bytewise (binary searched).
/// Array commands with other names are accepted too (modules add commands);
/// this list guards detection and inline commands, where a wrong guess
/// would claim another protocol's bytes.
const KNOWN_COMMANDS: &[&str] = &[
    "ACL",
    "APPEND",
    "ASKING",
    "AUTH",
    "BGREWRITEAOF",
    "BGSAVE",
    "BITCOUNT",
    "BITFIELD",
    "BITFIELD_RO",
    "BITOP",
    "BITPOS",
    "BLMOVE",
    "BLMPOP",
    "BLPOP",
    "BRPOP",
    "BRPOPLPUSH",
    "BZMPOP",
    "BZPOPMAX",
    "BZPOPMIN",
    "CLIENT",
    "CLUSTER",
    "COMMAND",
    "CONFIG",
    "COPY",
    "DBSIZE",
    "DEBUG",
    "DECR",
    "DECRBY",
    "DEL",
    "DISCARD",
    "DUMP",
    "ECHO",
    "EVAL",
    "EVALSHA",
    "EVALSHA_RO",
    "EVAL_RO",
    "EXEC",
    "EXISTS",
    "EXPIRE",
    "EXPIREAT",
    "EXPIRETIME",
    "FAILOVER",
    "FCALL",
    "FCALL_RO",
    "FLUSHALL",
    "FLUSHDB",
    "FUNCTION",
    "GEOADD",
    "GEODIST",
    "GEOHASH",
    "GEOPOS",
    "GEORADIUS",
    "GEORADIUSBYMEMBER",
    "GEORADIUSBYMEMBER_RO",
    "GEORADIUS_RO",
    "GEOSEARCH",
    "GEOSEARCHSTORE",
    "GET",
    "GETBIT",
    "GETDEL",
    "GETEX",
    "GETRANGE",
    "GETSET",
    "HDEL",
    "HELLO",
    "HEXISTS",
    "HEXPIRE",
    "HGET",
    "HGETALL",
    "HINCRBY",
    "HINCRBYFLOAT",
    "HKEYS",
    "HLEN",
    "HMGET",
    "HMSET",
    "HPERSIST",
    "HPEXPIRE",
    "HRANDFIELD",
    "HSCAN",
    "HSET",
    "HSETNX",
    "HSTRLEN",
    "HTTL",
    "HVALS",
    "INCR",
    "INCRBY",
    "INCRBYFLOAT",
    "INFO",
    "KEYS",
    "LASTSAVE",
    "LATENCY",
    "LCS",
    "LINDEX",
    "LINSERT",
    "LLEN",
    "LMOVE",
    "LMPOP",
    "LOLWUT",
    "LPOP",
    "LPOS",
    "LPUSH",
    "LPUSHX",
    "LRANGE",
    "LREM",
    "LSET",
    "LTRIM",
    "MEMORY",
    "MGET",
    "MIGRATE",
    "MODULE",
    "MONITOR",
    "MOVE",
    "MSET",
    "MSETNX",
    "MULTI",
    "OBJECT",
    "PERSIST",
    "PEXPIRE",
    "PEXPIREAT",
    "PEXPIRETIME",
    "PFADD",
    "PFCOUNT",
    "PFDEBUG",
    "PFMERGE",
    "PFSELFTEST",
    "PING",
    "PSETEX",
    "PSUBSCRIBE",
    "PSYNC",
    "PTTL",
    "PUBLISH",
    "PUBSUB",
    "PUNSUBSCRIBE",
    "QUIT",
    "RANDOMKEY",
    "READONLY",
    "READWRITE",
    "RENAME",
    "RENAMENX",
    "REPLCONF",
    "REPLICAOF",
    "RESET",
    "RESTORE",
    "RESTORE-ASKING",
    "ROLE",
    "RPOP",
    "RPOPLPUSH",
    "RPUSH",
    "RPUSHX",
    "SADD",
    "SAVE",
    "SCAN",
    "SCARD",
    "SCRIPT",
    "SDIFF",
    "SDIFFSTORE",
    "SELECT",
    "SET",
    "SETBIT",
    "SETEX",
    "SETNX",
    "SETRANGE",
    "SHUTDOWN",
    "SINTER",
    "SINTERCARD",
    "SINTERSTORE",
    "SISMEMBER",
    "SLAVEOF",
    "SLOWLOG",
    "SMEMBERS",
    "SMISMEMBER",
    "SMOVE",
    "SORT",
    "SORT_RO",
    "SPOP",
    "SPUBLISH",
    "SRANDMEMBER",
    "SREM",
    "SSCAN",
    "SSUBSCRIBE",
    "STRLEN",
    "SUBSCRIBE",
    "SUBSTR",
    "SUNION",
    "SUNIONSTORE",
    "SUNSUBSCRIBE",
    "SWAPDB",
    "SYNC",
    "TIME",
    "TOUCH",
    "TTL",
    "TYPE",
    "UNLINK",
    "UNSUBSCRIBE",
    "UNWATCH",
    "WAIT",
    "WAITAOF",
    "WATCH",
    "XACK",
    "XADD",
    "XAUTOCLAIM",
    "XCLAIM",
    "XDEL",
    "XGROUP",
    "XINFO",
    "XLEN",
    "XPENDING",
    "XRANGE",
    "XREAD",
    "XREADGROUP",
    "XREVRANGE",
    "XSETID",
    "XTRIM",
    "ZADD",
    "ZCARD",
    "ZCOUNT",
    "ZDIFF",
    "ZDIFFSTORE",
    "ZINCRBY",
    "ZINTER",
    "ZINTERCARD",
    "ZINTERSTORE",
    "ZLEXCOUNT",
    "ZMPOP",
    "ZMSCORE",
    "ZPOPMAX",
    "ZPOPMIN",
    "ZRANDMEMBER",
    "ZRANGE",
    "ZRANGEBYLEX",
    "ZRANGEBYSCORE",
    "ZRANGESTORE",
    "ZRANK",
    "ZREM",
    "ZREMRANGEBYLEX",
    "ZREMRANGEBYRANK",
    "ZREMRANGEBYSCORE",
    "ZREVRANGE",
    "ZREVRANGEBYLEX",
    "ZREVRANGEBYSCORE",
    "ZREVRANK",
    "ZSCAN",
    "ZSCORE",
    "ZUNION",
    "ZUNIONSTORE",
];

/// Commands whose first argument is a subcommand worth naming in the query
/// text (`CLIENT SETNAME ?`).
const CONTAINER_COMMANDS: &[&str] = &[
    "ACL", "CLIENT", "CLUSTER", "COMMAND", "CONFIG", "DEBUG", "FUNCTION", "LATENCY", "MEMORY",
    "MODULE", "OBJECT", "PUBSUB", "SCRIPT", "SLOWLOG", "XGROUP", "XINFO",
];

/// Commands whose arguments may hold credentials: never emitted, even with
/// raw statements (AUTH, HELLO ... AUTH, MIGRATE ... AUTH, ACL SETUSER,
/// CONFIG SET requirepass).
const SECRET_COMMANDS: &[&str] = &["ACL", "AUTH", "CONFIG", "HELLO", "MIGRATE"];

/// Longest command name accepted; real ones are under 30 bytes.
const MAX_NAME_LEN: usize = 64;
/// How many arguments the query text describes before eliding the rest
/// (`MSET` with a million arguments must not make a megabyte string).
const MAX_DESCRIBED_ARGS: usize = 64;

/// `name` upper-cased into `buf`, if it fits and looks like a command name.
fn upper_name<'a>(name: &[u8], buf: &'a mut [u8; MAX_NAME_LEN]) -> Option<&'a [u8]> {
    let upper = buf.get_mut(..name.len())?;
    if name.is_empty() {
        return None;
    }
    for (dst, &src) in upper.iter_mut().zip(name) {
        if !(src.is_ascii_alphanumeric() || matches!(src, b'-' | b'_' | b'.' | b'|' | b':')) {
            return None;
        }
        *dst = src.to_ascii_uppercase();
    }
    Some(upper)
}

fn contains(list: &[&str], upper_name: &[u8]) -> bool {
    list.binary_search_by(|probe| probe.as_bytes().cmp(upper_name))
        .is_ok()
}

/// Whether `name` (any case) is a known Redis command.
pub(super) fn is_known_command(name: &[u8]) -> bool {
    let mut buf = [0; MAX_NAME_LEN];
    upper_name(name, &mut buf).is_some_and(|upper| contains(KNOWN_COMMANDS, upper))
}

/// The upper-case command name, if `name` looks like one: letters, digits
/// and the punctuation module commands use (`JSON.SET`, `FT.SEARCH`). A
/// known command's name is the list's own word, not a copy.
pub(super) fn command_name(name: &[u8]) -> Option<SharedStr> {
    let mut buf = [0; MAX_NAME_LEN];
    let upper = upper_name(name, &mut buf)?;
    if let Ok(index) = KNOWN_COMMANDS.binary_search_by(|probe| probe.as_bytes().cmp(upper)) {
        if let Some(&known) = KNOWN_COMMANDS.get(index) {
            return Some(SharedStr::Static(known));
        }
    }
    std::str::from_utf8(upper)
        .ok()
        .map(|upper| SharedStr::Owned(upper.to_owned()))
}

/// What pairing needs to know about a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum CommandKind {
    Plain,
    /// Answered by one confirmation per channel (or pattern) instead of one
    /// reply; `channels` is 0 for an UNSUBSCRIBE of everything.
    PubSub {
        confirms: PubSubKind,
        channels: usize,
    },
    /// After its `+OK`, the server streams the commands it executes.
    Monitor,
    /// Leaves pub/sub and monitor modes.
    Reset,
}

/// The kinds of pub/sub confirmation, named as in the replies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum PubSubKind {
    Subscribe,
    Psubscribe,
    Ssubscribe,
    Unsubscribe,
    Punsubscribe,
    Sunsubscribe,
}

impl PubSubKind {
    /// The kind named by a command (upper case) or a reply (lower case).
    pub(super) fn from_name(name: &[u8]) -> Option<PubSubKind> {
        const KINDS: [(&[u8], PubSubKind); 6] = [
            (b"subscribe", PubSubKind::Subscribe),
            (b"psubscribe", PubSubKind::Psubscribe),
            (b"ssubscribe", PubSubKind::Ssubscribe),
            (b"unsubscribe", PubSubKind::Unsubscribe),
            (b"punsubscribe", PubSubKind::Punsubscribe),
            (b"sunsubscribe", PubSubKind::Sunsubscribe),
        ];
        KINDS
            .iter()
            .find(|(kind_name, _)| kind_name.eq_ignore_ascii_case(name))
            .map(|&(_, kind)| kind)
    }
}

pub(super) fn command_kind(upper_name: &str, arguments: usize) -> CommandKind {
    if let Some(confirms) = PubSubKind::from_name(upper_name.as_bytes()) {
        return CommandKind::PubSub {
            confirms,
            channels: arguments,
        };
    }
    match upper_name {
        "MONITOR" => CommandKind::Monitor,
        "RESET" => CommandKind::Reset,
        _ => CommandKind::Plain,
    }
}

/// `db.query.text` for a command: its name, the subcommand of container
/// commands, then `?` per argument, or the arguments themselves when `raw`
/// (except for commands that may carry credentials).
pub(super) fn query_text(command: &Value, upper_name: &str, raw: bool) -> String {
    let mut text = String::from(upper_name);
    let arguments = usize::try_from(command.count().saturating_sub(1)).unwrap_or(0);
    let mut next = 1;
    if is_container(upper_name) {
        if let Some(sub) = command.item(1).and_then(|(bytes, _)| command_name(bytes)) {
            text.push(' ');
            text.push_str(&sub);
            next = 2;
        }
    }
    let raw = raw && !is_secret(upper_name);
    for index in next..=arguments {
        if index > MAX_DESCRIBED_ARGS {
            text.push_str(" ...");
            break;
        }
        text.push(' ');
        match command.item(index).filter(|_| raw) {
            Some((bytes, truncated)) => {
                push_argument(&mut text, bytes);
                if truncated {
                    text.push_str("...");
                }
            }
            None if raw => {
                // Past the capture limit: the rest is elided, not masked.
                text.push_str("...");
                break;
            }
            None => text.push('?'),
        }
    }
    text
}

/// Whether the query text of `upper_name` names its subcommand.
pub(super) fn is_container(upper_name: &str) -> bool {
    contains(CONTAINER_COMMANDS, upper_name.as_bytes())
}

/// Whether `upper_name`'s arguments may hold credentials.
pub(super) fn is_secret(upper_name: &str) -> bool {
    contains(SECRET_COMMANDS, upper_name.as_bytes())
}

/// An argument as typed in redis-cli: bare when plain printable ASCII,
/// quoted and escaped otherwise.
fn push_argument(text: &mut String, argument: &[u8]) {
    let plain = !argument.is_empty()
        && argument
            .iter()
            .all(|&b| b.is_ascii_graphic() && b != b'"' && b != b'\'' && b != b'\\');
    if plain {
        text.extend(argument.iter().map(|&b| char::from(b)));
    } else {
        let _ = write!(text, "\"{}\"", argument.escape_ascii());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lists_are_sorted_for_binary_search() {
        for list in [KNOWN_COMMANDS, CONTAINER_COMMANDS, SECRET_COMMANDS] {
            assert!(list
                .windows(2)
                .all(|pair| pair[0].as_bytes() < pair[1].as_bytes()));
        }
    }

    #[test]
    fn known_commands_ignore_case() {
        assert!(is_known_command(b"get"));
        assert!(is_known_command(b"Restore-Asking"));
        assert!(!is_known_command(b"GETT"));
        assert!(!is_known_command(b""));
        assert!(!is_known_command(&[b'A'; 100]));
    }
}
