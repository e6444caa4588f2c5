//! STOMP over TLS: the real `stampede-broker` binary with an `ssl://` listener, reached by
//! Debian's stomp.py and Ruby stomp gem (with and without client certificates) and by a
//! rustls client. Certificates are made for each run with rcgen (a CA, the broker's
//! certificate for 127.0.0.1, and a client certificate).

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::{Broker, TempDir, run_bounded};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

/// PEM files of one run's certificates.
struct Pki {
    _dir: TempDir,
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

impl Pki {
    fn new() -> Pki {
        let dir = TempDir::new("tls-pki");
        let write = |name: &str, text: String| {
            let path = dir.path().join(name);
            fs::write(&path, text).unwrap();
            path
        };
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "stampede test CA");
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let server_key = KeyPair::generate().unwrap();
        let server = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap()
            .signed_by(&server_key, &ca)
            .unwrap();
        // The stomp gem reads a client key as RSA (`OpenSSL::PKey::RSA.new`), and ring cannot
        // make RSA keys: openssl does.
        let rsa = dir.path().join("client.key");
        let made = Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
            ])
            .arg(&rsa)
            .output()
            .expect("openssl (Debian package openssl; scripts/install-test-deps installs it)");
        assert!(made.status.success(), "{made:?}");
        let client_key = KeyPair::from_pem(&fs::read_to_string(&rsa).unwrap()).unwrap();
        let mut client_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        client_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "mcollective-node-1");
        let client = client_params.signed_by(&client_key, &ca).unwrap();
        Pki {
            ca: write("ca.pem", ca.pem()),
            server_cert: write("server.crt", server.pem()),
            server_key: write("server.key", server_key.serialize_pem()),
            client_cert: write("client.crt", client.pem()),
            client_key: write("client.key", client_key.serialize_pem()),
            _dir: dir,
        }
    }

    /// A broker config with one TLS listener; `required` asks every client for a
    /// certificate from the test CA.
    fn broker_config(&self, required: bool) -> String {
        let mut text = format!(
            "[server]\nlisten = [\"ssl://127.0.0.1:0\"]\n\n[server.tls]\n\
             cert_file = {:?}\nkey_file = {:?}\n",
            self.server_cert.display().to_string(),
            self.server_key.display().to_string(),
        );
        if required {
            text.push_str(&format!(
                "client_ca_file = {:?}\nclient_certificates = \"required\"\n",
                self.ca.display().to_string()
            ));
        }
        text
    }
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

const STOMP_PY: &str = r#"
import sys, time, stomp
host, port, ca, cert, key = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
c = stomp.Connection12([(host, port)], heartbeats=(0, 0))
if cert:
    c.set_ssl(for_hosts=[(host, port)], ca_certs=ca, cert_file=cert, key_file=key)
else:
    c.set_ssl(for_hosts=[(host, port)], ca_certs=ca)
l = stomp.listener.TestListener()
c.set_listener("t", l)
c.connect(wait=True)
c.subscribe("/queue/tls.py", id="1", ack="auto")
c.send("/queue/tls.py", "over tls from python", receipt="r1")
l.wait_for_message()
frame = l.get_latest_message()
body = frame.body if hasattr(frame, "body") else frame[1]
assert body == "over tls from python", body
c.disconnect()
print("stomp.py over TLS: OK")
"#;

const STOMP_RB: &str = r#"
require "stomp"
host, port, ca, cert, key = ARGV[0], ARGV[1].to_i, ARGV[2], ARGV[3], ARGV[4]
ssl = if cert.empty?
  Stomp::SSLParams.new(ts_files: ca)
else
  Stomp::SSLParams.new(ts_files: ca, cert_file: cert, key_file: key)
end
client = Stomp::Client.new(hosts: [{ login: "", passcode: "", host: host, port: port, ssl: ssl }],
                           connect_headers: { "accept-version" => "1.2", "host" => "localhost" },
                           reliable: false)
