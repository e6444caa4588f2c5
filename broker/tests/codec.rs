//! Black-box tests of the STOMP codec: hand-written vectors fed at every split point, real
//! MCollective traffic, randomized encode/decode round trips and random garbage.

use bytes::BytesMut;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use stampede_broker::proto::codec::{encode_body, encode_command, encode_header};
use stampede_broker::proto::codec::{wants_content_length, write_content_length};
use stampede_broker::proto::{
    Command, DecodeError, Decoder, Frame, FrameLimits, Headers, Item, Version, encode,
};

/// The `mco ping` request SEND frame, byte for byte as MCollective 2.12 sent it to ActiveMQ
/// (transcribed from the hex dump in the capture notes by `fixtures/transcribe_mco.py`).
const MCO_PING_SEND: &[u8] = include_bytes!("fixtures/mco-ping-send.bin");
/// Everything the `mco ping` client sent on its connection: CONNECT, SUBSCRIBE, SEND,
/// UNSUBSCRIBE.
const MCO_CLIENT_STREAM: &[u8] = include_bytes!("fixtures/mco-amq-conn2-client.bin");
/// Everything ActiveMQ sent back: CONNECTED and a MESSAGE, each followed by an EOL.
const MCO_BROKER_STREAM: &[u8] = include_bytes!("fixtures/mco-amq-conn2-broker.bin");

/// How a connection's decoder is set up.
#[derive(Clone, Copy, Debug)]
struct Setup {
    /// The version known before the first byte (`None` for a fresh connection).
    version: Option<Version>,
    /// The version to switch to after a CONNECT, STOMP or CONNECTED frame, as the broker or
    /// a client would after negotiation.
    negotiated: Option<Version>,
    limits: FrameLimits,
}

impl Setup {
    fn at(version: Option<Version>) -> Setup {
        Setup {
            version,
            negotiated: None,
            limits: FrameLimits::default(),
        }
    }

    fn limits(mut self, limits: FrameLimits) -> Setup {
        self.limits = limits;
        self
    }

    fn negotiates(mut self, version: Version) -> Setup {
        self.negotiated = Some(version);
        self
    }
}

/// Everything a run of the decoder produced.
#[derive(Debug, PartialEq)]
struct Outcome {
    items: Vec<Item>,
    error: Option<DecodeError>,
    /// Bytes left undecoded at the end (zero after an error).
    left: usize,
}

/// Feeds `chunks` in order, draining the decoder after each one.
fn run<'a>(setup: Setup, chunks: impl IntoIterator<Item = &'a [u8]>) -> Outcome {
    let mut decoder = Decoder::new(setup.limits);
    if let Some(version) = setup.version {
        decoder.set_version(version);
    }
    let mut buf = BytesMut::new();
    let mut items = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(item)) => {
                    if let (Item::Frame(frame), Some(version)) = (&item, setup.negotiated) {
                        if !frame.command.escapes_headers() {
                            decoder.set_version(version);
                        }
                    }
                    items.push(item);
                }
                Ok(None) => break,
                Err(error) => {
                    return Outcome {
                        items,
                        error: Some(error),
                        left: 0,
                    };
                }
            }
        }
    }
    Outcome {
        items,
        error: None,
        left: buf.len(),
    }
}

/// Decodes `input` whole, byte by byte and split in two at every position; all runs must
/// agree. Returns the outcome.
fn decode_everywhere(setup: Setup, input: &[u8]) -> Outcome {
    let whole = run(setup, [input]);
    assert_eq!(run(setup, input.chunks(1)), whole, "fed byte by byte");
    for at in 0..=input.len() {
        let (a, b) = input.split_at(at);
        assert_eq!(run(setup, [a, b]), whole, "split at {at}");
    }
    whole
}

/// Cuts `input` into random pieces (many small ones, some large).
fn random_chunks<'a>(rng: &mut SmallRng, input: &'a [u8]) -> Vec<&'a [u8]> {
    let mut chunks = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        let max = if rng.random_bool(0.2) { rest.len() } else { 4 };
        let n = rng.random_range(1..=max.min(rest.len()));
        let (chunk, after) = rest.split_at(n);
        chunks.push(chunk);
        rest = after;
    }
    chunks
}

