//! `--target` and `--target-kind`: which real broker a live run measures, and the
//! readiness probe that asks it who it is before any load starts.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use bytes::BytesMut;
use stampede_broker::client::{Credentials, parse_uri};
use stampede_broker::net::{Net, TokioNet};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::dialect::{Dialect, redis};

/// The kinds of target `stampede load` knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetKind {
    /// `stampede-broker`.
    Stampede,
    /// ActiveMQ 5.x with a STOMP connector.
    Activemq,
    /// RabbitMQ 3.x with the `rabbitmq_stomp` plugin.
    Rabbitmq,
    /// Redis (pub/sub), for MCollective's Redis connector.
    Redis,
}

impl TargetKind {
    /// The name used on the command line and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Stampede => "stampede",
            TargetKind::Activemq => "activemq",
            TargetKind::Rabbitmq => "rabbitmq",
            TargetKind::Redis => "redis",
        }
    }

    /// The dialect that speaks to it.
    pub fn dialect(self) -> Dialect {
        match self {
            TargetKind::Stampede | TargetKind::Activemq => Dialect::ActiveMq,
            TargetKind::Rabbitmq => Dialect::RabbitMq,
            TargetKind::Redis => Dialect::Redis,
        }
    }

    /// Login and passcode used when none are given: RabbitMQ's `guest` (which it accepts
    /// from loopback only), nothing for the others.
    pub fn default_credentials(self) -> Option<Credentials> {
        match self {
            TargetKind::Rabbitmq => Some(Credentials {
                login: "guest".into(),
                passcode: "guest".into(),
            }),
            _ => None,
        }
    }

    /// Guesses the kind from a STOMP CONNECTED `server` header.
    pub fn from_server_header(server: &str) -> TargetKind {
        let s = server.to_ascii_lowercase();
        if s.starts_with("activemq") {
            TargetKind::Activemq
        } else if s.starts_with("rabbitmq") {
            TargetKind::Rabbitmq
        } else {
            TargetKind::Stampede
        }
    }
}

impl fmt::Display for TargetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TargetKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "stampede" => Ok(TargetKind::Stampede),
            "activemq" => Ok(TargetKind::Activemq),
            "rabbitmq" => Ok(TargetKind::Rabbitmq),
            "redis" => Ok(TargetKind::Redis),
            other => Err(format!(
                "unknown target kind '{other}' (stampede, activemq, rabbitmq, redis)"
            )),
        }
    }
}

/// A parsed `--target`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetUri {
    /// The URI as given.
    pub uri: String,
    /// `(host, port)` of every server, in URI order.
    pub servers: Vec<(String, u16)>,
    /// Whether it was `redis://`.
    pub redis: bool,
}

impl TargetUri {
    /// Parses `tcp://h:p`, `stomp://h:p`, `failover:(…)` (ActiveMQ syntax), `redis://h:p`
    /// or a bare `h:p` (STOMP).
    pub fn parse(uri: &str) -> Result<TargetUri, String> {
        let text = uri.trim();
        if let Some(rest) = text.strip_prefix("redis://") {
            let servers = rest
                .trim_end_matches('/')
                .split(',')
                .map(host_port)
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(TargetUri {
                uri: text.to_owned(),
                servers,
                redis: true,
            });
        }
        let with_scheme = if text.contains("://") || text.starts_with("failover:") {
            text.to_owned()
        } else {
            format!("tcp://{text}")
        };
        let parsed = parse_uri(&with_scheme).map_err(|e| e.to_string())?;
        Ok(TargetUri {
            uri: text.to_owned(),
            servers: parsed
                .servers
                .iter()
                .map(|s| (s.host.clone(), s.port))
                .collect(),
            redis: false,
        })
    }
}

fn host_port(s: &str) -> Result<(String, u16), String> {
    let (h, p) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("'{s}' needs host:port"))?;
    let port = p.parse().map_err(|_| format!("bad port in '{s}'"))?;
    Ok((h.trim_matches(['[', ']']).to_owned(), port))
}

/// What the probe learnt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probed {
    /// The `server` header of CONNECTED (`Redis/<version>` for Redis), if any.
    pub server: Option<String>,
}