got = Queue.new
client.subscribe("/queue/tls.rb", id: "1") { |m| got << m.body }
client.publish("/queue/tls.rb", "over tls from ruby")
body = Timeout.timeout(15) { got.pop }
raise "got #{body.inspect}" unless body == "over tls from ruby"
client.close
puts "stomp gem over TLS: OK"
"#;

/// A real client over TLS: Debian's stomp.py or the Ruby stomp gem running `script`.
#[derive(Clone, Copy)]
enum TlsClient {
    Python,
    Ruby,
}

fn run_client(client: TlsClient, broker: &Broker, pki: &Pki, with_cert: bool) -> common::Finished {
    let (program, flag, script, what) = match client {
        TlsClient::Python => {
            common::require_python_stomp();
            ("/usr/bin/python3", "-c", STOMP_PY, "stomp.py over TLS")
        }
        TlsClient::Ruby => {
            common::require_ruby_stomp();
            ("ruby", "-e", STOMP_RB, "stomp gem over TLS")
        }
    };
    let mut cmd = Command::new(program);
    cmd.arg(flag).arg(script).args([
        broker.host(),
        broker.port(),
        path(&pki.ca),
        if with_cert {
            path(&pki.client_cert)
        } else {
            String::new()
        },
        if with_cert {
            path(&pki.client_key)
        } else {
            String::new()
        },
    ]);
    run_bounded(what, cmd, Duration::from_secs(30))
}

fn run_python(broker: &Broker, pki: &Pki, with_cert: bool) -> common::Finished {
    run_client(TlsClient::Python, broker, pki, with_cert)
}

fn run_ruby(broker: &Broker, pki: &Pki, with_cert: bool) -> common::Finished {
    run_client(TlsClient::Ruby, broker, pki, with_cert)
}

#[test]
fn stomp_py_and_the_stomp_gem_talk_to_an_ssl_listener() {
    let pki = Pki::new();
    let broker = Broker::start_with_config("tls", &pki.broker_config(false));
    let py = run_python(&broker, &pki, false);
    common::assert_passed(&py, &broker);
    let rb = run_ruby(&broker, &pki, false);
    common::assert_passed(&rb, &broker);
}

#[test]
fn required_client_certificates_admit_only_clients_of_the_ca() {
    let pki = Pki::new();
    let broker = Broker::start_with_config("tls-mutual", &pki.broker_config(true));
    common::assert_passed(&run_python(&broker, &pki, true), &broker);
    common::assert_passed(&run_ruby(&broker, &pki, true), &broker);
    // Without a certificate the handshake fails and the clients give up.
    assert!(!run_python(&broker, &pki, false).success());
    assert!(!run_ruby(&broker, &pki, false).success());
}

/// A rustls client: CONNECT and a SEND/MESSAGE round trip over TLS; a plain-TCP client on
/// the same port gets no CONNECTED.
#[tokio::test]
async fn a_rustls_client_round_trips_and_plain_tcp_is_not_understood() {
    use stampede_broker::proto::{Command as Cmd, Decoder, Frame, FrameLimits, Item, Version};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls;

    let pki = Pki::new();
    let broker = Broker::start_with_config("tls-rustls", &pki.broker_config(false));
    let mut roots = rustls::RootCertStore::empty();
    let ca = fs::read(&pki.ca).unwrap();
    for cert in rustls_pemfile_certs(&ca) {
        roots.add(cert).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(broker.addr()).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    let mut out = bytes::BytesMut::new();
    for f in [
        Frame::new(Cmd::Connect).header("accept-version", "1.2"),
        Frame::new(Cmd::Subscribe)
            .header("id", "0")
            .header("destination", "/queue/tls.rs"),
        Frame::new(Cmd::Send)
            .header("destination", "/queue/tls.rs")
            .body("over tls from rust"),
    ] {
        stampede_broker::proto::encode(&f, Version::V1_2, &mut out);
    }
    tls.write_all(&out).await.unwrap();
    let mut decoder = Decoder::new(FrameLimits::default());
    let mut buf = bytes::BytesMut::new();
    let mut frames = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        while frames.len() < 2 {
            while let Some(item) = decoder.decode(&mut buf).unwrap() {
                if let Item::Frame(f) = item {
                    frames.push(f);
                }
            }
            if frames.len() >= 2 || tls.read_buf(&mut buf).await.unwrap() == 0 {
                break;
            }
        }
    })
    .await
    .expect("CONNECTED and MESSAGE over TLS");
    assert_eq!(frames[0].command, Cmd::Connected, "{frames:?}");
    assert_eq!(frames[1].command, Cmd::Message, "{frames:?}");
    assert_eq!(&frames[1].body[..], b"over tls from rust");

    // Plain STOMP on the TLS port is not a TLS ClientHello: no CONNECTED comes back.
    let mut plain = tokio::net::TcpStream::connect(broker.addr()).await.unwrap();
    plain
        .write_all(b"CONNECT\naccept-version:1.2\n\n\0")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), plain.read_to_end(&mut answer)).await;
    assert!(
        !String::from_utf8_lossy(&answer).contains("CONNECTED"),
        "{answer:?}"
    );
}