fn frames(outcome: &Outcome) -> Vec<&Frame> {
    outcome
        .items
        .iter()
        .filter_map(|item| match item {
            Item::Frame(frame) => Some(frame),
            Item::HeartBeat => None,
        })
        .collect()
}

fn header_list(frame: &Frame) -> Vec<(&str, &str)> {
    frame.headers.iter().map(|(k, v)| (&**k, &**v)).collect()
}

fn limits(frame: usize, count: usize, line: usize, body: usize) -> FrameLimits {
    FrameLimits {
        frame_bytes_max: frame,
        header_count_max: count,
        header_line_bytes_max: line,
        body_bytes_max: body,
    }
}

/// What decoding a vector must give.
struct Vector {
    name: &'static str,
    setup: Setup,
    input: &'static [u8],
    items: Vec<Item>,
    error: Option<DecodeError>,
}

fn frame(command: Command, headers: &[(&'static str, &'static str)], body: &'static [u8]) -> Item {
    Item::Frame(Frame {
        command,
        headers: headers.iter().copied().collect(),
        body: body.into(),
    })
}

fn vectors() -> Vec<Vector> {
    use Command::*;
    use Version::*;
    let v = |name, setup, input, items, error| Vector {
        name,
        setup,
        input,
        items,
        error,
    };
    let ok = |name, setup, input, items| v(name, setup, input, items, None);
    let hb = || Item::HeartBeat;
    let fresh = Setup::at(None);
    let small = limits(48, 3, 20, 10);
    vec![
        ok(
            "simple frame",
            fresh,
            b"SEND\ndestination:/queue/a\n\nhi\0",
            vec![frame(Send, &[("destination", "/queue/a")], b"hi")],
        ),
        ok(
            "heart-beats around frames",
            Setup::at(Some(V1_1)),
            b"\n\r\nACK\nid:1\n\n\0\n\r\n\nNACK\nid:2\n\n\0\n",
            vec![
                hb(),
                hb(),
                frame(Ack, &[("id", "1")], b""),
                hb(),
                hb(),
                hb(),
                frame(Nack, &[("id", "2")], b""),
                hb(),
            ],
        ),
        ok(
            "CRLF everywhere in 1.0",
            Setup::at(Some(V1_0)),
            b"SEND\r\ndestination:/q\r\n\r\nx\r\n\0\r\n",
            vec![frame(Send, &[("destination", "/q")], b"x\r\n"), hb()],
        ),
        ok(
            "CRLF in 1.2",
            Setup::at(Some(V1_2)),
            b"MESSAGE\r\na:b\\r\r\n\r\n\0",
            vec![frame(Message, &[("a", "b\r")], b"")],
        ),
        ok(
            "repeated headers, first wins",
            fresh,
            b"SEND\nh:1\nh:2\nh:3\n\n\0",
            vec![frame(Send, &[("h", "1"), ("h", "2"), ("h", "3")], b"")],
        ),
        ok(
            "NUL in body with content-length",
            fresh,
            b"SEND\ncontent-length:5\n\n\0a\0b\0\0\n",
            vec![frame(Send, &[("content-length", "5")], b"\0a\0b\0"), hb()],
        ),
        ok("partial frame is kept", fresh, b"SEND\nx:y\n\nabc", vec![]),
        v(
            "missing NUL after content-length",
            fresh,
            b"SEND\ncontent-length:2\n\nabc\0",
            vec![],
            Some(DecodeError::ContentLengthMismatch),
        ),
        v(
            "invalid content-length",
            fresh,
            b"SEND\ncontent-length:-3\n\nabc\0",
            vec![],
            Some(DecodeError::InvalidContentLength("-3".into())),
        ),
        ok(
            "1.1 escapes",
            Setup::at(Some(V1_1)),
            b"SEND\nk\\cx:a\\nb\\\\c\\cd\n\n\0",
            vec![frame(Send, &[("k:x", "a\nb\\c:d")], b"")],
        ),
        v(
            "1.1 has no \\r",
            Setup::at(Some(V1_1)),
            b"SEND\nk:a\\rb\n\n\0",
            vec![],
            Some(DecodeError::InvalidEscape("k:a\\rb".into())),
        ),
        ok(
            "1.2 escapes",
            Setup::at(Some(V1_2)),
            b"SEND\nk:\\r\\n\\c\\\\\n\n\0",
            vec![frame(Send, &[("k", "\r\n:\\")], b"")],
        ),
        v(
            "1.2 undefined escape",
            Setup::at(Some(V1_2)),
            b"SEND\nk:\\t\n\n\0",
            vec![],
            Some(DecodeError::InvalidEscape("k:\\t".into())),
        ),
        v(
            "trailing backslash",
            Setup::at(Some(V1_2)),
            b"SEND\nk:v\\\n\n\0",
            vec![],
            Some(DecodeError::InvalidEscape("k:v\\".into())),
        ),
        ok(
            "no escapes in 1.0",
            Setup::at(Some(V1_0)),
            b"SEND\nk\\c:\\t\\n\\\n\n\0",
            vec![frame(Send, &[("k\\c", "\\t\\n\\")], b"")],
        ),
        ok(
            "CONNECT is not unescaped, the SEND after it is",
            fresh.negotiates(V1_2),
            b"CONNECT\npasscode:a\\b\n\n\0SEND\nk:a\\cb\n\n\0",
            vec![
                frame(Connect, &[("passcode", "a\\b")], b""),
                frame(Send, &[("k", "a:b")], b""),
            ],
        ),
        ok(
            "CONNECTED is not unescaped in 1.2",
            Setup::at(Some(V1_2)),
            b"CONNECTED\nserver:x\\y\n\n\0",
            vec![frame(Connected, &[("server", "x\\y")], b"")],
        ),
        ok(
            "values are not trimmed",
            Setup::at(Some(V1_0)),
            b"SEND\nk: v \n\n\0",
            vec![frame(Send, &[("k", " v ")], b"")],
        ),
        v(
            "header without colon",
            fresh,
            b"SEND\nbroken\n\n\0",
            vec![],
            Some(DecodeError::MalformedHeader("broken".into())),
        ),
        v(
            "unknown command after a good frame",
            fresh,
            b"ACK\n\n\0\nHELLO\n\n\0",
            vec![frame(Ack, &[], b""), hb()],
            Some(DecodeError::UnknownCommand("HELLO".into())),
        ),
        v(
            "invalid UTF-8 in a value",
            fresh,
            b"SEND\nk:\xc0\xaf\n\n\0",
            vec![],
            Some(DecodeError::InvalidUtf8),
        ),
        ok(
            "frame of exactly the limits",
            fresh.limits(small),
            b"SEND\naaa:1\nbbb:2\nccccc:0123456789ab\n\n0123456789\0",
            vec![frame(
                Send,
                &[("aaa", "1"), ("bbb", "2"), ("ccccc", "0123456789ab")],
                b"0123456789",
            )],
        ),
        v(
            "frame too large",
            fresh.limits(small),
            b"SEND\naaa:1\nbbb:2\nccccc:0123456789abc\n\n0123456789\0",
            vec![],
            Some(DecodeError::FrameTooLarge { limit: 48 }),
        ),
        v(
            "too many headers",
            fresh.limits(small),
            b"SEND\na:1\nb:2\nc:3\nd:4\n\n\0",
            vec![],
            Some(DecodeError::TooManyHeaders { limit: 3 }),
        ),
        v(
            "header line too long",
            fresh.limits(small),
            b"SEND\nlong:0123456789abcdef\n\n\0",
            vec![],
            Some(DecodeError::HeaderLineTooLong { limit: 20 }),
        ),
        v(
            "body too large without content-length",
            fresh.limits(small),
            b"SEND\n\n0123456789a\0",
            vec![],
            Some(DecodeError::BodyTooLarge { limit: 10 }),
        ),
        v(
            "body too large with content-length",
            fresh.limits(small),
            b"SEND\ncontent-length:11\n\n0123456789a\0",
            vec![],
            Some(DecodeError::BodyTooLarge { limit: 10 }),
        ),
    ]
}