/// Opens one connection to `addr` and checks that the target answers: a STOMP CONNECT
/// must get CONNECTED, a Redis PING must get PONG. Fails with the reason (refused,
/// ERROR frame with its message, timeout).
pub async fn probe(
    addr: &(String, u16),
    redis_target: bool,
    vhost: &str,
    credentials: Option<&Credentials>,
    timeout: Duration,
) -> Result<Probed, String> {
    let where_ = format!("{}:{}", addr.0, addr.1);
    let go = async {
        let mut s = TokioNet
            .connect(&where_)
            .await
            .map_err(|e| format!("cannot connect to {where_}: {e}"))?;
        let mut buf = BytesMut::with_capacity(4096);
        if redis_target {
            let mut out = BytesMut::new();
            redis::encode_command(&mut out, &[b"PING"]);
            redis::encode_command(&mut out, &[b"INFO", b"server"]);
            s.write_all(&out).await.map_err(|e| e.to_string())?;
            let mut replies = Vec::new();
            while replies.len() < 2 {
                match redis::parse(&buf)? {
                    Some((v, used)) => {
                        let _ = buf.split_to(used);
                        replies.push(v);
                    }
                    None => {
                        if s.read_buf(&mut buf).await.map_err(|e| e.to_string())? == 0 {
                            return Err(format!("{where_} closed the connection"));
                        }
                    }
                }
            }
            if replies[0] != redis::Resp::Simple("PONG".into()) {
                return Err(format!("{where_} answered PING with {:?}", replies[0]));
            }
            let version = match &replies[1] {
                redis::Resp::Bulk(Some(b)) => String::from_utf8_lossy(b)
                    .lines()
                    .find_map(|l| l.strip_prefix("redis_version:").map(str::to_owned)),
                _ => None,
            };
            return Ok(Probed {
                server: version.map(|v| format!("Redis/{}", v.trim())),
            });
        }
        let mut connect =
            format!("CONNECT\naccept-version:1.0,1.1,1.2\nhost:{vhost}\nheart-beat:0,0\n");
        if let Some(c) = credentials {
            connect.push_str(&format!("login:{}\npasscode:{}\n", c.login, c.passcode));
        }
        connect.push_str("\n\0");
        s.write_all(connect.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        loop {
            if let Some(end) = buf.iter().position(|b| *b == 0) {
                let text = String::from_utf8_lossy(&buf[..end]).into_owned();
                let text = text.trim_start_matches(['\n', '\r']);
                let header = |name: &str| {
                    text.lines()
                        .find_map(|l| l.strip_prefix(&format!("{name}:")).map(str::to_owned))
                };
                if text.starts_with("CONNECTED") {
                    let _ = s.write_all(b"DISCONNECT\n\n\0").await;
                    return Ok(Probed {
                        server: header("server"),
                    });
                }
                return Err(format!(
                    "{where_} answered CONNECT with {}: {}",
                    text.lines().next().unwrap_or(""),
                    header("message").unwrap_or_default()
                ));
            }
            if buf.len() > 64 * 1024 {
                return Err(format!("{where_} sent no complete frame"));
            }
            if s.read_buf(&mut buf).await.map_err(|e| e.to_string())? == 0 {
                return Err(format!(
                    "{where_} closed the connection without answering CONNECT"
                ));
            }
        }
    };
    match tokio::time::timeout(timeout, go).await {
        Ok(r) => r,
        Err(_) => Err(format!("{where_} did not answer within {timeout:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        let t = TargetUri::parse("tcp://127.0.0.1:61613").unwrap();
        assert_eq!(t.servers, [("127.0.0.1".to_owned(), 61613)]);
        assert!(!t.redis);
        let t = TargetUri::parse("failover:(tcp://a:1,tcp://b:2)?randomize=false").unwrap();
        assert_eq!(t.servers, [("a".to_owned(), 1), ("b".to_owned(), 2)]);
        let t = TargetUri::parse("127.0.0.1:9").unwrap();
        assert_eq!(t.servers, [("127.0.0.1".to_owned(), 9)]);
        let t = TargetUri::parse("redis://127.0.0.1:6379").unwrap();
        assert!(t.redis);
        assert_eq!(t.servers, [("127.0.0.1".to_owned(), 6379)]);
        assert!(TargetUri::parse("redis://nohost").is_err());
        assert!(TargetUri::parse("failover:(").is_err());
    }

    #[test]
    fn kinds_parse_and_guess() {
        assert_eq!(
            "rabbitmq".parse::<TargetKind>().unwrap(),
            TargetKind::Rabbitmq
        );
        assert!("kafka".parse::<TargetKind>().is_err());
        assert_eq!(
            TargetKind::from_server_header("ActiveMQ/5.17.2"),
            TargetKind::Activemq
        );
        assert_eq!(
            TargetKind::from_server_header("RabbitMQ/3.10.8"),
            TargetKind::Rabbitmq
        );
        assert_eq!(
            TargetKind::from_server_header("stampede/0.1.0"),
            TargetKind::Stampede
        );
    }
}