/// A client whose first frame leaves in the same TCP segment as its handshake's last
/// flight (TLS 1.3's client Finished), as happens when a busy client's writes coalesce:
/// the broker's handshake reads the frame's record along with the Finished, and must still
/// answer it (rustls keeps such a record's plaintext buffered after the handshake).
#[test]
fn a_frame_that_arrives_with_the_handshakes_last_flight_is_answered() {
    use std::io::{Read, Write};
    use tokio_rustls::rustls;

    let pki = Pki::new();
    let broker = Broker::start_with_config("tls-coalesced", &pki.broker_config(false));
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile_certs(&fs::read(&pki.ca).unwrap()) {
        roots.add(cert).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    for attempt in 0..20 {
        let mut tls =
            rustls::ClientConnection::new(Arc::new(config.clone()), name.clone()).unwrap();
        let mut tcp = std::net::TcpStream::connect(broker.addr()).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        // The handshake, holding back what the client has to send once it is complete.
        while tls.is_handshaking() {
            if tls.wants_write() {
                tls.write_tls(&mut tcp).unwrap();
            } else {
                assert_ne!(tls.read_tls(&mut tcp).unwrap(), 0, "the broker closed");
                tls.process_new_packets().unwrap();
            }
        }
        // Finished and CONNECT in one write.
        tls.writer()
            .write_all(b"CONNECT\naccept-version:1.2\nhost:localhost\n\n\0")
            .unwrap();
        let mut flight = Vec::new();
        while tls.wants_write() {
            tls.write_tls(&mut flight).unwrap();
        }
        tcp.write_all(&flight).unwrap();
        let mut answer = Vec::new();
        while !answer.contains(&0) {
            match tls.read_tls(&mut tcp) {
                Ok(0) => panic!("attempt {attempt}: the broker closed: {answer:?}"),
                Ok(_) => {}
                Err(e) => panic!("attempt {attempt}: no CONNECTED within 5 s ({e}): {answer:?}"),
            }
            tls.process_new_packets().unwrap();
            let mut chunk = [0u8; 4096];
            match tls.reader().read(&mut chunk) {
                Ok(n) => answer.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("attempt {attempt}: {e}"),
            }
        }
        assert!(
            answer.starts_with(b"CONNECTED"),
            "attempt {attempt}: {}",
            String::from_utf8_lossy(&answer)
        );
    }
}

/// The certificates in a PEM file.
fn rustls_pemfile_certs(
    pem: &[u8],
) -> Vec<tokio_rustls::rustls::pki_types::CertificateDer<'static>> {
    use tokio_rustls::rustls::pki_types::CertificateDer;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

/// An MCollective pool as `server.cfg` writes it: entry 1 a TLS port nobody listens on,
/// entry 2 the broker. The `activemq` connector's settings for both.
fn mco_pool(dead_port: u16, broker: &Broker, ssl: &str) -> String {
    format!(
        "connector = activemq\n\
         plugin.activemq.pool.size = 2\n\
         plugin.activemq.pool.1.host = 127.0.0.1\n\
         plugin.activemq.pool.1.port = {dead_port}\n\
         plugin.activemq.pool.1.ssl = 1\n\
         plugin.activemq.pool.1.ssl.fallback = 1\n\
         plugin.activemq.pool.2.host = 127.0.0.1\n\
         plugin.activemq.pool.2.port = {}\n\
         plugin.activemq.pool.2.ssl = 1\n\
         {ssl}\
         plugin.activemq.initial_reconnect_delay = 0.01\n\
         plugin.activemq.max_reconnect_delay = 0.2\n",
        broker.addr().port()
    )
}

/// Waits for the client to connect; the disconnect reasons seen before, or `Err` with them
/// when it does not connect in time.
async fn until_connected(
    streams: &mut stampede_broker::client::ClientStreams,
    within: Duration,
) -> Result<(usize, Vec<String>), Vec<String>> {
    use stampede_broker::client::ClientEvent;
    let mut reasons = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, streams.events.recv()).await {
            Ok(Some(ClientEvent::Connected { server })) => return Ok((server, reasons)),
            Ok(Some(ClientEvent::Disconnected { reason })) => reasons.push(reason.to_string()),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return Err(reasons),
        }
    }
}