#[test]
fn vectors_decode_the_same_however_they_are_split() {
    for vector in vectors() {
        let outcome = decode_everywhere(vector.setup, vector.input);
        assert_eq!(outcome.items, vector.items, "{}", vector.name);
        assert_eq!(outcome.error, vector.error, "{}", vector.name);
        let mut rng = SmallRng::seed_from_u64(vector.input.len() as u64);
        for _ in 0..20 {
            let chunks = random_chunks(&mut rng, vector.input);
            assert_eq!(run(vector.setup, chunks), outcome, "{}", vector.name);
        }
    }
}

#[test]
fn oversize_frames_fail_before_they_are_complete() {
    let small = Setup::at(None).limits(limits(48, 3, 20, 10));
    // Prefixes that already prove the limit broken, though the frame has not ended.
    for (prefix, error) in [
        (
            &b"SEND\naaaaaa:0123456789ab\nbbbbbb:0123456789ab\ncccc"[..],
            DecodeError::FrameTooLarge { limit: 48 },
        ),
        (
            b"SEND\na:1\nb:2\nc:3\nd",
            DecodeError::TooManyHeaders { limit: 3 },
        ),
        (
            b"SEND\nlong:0123456789abcdef",
            DecodeError::HeaderLineTooLong { limit: 20 },
        ),
        (
            b"SEND\n\n0123456789a",
            DecodeError::BodyTooLarge { limit: 10 },
        ),
        (
            b"SEND\ncontent-length:11\n\n",
            DecodeError::BodyTooLarge { limit: 10 },
        ),
        (
            b"SEND\ncontent-length:10\nx:0123456789ab\n\n",
            DecodeError::FrameTooLarge { limit: 48 },
        ),
    ] {
        let outcome = decode_everywhere(small, prefix);
        assert_eq!(outcome.error, Some(error), "{}", prefix.escape_ascii());
    }
    // With the default limits, a huge declared body is refused from its headers alone.
    let outcome = decode_everywhere(Setup::at(None), b"SEND\ncontent-length:999999999\n\n");
    assert_eq!(
        outcome.error,
        Some(DecodeError::BodyTooLarge {
            limit: FrameLimits::default().body_bytes_max
        })
    );
}

