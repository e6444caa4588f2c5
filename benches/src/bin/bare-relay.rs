//! The bare relay: the physical limit a STOMP broker is measured against.
//!
//! It accepts STOMP connections and does the least a broker must do on the wire: it
//! answers CONNECT with CONNECTED, remembers SUBSCRIBEs, and copies the body of each SEND
//! to the subscribers of its destination as a MESSAGE (to every subscriber of a topic, to
//! one subscriber of a `/queue/…` in turn). There is nothing else: no acknowledgements,
//! selectors, expiry, persistence, flow control, heart-beats or limits beyond a bounded
//! outbox per connection. What `stampede load` measures against it is what this machine
//! can carry, so `scripts/bench-compare` states every broker's knee as a fraction of it.
//!
//! ```sh
//! cargo run --release -p stampede-benches --bin bare-relay -- 127.0.0.1:0
//! ```
//! prints `listening on ADDR` and serves until killed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Frames a connection's outbox holds before senders wait for its writer.
const OUTBOX_FRAMES_MAX: usize = 8192;
/// Largest frame the relay accepts (headers and body).
const FRAME_BYTES_MAX: usize = 16 * 1024 * 1024;

/// One subscription: the connection's outbox and the subscription id.
#[derive(Clone)]
struct Subscriber {
    conn: u64,
    id: Bytes,
    outbox: mpsc::Sender<Bytes>,
}

/// Subscribers by destination, and the next subscriber of each queue.
#[derive(Default)]
struct Registry {
    subscribers: BTreeMap<Bytes, Vec<Subscriber>>,
    next: BTreeMap<Bytes, usize>,
}

type Shared = Arc<Mutex<Registry>>;

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:61613".to_owned());
    if addr == "--help" || addr == "-h" {
        println!("usage: bare-relay [ADDR]   (default 127.0.0.1:61613; port 0 picks one)");
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve(addr))
}

async fn serve(addr: String) -> std::io::Result<()> {
    let listener = TcpListener::bind(&addr).await?;
    println!("listening on {}", listener.local_addr()?);
    let registry = Shared::default();
    let mut conn = 0u64;
    loop {
        let (stream, peer) = listener.accept().await?;
        conn += 1;
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection(conn, stream, peer, registry.clone()));
    }
}

async fn connection(conn: u64, stream: TcpStream, _peer: SocketAddr, registry: Shared) {
    let (mut reader, mut writer) = stream.into_split();
    let (outbox, mut inbox) = mpsc::channel::<Bytes>(OUTBOX_FRAMES_MAX);
    // The writer coalesces whatever is queued into one write.
    let write_task = tokio::spawn(async move {
        let mut batch = Vec::with_capacity(256);
        let mut buf = BytesMut::with_capacity(64 * 1024);
        while inbox.recv_many(&mut batch, 256).await > 0 {
            for frame in batch.drain(..) {
                buf.extend_from_slice(&frame);
            }
            if writer.write_all(&buf).await.is_err() {
                return;
            }
            buf.clear();
        }
    });
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut seq = 0u64;
    'read: loop {
        loop {
            match parse(&mut buf) {
                Ok(Some(frame)) => {
                    if !handle(conn, frame, &outbox, &registry, &mut seq).await {
                        break 'read;
                    }
                }
                Ok(None) => break,
                Err(()) => break 'read,
            }
        }
        if buf.len() > FRAME_BYTES_MAX {
            break;
        }
        match reader.read_buf(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    {
        let mut r = registry.lock().unwrap_or_else(|e| e.into_inner());
        for subs in r.subscribers.values_mut() {
            subs.retain(|s| s.conn != conn);
        }
        r.subscribers.retain(|_, subs| !subs.is_empty());
    }
    drop(outbox);
    let _ = write_task.await;
}

/// A parsed frame: command, headers (unescaped only as far as the relay needs) and body.
struct Parsed {
    command: Bytes,
    headers: Vec<(Bytes, Bytes)>,
    body: Bytes,
}

impl Parsed {
    fn header(&self, name: &[u8]) -> Option<&Bytes> {
        self.headers
            .iter()
            .find(|(k, _)| k.as_ref() == name)
            .map(|(_, v)| v)
    }
}

/// Takes one frame off the front of `buf`: `Ok(None)` when it is not complete yet.
fn parse(buf: &mut BytesMut) -> Result<Option<Parsed>, ()> {
    // Heart-beat newlines between frames.
    while buf.first().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        let _ = buf.split_to(1);
    }
    let Some(end) = buf.windows(2).position(|w| w == b"\n\n") else {
        return Ok(None);
    };
    let head = &buf[..end];
    let mut lines = head.split(|b| *b == b'\n');
    let command = lines.next().unwrap_or_default();
    let mut headers = Vec::new();
    let mut length = None;
    for line in lines {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(colon) = line.iter().position(|b| *b == b':') {
            let (k, v) = (&line[..colon], &line[colon + 1..]);
            if k == b"content-length" {
                length = std::str::from_utf8(v)
                    .ok()
                    .and_then(|s| s.parse::<usize>().ok());
            }
            headers.push((Bytes::copy_from_slice(k), Bytes::copy_from_slice(v)));
        }
    }
    let body_at = end + 2;
    let body_end = match length {
        Some(n) => {
            if n > FRAME_BYTES_MAX {
                return Err(());
            }
            if buf.len() < body_at + n + 1 {
                return Ok(None);
            }
            body_at + n
        }
        None => match buf[body_at..].iter().position(|b| *b == 0) {
            Some(p) => body_at + p,
            None => return Ok(None),
        },
    };
    let command = Bytes::copy_from_slice(command.strip_suffix(b"\r").unwrap_or(command));
    let mut frame = buf.split_to(body_end + 1);
    let body = frame
        .split_off(body_at)
        .freeze()
        .slice(..body_end - body_at);
    Ok(Some(Parsed {
        command,
        headers,
        body,
    }))
}