/// The failover client over TLS, configured as MCollective configures it: verified TLS
/// with a client certificate (`pool.N.ssl.ca/cert/key`) to a broker that requires one,
/// after failing over from a dead pool entry; refused when the CA is wrong; and
/// `ssl.fallback` (unverified) when no CA is given.
#[tokio::test]
async fn the_failover_client_speaks_tls_from_an_mcollective_pool() {
    use stampede_broker::client::{
        Client, ClientConfig, McoClientConfig, SendOutcome, SubscribeSpec,
    };
    use stampede_broker::net::TokioNet;
    use stampede_broker::proto::Headers;

    let pki = Pki::new();
    let dead_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let env = std::collections::BTreeMap::new();
    let broker = Broker::start_with_config("tls-client", &pki.broker_config(true));
    let verified = format!(
        "plugin.activemq.pool.2.ssl.ca = {}\n\
         plugin.activemq.pool.2.ssl.cert = {}\n\
         plugin.activemq.pool.2.ssl.key = {}\n",
        path(&pki.ca),
        path(&pki.client_cert),
        path(&pki.client_key)
    );
    let mco = McoClientConfig::from_text(&mco_pool(dead_port, &broker, &verified), &env).unwrap();
    let (client, mut streams) =
        Client::start(Arc::new(TokioNet), ClientConfig::from_mcollective(&mco));
    let (server, reasons) = until_connected(&mut streams, Duration::from_secs(30))
        .await
        .expect("connected over TLS");
    assert_eq!(server, 1, "pool entry 2 (entry 1 is dead): {reasons:?}");
    client
        .subscribe(SubscribeSpec::new("/queue/tls.client"))
        .await
        .unwrap();
    assert_eq!(
        client
            .send_with_receipt("/queue/tls.client", Headers::new(), "over tls".to_owned())
            .await,
        SendOutcome::Confirmed
    );
    let m = tokio::time::timeout(Duration::from_secs(10), streams.messages.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.text(), Some("over tls"));
    client.disconnect().await;

    // A CA that did not sign the broker's certificate: every attempt fails its handshake.
    let wrong_ca = format!(
        "plugin.activemq.pool.2.ssl.ca = {}\n\
         plugin.activemq.pool.2.ssl.cert = {}\n\
         plugin.activemq.pool.2.ssl.key = {}\n",
        path(&pki.client_cert),
        path(&pki.client_cert),
        path(&pki.client_key)
    );
    let mco = McoClientConfig::from_text(&mco_pool(dead_port, &broker, &wrong_ca), &env).unwrap();
    let (client, mut streams) =
        Client::start(Arc::new(TokioNet), ClientConfig::from_mcollective(&mco));
    let reasons = until_connected(&mut streams, Duration::from_secs(3))
        .await
        .expect_err("no connection to a broker whose certificate does not verify");
    assert!(
        reasons.iter().any(|r| r.contains("certificate")),
        "{reasons:?}"
    );
    client.disconnect().await;
    drop(broker);

    // No CA, certificate or key, with `ssl.fallback`: unverified TLS to a broker that
    // asks for no client certificate.
    let open = Broker::start_with_config("tls-fallback", &pki.broker_config(false));
    let fallback = "plugin.activemq.pool.2.ssl.fallback = 1\n";
    let mco = McoClientConfig::from_text(&mco_pool(dead_port, &open, fallback), &env).unwrap();
    assert!(
        mco.warnings
            .iter()
            .any(|w| w.to_string().contains("unverified TLS"))
    );
    let (client, mut streams) =
        Client::start(Arc::new(TokioNet), ClientConfig::from_mcollective(&mco));
    let (server, _) = until_connected(&mut streams, Duration::from_secs(30))
        .await
        .expect("connected over unverified TLS");
    assert_eq!(server, 1);
    client.disconnect().await;
}