#[test]
fn large_bodies_in_small_pieces() {
    // Four MiB in 1 KiB pieces, with and without content-length; this would take minutes
    // if each call rescanned the partial frame.
    let body: Vec<u8> = (0..4 * 1024 * 1024).map(|i| (i % 251 + 1) as u8).collect();
    for with_length in [false, true] {
        let frame = if with_length {
            Frame::new(Command::Send).body(body.clone())
        } else {
            Frame::new(Command::Send)
        };
        let mut wire = BytesMut::new();
        encode(&frame, Version::V1_2, &mut wire);
        if !with_length {
            // Insert the body by hand so that no content-length is written.
            wire.truncate(wire.len() - 1);
            wire.extend_from_slice(&body);
            wire.extend_from_slice(b"\0");
        }
        let outcome = run(Setup::at(Some(Version::V1_2)), wire.chunks(1024));
        assert_eq!(outcome.error, None);
        let decoded = frames(&outcome);
        assert_eq!(decoded.len(), 1);
        assert_eq!(decoded[0].body.len(), body.len());
        assert!(decoded[0].body == body[..]);
    }
}

#[test]
fn mcollective_ping_send_decodes_with_its_binary_body() {
    assert_eq!(MCO_PING_SEND.len(), 567);
    // The client negotiated 1.0, but the frame decodes the same in every version.
    for version in [
        None,
        Some(Version::V1_0),
        Some(Version::V1_1),
        Some(Version::V1_2),
    ] {
        let outcome = decode_everywhere(Setup::at(version), MCO_PING_SEND);
        assert_eq!((outcome.error.clone(), outcome.left), (None, 0));
        let decoded = frames(&outcome);
        assert_eq!(decoded.len(), 1);
        let send = decoded[0];
        assert_eq!(send.command, Command::Send);
        assert_eq!(
            header_list(send),
            [
                ("timestamp", "1795437413000"),
                ("expires", "1795437483000"),
                ("reply-to", "/queue/mcollective.reply.mco-client_16202.1"),
                ("mc_sender", "mco-client"),
                ("destination", "/topic/mcollective.discovery.agent"),
                ("content-length", "335"),
                ("content-type", "text/plain; charset=UTF-8"),
            ]
        );
        assert_eq!(send.body.len(), 335);
        // Ruby Marshal data: empty filter arrays are "[\0", five of them.
        assert_eq!(send.body.iter().filter(|&&b| b == 0).count(), 5);
        assert!(send.body.starts_with(b"\x04\x08{\x0f:\x09body"));
        assert!(
            send.body
                .ends_with(b"7323773329b9c9f004b016ac6ae2bde3\x06;\x07F")
        );
    }
}