/// Acts on one frame; `false` ends the connection.
async fn handle(
    conn: u64,
    f: Parsed,
    outbox: &mpsc::Sender<Bytes>,
    registry: &Shared,
    seq: &mut u64,
) -> bool {
    let receipt = f.header(b"receipt").cloned();
    match f.command.as_ref() {
        b"CONNECT" | b"STOMP" => {
            let version = match f.header(b"accept-version") {
                Some(v) if v.split(|b| *b == b',').any(|x| x == b"1.2") => "1.2",
                Some(v) if v.split(|b| *b == b',').any(|x| x == b"1.1") => "1.1",
                _ => "1.0",
            };
            let frame = format!(
                "CONNECTED\nversion:{version}\nserver:bare-relay/0\nheart-beat:0,0\nsession:{conn}\n\n\0"
            );
            if outbox.send(Bytes::from(frame)).await.is_err() {
                return false;
            }
        }
        b"SUBSCRIBE" => {
            if let Some(dest) = f.header(b"destination") {
                let id = f.header(b"id").cloned().unwrap_or_else(|| dest.clone());
                let mut r = registry.lock().unwrap_or_else(|e| e.into_inner());
                r.subscribers
                    .entry(dest.clone())
                    .or_default()
                    .push(Subscriber {
                        conn,
                        id,
                        outbox: outbox.clone(),
                    });
            }
        }
        b"UNSUBSCRIBE" => {
            if let Some(id) = f.header(b"id") {
                let mut r = registry.lock().unwrap_or_else(|e| e.into_inner());
                for subs in r.subscribers.values_mut() {
                    subs.retain(|s| !(s.conn == conn && s.id == *id));
                }
            }
        }
        b"SEND" => {
            let Some(dest) = f.header(b"destination").cloned() else {
                return false;
            };
            *seq += 1;
            let targets: Vec<Subscriber> = {
                let mut r = registry.lock().unwrap_or_else(|e| e.into_inner());
                let Registry { subscribers, next } = &mut *r;
                match subscribers.get(&dest) {
                    None => Vec::new(),
                    Some(subs) if dest.starts_with(b"/queue/") => {
                        let n = next.entry(dest.clone()).or_insert(0);
                        let s = subs[*n % subs.len()].clone();
                        *n = n.wrapping_add(1);
                        vec![s]
                    }
                    Some(subs) => subs.clone(),
                }
            };
            // The headers every copy shares, then each copy's subscription.
            let mut shared = BytesMut::with_capacity(128 + dest.len());
            shared.extend_from_slice(b"MESSAGE\ndestination:");
            shared.extend_from_slice(&dest);
            shared.extend_from_slice(format!("\nmessage-id:{conn}-{seq}\n").as_bytes());
            for (k, v) in &f.headers {
                let k = k.as_ref();
                if k != b"destination" && k != b"content-length" && k != b"receipt" {
                    shared.extend_from_slice(k);
                    shared.extend_from_slice(b":");
                    shared.extend_from_slice(v);
                    shared.extend_from_slice(b"\n");
                }
            }
            let tail = format!("content-length:{}\n\n", f.body.len());
            for s in targets {
                let mut m = BytesMut::with_capacity(shared.len() + s.id.len() + 32 + f.body.len());
                m.extend_from_slice(&shared);
                m.extend_from_slice(b"subscription:");
                m.extend_from_slice(&s.id);
                m.extend_from_slice(b"\n");
                m.extend_from_slice(tail.as_bytes());
                m.extend_from_slice(&f.body);
                m.extend_from_slice(b"\0");
                // A subscriber whose connection is gone is simply skipped.
                let _ = s.outbox.send(m.freeze()).await;
            }
        }
        b"DISCONNECT" => {
            if let Some(r) = receipt {
                let mut m = BytesMut::from(&b"RECEIPT\nreceipt-id:"[..]);
                m.extend_from_slice(&r);
                m.extend_from_slice(b"\n\n\0");
                let _ = outbox.send(m.freeze()).await;
            }
            return false;
        }
        _ => {}
    }
    if let Some(r) = receipt {
        let mut m = BytesMut::from(&b"RECEIPT\nreceipt-id:"[..]);
        m.extend_from_slice(&r);
        m.extend_from_slice(b"\n\n\0");
        if outbox.send(m.freeze()).await.is_err() {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_parse_with_and_without_content_length_and_split_across_reads() {
        let mut buf = BytesMut::from(&b"\nSEND\ndestination:/topic/a\ncontent-length:3\n\na\0b\0SEND\ndestination:/queue/q\n\nhi\0"[..]);
        let f = parse(&mut buf).unwrap().unwrap();
        assert_eq!(f.command.as_ref(), b"SEND");
        assert_eq!(f.body.as_ref(), b"a\0b");
        let g = parse(&mut buf).unwrap().unwrap();
        assert_eq!(g.header(b"destination").unwrap().as_ref(), b"/queue/q");
        assert_eq!(g.body.as_ref(), b"hi");
        assert!(buf.is_empty());
        let mut part = BytesMut::from(&b"SEND\ndestination:/x\ncontent-length:5\n\nab"[..]);
        assert!(parse(&mut part).unwrap().is_none());
        part.extend_from_slice(b"cde\0");
        assert_eq!(parse(&mut part).unwrap().unwrap().body.as_ref(), b"abcde");
    }
}