/// A network connector over TLS: broker B bridges to broker A's `ssl://` listener
/// (which requires client certificates) with `static:(ssl://…?ca_file=…&cert_file=…&
/// key_file=…)`, and a topic message sent on B reaches a consumer on A.
#[tokio::test]
async fn a_network_connector_bridges_over_tls() {
    use stampede_broker::client::{
        Client, ClientConfig, PolicyKind, SendOutcome, ServerAddr, ServerList, SubscribeSpec,
    };
    use stampede_broker::net::TokioNet;
    use stampede_broker::proto::Headers;
    use stampede_broker::tls::ClientTls;

    let pki = Pki::new();
    let a = Broker::start_with_config("tls-bridge-a", &pki.broker_config(true));
    let b_config = format!(
        "[core]\nbroker_name = \"b\"\n\n[server]\nlisten = [\"127.0.0.1:0\"]\n\n\
         [[connectors]]\nname = \"to-a\"\n\
         uri = \"static:(ssl://127.0.0.1:{}?ca_file={}&cert_file={}&key_file={})?initialReconnectDelay=100\"\n",
        a.addr().port(),
        path(&pki.ca),
        path(&pki.client_cert),
        path(&pki.client_key),
    );
    let b = Broker::start_with_config("tls-bridge-b", &b_config);
    let tls = ClientTls {
        ca_file: path(&pki.ca),
        cert_file: path(&pki.client_cert),
        key_file: path(&pki.client_key),
        insecure_skip_verify: false,
    };
    let on_a = ServerAddr::new("127.0.0.1", a.addr().port()).with_tls(tls);
    let (consumer, mut messages) = Client::start(
        Arc::new(TokioNet),
        ClientConfig::new(ServerList::single(on_a), PolicyKind::StompGem),
    );
    consumer
        .subscribe(SubscribeSpec::new("/topic/over.tls"))
        .await
        .unwrap();
    let on_b = ServerAddr::new("127.0.0.1", b.addr().port());
    let (producer, _p) = Client::start(
        Arc::new(TokioNet),
        ClientConfig::new(ServerList::single(on_b), PolicyKind::StompGem),
    );
    // The bridge needs a moment to connect and learn A's consumer: send until one arrives.
    let arrived = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let sent = producer
                .send_with_receipt("/topic/over.tls", Headers::new(), "bridged".to_owned())
                .await;
            assert_eq!(sent, SendOutcome::Confirmed);
            if let Ok(Some(m)) =
                tokio::time::timeout(Duration::from_millis(300), messages.messages.recv()).await
            {
                return m;
            }
        }
    })
    .await
    .expect("a message bridged over TLS");
    assert_eq!(arrived.text(), Some("bridged"));
    producer.disconnect().await;
    consumer.disconnect().await;
}

