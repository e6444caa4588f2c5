//! The configuration file as an operator meets it: the shipped example, loading from
//! disk, and the errors a broken file produces.

use std::path::{Path, PathBuf};

use stampede_broker::config::{BrokerConfig, ServerConfig};
use stampede_broker::core::CoreConfig;
use stampede_broker::destination::Kind;
use stampede_broker::security::{Operation, Security};

fn example_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("broker.example.toml")
}

fn example_text() -> String {
    std::fs::read_to_string(example_path()).expect("the example configuration is readable")
}

/// A file in the temporary directory that is removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, text: &str) -> TempFile {
        let path = std::env::temp_dir().join(format!("stampede-{}-{name}", std::process::id()));
        std::fs::write(&path, text).expect("temporary file is writable");
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn example_loads_and_shows_the_defaults() {
    let config = BrokerConfig::load(&example_path()).unwrap();
    assert_eq!(config.server, ServerConfig::default());
    assert_eq!(config.core, CoreConfig::default());
    assert_eq!(config.security.users.len(), 3);
    assert!(!config.security.allow_anonymous);
    assert!(config.security.allow_advisory_topics);
    // MCollective's two duplex connectors, topics conduit and queues not.
    let names: Vec<_> = config.connectors.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["topics", "queues"]);
    assert!(config.connectors[0].conduit_subscriptions);
    assert!(!config.connectors[1].conduit_subscriptions);
    assert!(config.connectors.iter().all(|c| c.duplex));
    assert_eq!(config.discovery, Default::default());
}

/// Every key of the configuration appears in the example, so the example documents them
/// all (a new field added without updating the example fails here).
#[test]
fn example_mentions_every_key() {
    fn missing(defaults: &toml::Table, example: &toml::Table, at: &str, out: &mut Vec<String>) {
        for (key, value) in defaults {
            let path = if at.is_empty() {
                key.clone()
            } else {
                format!("{at}.{key}")
            };
            match (value, example.get(key)) {
                (_, None) => out.push(path),
                (toml::Value::Table(d), Some(toml::Value::Table(e))) => missing(d, e, &path, out),
                _ => {}
            }
        }
    }
    let defaults = toml::Table::try_from(BrokerConfig::default()).unwrap();
    let example: toml::Table = example_text().parse().unwrap();
    let mut absent = Vec::new();
    missing(&defaults, &example, "", &mut absent);
    assert!(
        absent.is_empty(),
        "keys missing from the example: {absent:?}"
    );

    // The per-entry keys of users and authorization entries are shown too.
    let security = example["security"].as_table().unwrap();
    let users = security["users"].as_array().unwrap();
    for key in ["name", "password", "groups", "certificate_cns"] {
        assert!(
            users
                .iter()
                .any(|u| u.as_table().unwrap().contains_key(key)),
            "users[].{key}"
        );
    }
    let entries = security["authorization"].as_array().unwrap();
    for key in ["queue", "topic", "temp", "read", "write", "admin"] {
        assert!(
            entries
                .iter()
                .any(|e| e.as_table().unwrap().contains_key(key)),
            "no authorization entry shows `{key}`"
        );
    }
}