#[test]
fn mcollective_activemq_session_decodes() {
    let client = decode_everywhere(Setup::at(None).negotiates(Version::V1_0), MCO_CLIENT_STREAM);
    assert_eq!((client.error.clone(), client.left), (None, 0));
    let commands: Vec<Command> = frames(&client).iter().map(|f| f.command).collect();
    assert_eq!(
        commands,
        [
            Command::Connect,
            Command::Subscribe,
            Command::Send,
            Command::Unsubscribe
        ]
    );
    let connect = frames(&client)[0];
    assert_eq!(connect.headers.get("accept-version"), Some("1.0"));
    assert_eq!(connect.headers.get("host"), Some("mcollective"));
    assert_eq!(connect.headers.get("content-length"), Some("0"));
    let ping = run(Setup::at(Some(Version::V1_0)), [MCO_PING_SEND]);
    assert_eq!(frames(&client)[2], frames(&ping)[0]);

    let broker = decode_everywhere(Setup::at(None).negotiates(Version::V1_0), MCO_BROKER_STREAM);
    assert_eq!((broker.error.clone(), broker.left), (None, 0));
    assert!(matches!(
        &broker.items[..],
        [
            Item::Frame(_),
            Item::HeartBeat,
            Item::Frame(_),
            Item::HeartBeat
        ]
    ));
    let [connected, message] = frames(&broker)[..] else {
        panic!("two frames expected");
    };
    assert_eq!(connected.command, Command::Connected);
    assert_eq!(
        connected.headers.get("session"),
        Some("ID:vm-40623-1795437276402-3:41")
    );
    assert_eq!(message.command, Command::Message);
    assert_eq!(
        message.headers.get("message-id"),
        Some("ID:vm-40623-1795437276402-3:40:-1:1:1")
    );
    assert_eq!(message.body.len(), 196);

    // Every frame survives being re-encoded for a 1.0 session.
    for frame in frames(&client).into_iter().chain(frames(&broker)) {
        assert_eq!(round_trip(frame, Version::V1_0), after_encoding(frame));
    }
}

/// What a frame looks like after `encode`: its `content-length` headers replaced by one
/// correct header at the end, when one is written.
fn after_encoding(frame: &Frame) -> Frame {
    let mut expected = frame.clone();
    expected.headers.remove("content-length");
    if wants_content_length(frame.command, frame.body.len()) {
        expected
            .headers
            .push("content-length", frame.body.len().to_string());
    }
    expected
}

/// Encodes `frame` for `version` and decodes it again with a decoder of that version.
fn round_trip(frame: &Frame, version: Version) -> Frame {
    let mut wire = BytesMut::new();
    encode(frame, version, &mut wire);
    let outcome = run(Setup::at(Some(version)), [&wire[..]]);
    assert_eq!(outcome.error, None, "{}", wire.escape_ascii());
    assert_eq!(outcome.left, 0);
    match <[Item; 1]>::try_from(outcome.items) {
        Ok([Item::Frame(decoded)]) => decoded,
        other => panic!("expected one frame, got {other:?}"),
    }
}