/// Real MCollective 2.12 over TLS: three `mcollectived` nodes and `mco` with
/// `plugin.activemq.pool.1.ssl = 1` and the CA, certificate and key (verified TLS, client
/// certificates required by the broker, authentication on): `mco ping` answers from every
/// node and a directed `mco rpc` reaches exactly the two it names
/// (`tests/interop/mco_ping.sh --ssl-*`).
#[test]
fn mcollective_over_tls_answers_from_every_node() {
    common::require_mcollective();
    let pki = Pki::new();
    let config = format!(
        "{}\n{}",
        pki.broker_config(true),
        common::AUTH_CONFIG.replacen("[server]\nlisten = [\"127.0.0.1:0\"]\n", "", 1)
    );
    let broker = Broker::start_with_config("mco-tls", &config);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/mco_ping.sh");
    let mut cmd = Command::new("/bin/bash");
    cmd.arg(script)
        .args(["--host", &broker.host(), "--port", &broker.port()])
        .args(["--user", "mcollective", "--password", "marionette"])
        .args(["--nodes", "3"])
        .args(["--ssl-ca", &path(&pki.ca)])
        .args(["--ssl-cert", &path(&pki.client_cert)])
        .args(["--ssl-key", &path(&pki.client_key)])
        .env("TMPDIR", broker.dir());
    let run = run_bounded("mco_ping.sh over TLS", cmd, Duration::from_secs(240));
    common::assert_passed(&run, &broker);
}

/// A verified client certificate logs in as the user whose `certificate_cns` matches its
/// common name, with no login or passcode (ActiveMQ's certificate login); without a
/// certificate the same client is refused.
#[tokio::test]
async fn a_client_certificate_maps_to_a_user() {
    use stampede_broker::client::{
        Client, ClientConfig, ClientEvent, PolicyKind, SendOutcome, ServerAddr, ServerList,
    };
    use stampede_broker::net::TokioNet;
    use stampede_broker::proto::Headers;
    use stampede_broker::tls::ClientTls;

    let pki = Pki::new();
    let mut config = pki.broker_config(false);
    config.push_str(&format!(
        "client_ca_file = {:?}\nclient_certificates = \"optional\"\n\n\
         [[security.users]]\nname = \"server\"\npassword = \"not-used-here\"\n\
         groups = [\"servers\"]\ncertificate_cns = [\"mcollective-node-*\"]\n\n\
         [[security.authorization]]\nqueue = \">\"\nread = [\"servers\"]\n\
         write = [\"servers\"]\nadmin = [\"servers\"]\n",
        path(&pki.ca)
    ));
    let broker = Broker::start_with_config("tls-cert-user", &config);
    let start = |tls: ClientTls| {
        let server = ServerAddr::new("127.0.0.1", broker.addr().port()).with_tls(tls);
        let mut c = ClientConfig::new(ServerList::single(server), PolicyKind::StompGem);
        c.reconnect.max_attempts = Some(1);
        Client::start(Arc::new(TokioNet), c)
    };
    let with_cert = ClientTls {
        ca_file: path(&pki.ca),
        cert_file: path(&pki.client_cert),
        key_file: path(&pki.client_key),
        insecure_skip_verify: false,
    };
    let (client, mut streams) = start(with_cert);
    let (server, reasons) = until_connected(&mut streams, Duration::from_secs(30))
        .await
        .expect("logged in by certificate");
    assert_eq!(server, 0, "{reasons:?}");
    assert_eq!(
        client
            .send_with_receipt("/queue/by.cert", Headers::new(), "hi".to_owned())
            .await,
        SendOutcome::Confirmed
    );
    client.disconnect().await;
    // The same TLS without a client certificate: no login, so the broker refuses it.
    let no_cert = ClientTls {
        ca_file: path(&pki.ca),
        ..ClientTls::default()
    };
    let (client, mut streams) = start(no_cert);
    let mut refused = None;
    let _ = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(e) = streams.events.recv().await {
            match e {
                ClientEvent::Connected { .. } => panic!("connected without a certificate"),
                ClientEvent::Disconnected { reason } => {
                    refused = Some(reason.to_string());
                    break;
                }
                _ => {}
            }
        }
    })
    .await;
    let refused = refused.expect("a refusal");
    assert!(
        refused.to_lowercase().contains("credentials") || refused.contains("ERROR"),
        "{refused}"
    );
    client.disconnect().await;
}