#[test]
fn example_security_is_the_mcollective_layout() {
    let config = BrokerConfig::parse(&example_text(), "example").unwrap();
    let security = Security::from_config(&config.security);
    let client = security
        .authenticate(Some("client"), Some("change-me-client"))
        .unwrap();
    let server = security
        .authenticate(Some("server"), Some("change-me-server"))
        .unwrap();
    let bridge = security
        .authenticate(Some("bridge"), Some("change-me-bridge"))
        .unwrap();
    assert!(
        security
            .authenticate(Some("client"), Some("wrong"))
            .is_err()
    );
    assert!(security.authenticate(None, None).is_err());

    let allowed = |who, op, kind, name| security.authorize(who, op, kind, name);
    use Kind::{Queue, TempQueue, Topic};
    use Operation::{Admin, Read, Write};
    let agent = "mcollective.rpcutil.agent";
    let reply = "mcollective.reply.host_4242.1";

    // Servers read agent topics but do not write them; clients the other way round.
    assert!(allowed(&server, Read, Topic, agent));
    assert!(!allowed(&server, Write, Topic, agent));
    assert!(allowed(&client, Write, Topic, agent));
    assert!(!allowed(&client, Read, Topic, agent));
    // Registration: servers may also write the registration agent's topic.
    assert!(allowed(
        &server,
        Write,
        Topic,
        "mcollective.registration.agent"
    ));
    // Direct requests and replies.
    assert!(allowed(&client, Write, Queue, "mcollective.nodes"));
    assert!(allowed(&server, Read, Queue, "mcollective.nodes"));
    assert!(!allowed(&client, Read, Queue, "mcollective.nodes"));
    assert!(allowed(&server, Write, Queue, reply));
    assert!(allowed(&client, Read, Queue, reply));
    assert!(!allowed(&server, Read, Queue, reply));
    // Everyone creates MCollective destinations; only the bridge reaches the rest.
    for who in [&client, &server, &bridge] {
        assert!(allowed(who, Admin, Topic, agent));
        assert!(allowed(who, Admin, Queue, reply));
        assert!(allowed(who, Read, TempQueue, "t"));
        assert!(allowed(
            who,
            Read,
            Topic,
            "ActiveMQ.Advisory.Consumer.Topic.x"
        ));
    }
    assert!(allowed(&bridge, Write, Queue, "anything.else"));
    assert!(allowed(&bridge, Read, Topic, ">"));
    assert!(!allowed(&client, Write, Queue, "anything.else"));
    assert!(!allowed(&server, Read, Topic, "other.rpcutil.agent"));
}

#[test]
fn missing_file_is_reported_without_a_line() {
    let path = std::env::temp_dir().join("stampede-no-such-config.toml");
    let e = BrokerConfig::load(&path).unwrap_err();
    assert_eq!(e.line, 0);
    assert_eq!(e.file, path.display().to_string());
    assert!(e.to_string().starts_with(&format!("{}: ", path.display())));
}