const COMMANDS: [Command; 15] = [
    Command::Connect,
    Command::Stomp,
    Command::Send,
    Command::Subscribe,
    Command::Unsubscribe,
    Command::Ack,
    Command::Nack,
    Command::Begin,
    Command::Commit,
    Command::Abort,
    Command::Disconnect,
    Command::Connected,
    Command::Message,
    Command::Receipt,
    Command::Error,
];

/// A random header name or value that `version` can carry for `command`.
fn random_text(rng: &mut SmallRng, version: Version, command: Command, name: bool) -> String {
    let escapes = command.escapes_headers() && version != Version::V1_0;
    let mut alphabet = vec![
        "a", "z", "Q", "0", "9", "-", "_", "/", ".", " ", "é", "€", "\\",
    ];
    if escapes {
        alphabet.extend([":", "\n"]);
        if version == Version::V1_2 {
            alphabet.push("\r");
        }
    } else if !name {
        alphabet.push(":");
    }
    let len = rng.random_range(usize::from(name)..10);
    (0..len)
        .map(|_| alphabet[rng.random_range(0..alphabet.len())])
        .collect()
}

fn random_frame(rng: &mut SmallRng, version: Version) -> Frame {
    let command = COMMANDS[rng.random_range(0..COMMANDS.len())];
    let mut headers = Headers::new();
    for _ in 0..rng.random_range(0..8) {
        if rng.random_bool(0.1) {
            // A stale or wrong length that the encoder must replace.
            headers.push("content-length", rng.random_range(0..100u32).to_string());
        } else {
            let name = random_text(rng, version, command, true);
            let value = random_text(rng, version, command, false);
            headers.push(name, value);
        }
    }
    let body_len = if rng.random_bool(0.3) {
        0
    } else {
        rng.random_range(0..64)
    };
    let body: Vec<u8> = (0..body_len)
        .map(|_| match rng.random_range(0..4) {
            0 => 0,
            1 => b'\n',
            _ => rng.random(),
        })
        .collect();
    Frame {
        command,
        headers,
        body: body.into(),
    }
}

#[test]
fn random_frames_round_trip_in_every_version() {
    let mut rng = SmallRng::seed_from_u64(0x5707_c0de);
    for _ in 0..3000 {
        let version = Version::ALL[rng.random_range(0..3)];
        let frame = random_frame(&mut rng, version);
        assert_eq!(round_trip(&frame, version), after_encoding(&frame));
    }
}

#[test]
fn random_streams_decode_however_they_are_split() {
    let mut rng = SmallRng::seed_from_u64(42);
    for _ in 0..300 {
        let version = Version::ALL[rng.random_range(0..3)];
        let mut wire = BytesMut::new();
        let mut expected = Vec::new();
        for _ in 0..rng.random_range(1..6) {
            for _ in 0..rng.random_range(0..3) {
                wire.extend_from_slice(if rng.random_bool(0.5) { b"\n" } else { b"\r\n" });
                expected.push(Item::HeartBeat);
            }
            let frame = random_frame(&mut rng, version);
            encode(&frame, version, &mut wire);
            expected.push(Item::Frame(after_encoding(&frame)));
        }
        let setup = Setup::at(Some(version));
        let whole = run(setup, [&wire[..]]);
        assert_eq!(whole.items, expected);
        assert_eq!((whole.error.clone(), whole.left), (None, 0));
        assert_eq!(run(setup, wire.chunks(1)), whole);
        for _ in 0..5 {
            assert_eq!(run(setup, random_chunks(&mut rng, &wire)), whole);
        }
    }
}

#[test]
fn piecewise_encoding_matches_encode() {
    let mut rng = SmallRng::seed_from_u64(7);
    for _ in 0..500 {
        let version = Version::ALL[rng.random_range(0..3)];
        let frame = random_frame(&mut rng, version);
        let mut whole = BytesMut::new();
        encode(&frame, version, &mut whole);
        let mut pieces = BytesMut::new();
        encode_command(&mut pieces, frame.command);
        for (name, value) in frame.headers.iter() {
            if name != "content-length" {
                encode_header(
                    &mut pieces,
                    name,
                    value,
                    version,
                    frame.command.escapes_headers(),
                );
            }
        }
        if wants_content_length(frame.command, frame.body.len()) {
            write_content_length(&mut pieces, frame.body.len());
        }
        encode_body(&mut pieces, &frame.body);
        assert_eq!(pieces, whole);
    }
}