#[test]
fn errors_name_file_line_and_key() {
    let file = TempFile::new(
        "bad-limit.toml",
        "# comment\n[core]\nbroker_name = \"b1\"\n\n[core.limits]\nframe_bytes_max = 0\n",
    );
    let e = BrokerConfig::load(&file.0).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}:6: core.limits.frame_bytes_max: must be greater than zero",
            file.0.display()
        )
    );

    let cases: &[(&str, usize, &str)] = &[
        // Syntax error.
        ("[server]\nlisten = [\"a:1\"\n", 2, "server.listen"),
        // Unknown key, at top level and nested.
        ("colour = \"blue\"\n", 1, "colour"),
        (
            "[core.heartbeat]\ninterval_ms_min = 5\ngrace = 2.0\n",
            3,
            "core.heartbeat.grace",
        ),
        // Wrong type.
        (
            "[server]\nwrite_timeout_ms = \"30s\"\n",
            2,
            "server.write_timeout_ms",
        ),
        (
            "[[security.users]]\nname = \"a\"\npassword = \"p\"\n[[security.users]]\nname = \"b\"\npassword = \"p\"\ngroups = \"g\"\n",
            7,
            "security.users[1].groups",
        ),
        // Semantic checks.
        (
            "[core]\nbroker_name = \"my broker\"\n",
            2,
            "core.broker_name",
        ),
        (
            "[core.heartbeat]\ngrace_factor = 0.9\n",
            2,
            "core.heartbeat.grace_factor",
        ),
        (
            "[server]\nlisten = [\"localhost\"]\n",
            2,
            "server.listen[0]",
        ),
        (
            "[[security.authorization]]\ntopic = \"a\"\nqueue = \"b\"\nread = [\"g\"]\n",
            1,
            "security.authorization[0]",
        ),
        (
            "[[security.authorization]]\ntopic = \"a\"\nread = [\"g\", \"\"]\n",
            3,
            "security.authorization[0].read[1]",
        ),
        // Virtual hosts: an exchange type RabbitMQ's STOMP clients cannot route through,
        // a reserved exchange name, a default that names no vhost.
        (
            "[[core.vhosts]]\nname = \"/m\"\nconvention = \"rabbitmq\"\n[[core.vhosts.exchanges]]\nname = \"x\"\ntype = \"headers\"\n",
            6,
            "core.vhosts[0].exchanges[0].type",
        ),
        (
            "[[core.vhosts]]\nname = \"/m\"\nconvention = \"rabbitmq\"\n[[core.vhosts.exchanges]]\nname = \"amq.x\"\ntype = \"topic\"\n",
            5,
            "core.vhosts[0].exchanges[0].name",
        ),
        (
            "[core]\ndefault_vhost = \"/\"\n[[core.vhosts]]\nname = \"/m\"\n",
            2,
            "core.default_vhost",
        ),
        // Master/slave: an unknown mode, a retry interval of zero or over an hour.
        (
            "[store]\ndir = \"/s\"\nmaster_slave = \"replicated-someday\"\n",
            3,
            "store.master_slave",
        ),
        (
            "[store]\nmaster_slave = \"shared-store\"\nlock_acquire_interval_ms = 0\n",
            3,
            "store.lock_acquire_interval_ms",
        ),
        (
            "[store]\nlock_acquire_interval_ms = 3600001\n",
            2,
            "store.lock_acquire_interval_ms",
        ),
        // Replicated stores: a group without this node's name, without peers, with a
        // name twice, an election timeout too short for the heart-beats.
        (
            "[store]\ndir = \"/s\"\nmaster_slave = \"replicated\"\n[store.replication]\nnode = \"\"\n",
            5,
            "store.replication.node",
        ),
        (
            "[store]\ndir = \"/s\"\nmaster_slave = \"replicated\"\n[store.replication]\nnode = \"a\"\npeers = []\n",
            6,
            "store.replication.peers",
        ),
        (
            "[store]\ndir = \"/s\"\nmaster_slave = \"replicated\"\n[store.replication]\nnode = \"a\"\n[[store.replication.peers]]\nname = \"a\"\naddress = \"h:1\"\n",
            7,
            "store.replication.peers[0].name",
        ),
        (
            "[store]\nmaster_slave = \"replicated\"\n[store.replication]\nheartbeat_interval_ms = 600\nelection_timeout_ms = 1000\n",
            5,
            "store.replication.election_timeout_ms",
        ),
    ];
    for (text, line, key) in cases {
        let e = BrokerConfig::parse(text, "t.toml").unwrap_err();
        assert_eq!((e.line, e.key.as_str()), (*line, *key), "{text:?} gave {e}");
        assert_eq!(e.file, "t.toml");
        assert!(
            e.to_string()
                .starts_with(&format!("t.toml:{line}: {key}: ")),
            "{e}"
        );
        assert!(!e.message.contains('\n'), "{e}");
    }
}

#[test]
fn empty_file_gives_defaults() {
    let file = TempFile::new("empty.toml", "");
    assert_eq!(
        BrokerConfig::load(&file.0).unwrap(),
        BrokerConfig::default()
    );
}

/// The commented `[[security.permissions]]` entry of the example loads once uncommented
/// (beside the vhost and user it names) and grants what its comment says.
#[test]
fn example_permissions_entry_loads_and_means_what_it_says() {
    use stampede_broker::permissions::{Access, Need, ResourceKind};
    let text = example_text();
    let entry: String = text
        .lines()
        .skip_while(|l| !l.starts_with("#   [[security.permissions]]"))
        .take_while(|l| l.starts_with("#   "))
        .map(|l| format!("{}\n", &l["#   ".len()..]))
        .collect();
    assert!(entry.contains("configure = "), "{entry}");
    let config = format!(
        "[[core.vhosts]]\nname = \"/mcollective\"\nconvention = \"rabbitmq\"\n\
         [[security.users]]\nname = \"server\"\npassword = \"p\"\n{entry}"
    );
    let config = BrokerConfig::parse(&config, "example").unwrap();
    let security = Security::from_config(&config.security);
    let check = |access, kind, name: &str| {
        security
            .permissions()
            .check("server", "/mcollective", &[Need::new(access, kind, name)])
            .is_ok()
    };
    use Access::{Configure, Read, Write};
    use ResourceKind::{Exchange, Queue};
    assert!(check(Configure, Queue, "stomp-subscription-rpc"));
    assert!(check(Read, Exchange, "mcollective_broadcast"));
    assert!(check(Write, Exchange, "amq.default"));
    assert!(!check(Configure, Queue, "mcollective_broadcast"));
    assert!(!check(Read, Queue, "someone-elses-queue"));
}