#[test]
fn stomp_1_0_encoding_keeps_framing_intact() {
    // 1.0 has no escapes: line ends become the 1.1 spellings, everything else is literal.
    let frame = Frame::new(Command::Message)
        .header("destination", "/queue/a")
        .header("note", "two\nlines\r and a \\ and a :");
    let decoded = round_trip(&frame, Version::V1_0);
    assert_eq!(
        header_list(&decoded),
        [
            ("destination", "/queue/a"),
            ("note", "two\\nlines\\r and a \\ and a :"),
            ("content-length", "0"),
        ]
    );
}

/// Fragments that random garbage is built from, so that it gets past the command line.
const TOKENS: [&[u8]; 24] = [
    b"SEND\n",
    b"MESSAGE\n",
    b"CONNECT\n",
    b"CONNECTED\r\n",
    b"ACK\n",
    b"content-length:",
    b"content-length:3\n",
    b"content-length: 12\n",
    b"destination:/queue/a\n",
    b"a:b\n",
    b":",
    b"\\",
    b"\\n",
    b"\\c",
    b"\\r",
    b"\\t",
    b"\n",
    b"\r\n",
    b"\r",
    b"\0",
    b"\0\n",
    b"0123456789",
    b"\xc3\xa9",
    b"\xff",
];

fn random_garbage(rng: &mut SmallRng) -> Vec<u8> {
    let mut out = Vec::new();
    for _ in 0..rng.random_range(0..40) {
        if rng.random_bool(0.7) {
            out.extend_from_slice(TOKENS[rng.random_range(0..TOKENS.len())]);
        } else {
            out.push(rng.random());
        }
    }
    out
}

fn random_setup(rng: &mut SmallRng) -> Setup {
    let version = match rng.random_range(0..4) {
        0 => None,
        n => Some(Version::ALL[n - 1]),
    };
    let limits = if rng.random_bool(0.3) {
        FrameLimits::default()
    } else {
        limits(
            rng.random_range(0..120),
            rng.random_range(0..6),
            rng.random_range(0..50),
            rng.random_range(0..40),
        )
    };
    let mut setup = Setup::at(version).limits(limits);
    if rng.random_bool(0.5) {
        setup = setup.negotiates(Version::ALL[rng.random_range(0..3)]);
    }
    setup
}

#[test]
fn random_garbage_never_panics_and_splits_do_not_matter() {
    let mut rng = SmallRng::seed_from_u64(0xbad_f00d);
    for _ in 0..4000 {
        let input = if rng.random_bool(0.5) {
            random_garbage(&mut rng)
        } else {
            // A valid stream with a few bytes flipped, inserted or removed.
            let version = Version::ALL[rng.random_range(0..3)];
            let mut wire = BytesMut::new();
            encode(&random_frame(&mut rng, version), version, &mut wire);
            encode(&random_frame(&mut rng, version), version, &mut wire);
            let mut bytes = wire.to_vec();
            for _ in 0..rng.random_range(1..4) {
                let at = rng.random_range(0..bytes.len());
                match rng.random_range(0..3) {
                    0 => bytes[at] = rng.random(),
                    1 => bytes.insert(at, TOKENS[rng.random_range(0..TOKENS.len())][0]),
                    _ => {
                        bytes.remove(at);
                    }
                }
            }
            bytes
        };
        let setup = random_setup(&mut rng);
        let whole = run(setup, [&input[..]]);
        assert_eq!(
            run(setup, input.chunks(1)),
            whole,
            "byte by byte: {}",
            input.escape_ascii()
        );
        let chunks = random_chunks(&mut rng, &input);
        assert_eq!(run(setup, chunks), whole, "{}", input.escape_ascii());
        // Error messages end up in ERROR frame headers: one line each.
        if let Some(error) = whole.error {
            assert!(!error.to_string().contains(['\n', '\r', '\0']), "{error}");
        }
    }
}
