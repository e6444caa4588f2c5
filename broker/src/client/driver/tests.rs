//! Tests of the client: handle and driver task over in-memory pipes.

use std::collections::BTreeMap;
use std::io;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::task::heartbeat_send_period;
use super::*;
use crate::client::servers::ServerAddr;
use crate::net::{BoxFuture, BoxStream, Listener, Net};
use crate::proto::{Command, Decoder, Frame, Item, encode};

/// A network whose connections are in-memory pipes of `capacity` bytes; the far end
/// of each goes to the test.
struct PipeNet {
    capacity: usize,
    far_ends: mpsc::UnboundedSender<DuplexStream>,
    /// Writes the client made (calls that wrote bytes), on every connection.
    writes: Arc<std::sync::atomic::AtomicUsize>,
}

/// The client's end of a pipe, counting its writes.
struct Counted {
    pipe: DuplexStream,
    writes: Arc<std::sync::atomic::AtomicUsize>,
}

impl tokio::io::AsyncRead for Counted {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.pipe).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Counted {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.pipe).poll_write(cx, buf);
        if matches!(r, std::task::Poll::Ready(Ok(n)) if n > 0) {
            self.writes
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        r
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.pipe).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.pipe).poll_shutdown(cx)
    }
}

impl Net for PipeNet {
    fn bind<'a>(&'a self, _: &'a str) -> BoxFuture<'a, io::Result<Box<dyn Listener>>> {
        Box::pin(async { Err(io::Error::other("PipeNet cannot listen")) })
    }

    fn connect<'a>(&'a self, _: &'a str) -> BoxFuture<'a, io::Result<BoxStream>> {
        let (near, far) = tokio::io::duplex(self.capacity);
        let sent = self.far_ends.send(far);
        let near = Counted {
            pipe: near,
            writes: self.writes.clone(),
        };
        Box::pin(async move {
            sent.map_err(|_| io::Error::other("test over"))?;
            Ok(Box::new(near) as BoxStream)
        })
    }
}

/// The broker end of a pipe.
struct Far {
    pipe: DuplexStream,
    buf: BytesMut,
    decoder: Decoder,
}

impl Far {
    fn new(pipe: DuplexStream) -> Far {
        Far {
            pipe,
            buf: BytesMut::new(),
            decoder: Decoder::new(FrameLimits::default()),
        }
    }

    async fn frame(&mut self) -> Option<Frame> {
        loop {
            match self.decoder.decode(&mut self.buf).expect("valid STOMP") {
                Some(Item::Frame(f)) => return Some(f),
                Some(Item::HeartBeat) => {}
                None => {
                    if self.pipe.read_buf(&mut self.buf).await.ok()? == 0 {
                        return None;
                    }
                }
            }
        }
    }

    async fn write(&mut self, f: Frame) {
        let mut out = BytesMut::new();
        encode(&f, Version::V1_2, &mut out);
        self.pipe.write_all(&out).await.unwrap();
    }

    async fn handshake(&mut self) {
        let connect = self.frame().await.expect("CONNECT");
        assert_eq!(connect.command, Command::Connect);
        self.decoder.set_version(Version::V1_2);
        self.write(Frame::new(Command::Connected).header("version", "1.2"))
            .await;
    }
}

fn pipe_client(capacity: usize) -> (Client, ClientStreams, mpsc::UnboundedReceiver<DuplexStream>) {
    pipe_client_with(capacity, |_| {})
}

fn pipe_client_with(
    capacity: usize,
    adjust: impl FnOnce(&mut ClientConfig),
) -> (Client, ClientStreams, mpsc::UnboundedReceiver<DuplexStream>) {
    pipe_client_counting(capacity, Arc::default(), adjust)
}

/// A client over pipes whose writes (calls that wrote bytes) are counted in `writes`.
fn pipe_client_counting(
    capacity: usize,
    writes: Arc<std::sync::atomic::AtomicUsize>,
    adjust: impl FnOnce(&mut ClientConfig),
) -> (Client, ClientStreams, mpsc::UnboundedReceiver<DuplexStream>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let servers = ServerList::single(ServerAddr::new("pipe", 1));
    let mut cfg = ClientConfig::new(servers, PolicyKind::StompGem);
    cfg.heart_beat_ms = (0, 0);
    adjust(&mut cfg);
    let net = Arc::new(PipeNet {
        capacity,
        far_ends: tx,
        writes,
    });
    let (client, streams) = Client::start(net, cfg);
    (client, streams, rx)
}

/// Frames still in the output buffer (not, or only partly, written) when the connection
/// dies are written again on the next connection, each exactly once and whole; none is
/// reported indeterminate.
#[tokio::test(start_paused = true)]
async fn unwritten_sends_are_requeued_not_indeterminate() {
    let (client, mut streams, mut pipes) = pipe_client(256);
    let mut far = Far::new(pipes.recv().await.unwrap());
    far.handshake().await;
    let body = |i: u8| Bytes::from(vec![b'a' + i; 1000]);
    let mut receipted = Vec::new();
    for i in 0..3 {
        let c = client.clone();
        let b = body(i);
        receipted.push(tokio::spawn(async move {
            c.send_with_receipt("/queue/q", Headers::new(), b).await
        }));
    }
    let c = client.clone();
    let plain = tokio::spawn(async move { c.send("/queue/q", Headers::new(), body(3)).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The pipe holds the first 256 bytes of the first SEND; the rest waits in the
    // client. Take them and cut the connection.
    let mut partial = BytesMut::with_capacity(4096);
    far.pipe.read_buf(&mut partial).await.unwrap();
    assert_eq!(partial.len(), 256);
    assert!(partial.starts_with(b"SEND\n"));
    let mut d = Decoder::new(FrameLimits::default());
    d.set_version(Version::V1_2);
    assert_eq!(d.decode(&mut partial), Ok(None), "an incomplete frame");
    drop(far);
    assert!(receipted.iter().all(|t| !t.is_finished()) && !plain.is_finished());

    let mut far = Far::new(pipes.recv().await.unwrap());
    far.handshake().await;
    for i in 0..4u8 {
        let f = far.frame().await.expect("a SEND");
        assert_eq!(f.command, Command::Send);
        assert_eq!(f.body, body(i), "SEND {i} whole and in order");
        if let Some(r) = f.headers.get("receipt") {
            let r = r.to_owned();
            far.write(Frame::new(Command::Receipt).header("receipt-id", r))
                .await;
        }
    }
    for t in receipted {
        assert_eq!(t.await.unwrap(), SendOutcome::Confirmed);
    }
    assert_eq!(plain.await.unwrap(), Ok(()));
    // Nothing was written twice.
    assert!(
        tokio::time::timeout(Duration::from_millis(100), far.frame())
            .await
            .is_err()
    );
    let mut kinds = Vec::new();
    while let Ok(e) = streams.events.try_recv() {
        kinds.push(e);
    }
    assert!(
        kinds
            .iter()
            .filter(|e| matches!(e, ClientEvent::Disconnected { .. }))
            .count()
            == 1,
        "{kinds:?}"
    );
    drop(far);
}

/// SENDs queued while the driver was busy leave in one write, in order, and each is
/// reported written.
#[tokio::test(start_paused = true)]
async fn queued_sends_share_a_write() {
    let writes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (client, _streams, mut pipes) = pipe_client_counting(64 * 1024, writes.clone(), |_| {});
    let mut far = Far::new(pipes.recv().await.unwrap());
    far.handshake().await;
    // Let the driver see CONNECTED and go idle.
    tokio::time::sleep(Duration::from_millis(10)).await;
    let before = writes.load(std::sync::atomic::Ordering::Relaxed);
    let mut pending = Vec::new();
    for i in 0..10u8 {
        let body = Bytes::from(vec![b'a' + i; 100]);
        pending.push(
            client
                .send_queued("/queue/q", Headers::new(), body)
                .await
                .unwrap(),
        );
    }
    for p in pending {
        assert_eq!(p.await, Ok(()));
    }
    let after = writes.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(after - before, 1, "ten queued SENDs in one write");
    for i in 0..10u8 {
        let f = far.frame().await.expect("a SEND");
        assert_eq!(
            f.body,
            Bytes::from(vec![b'a' + i; 100]),
            "SEND {i} in order"
        );
    }
}

/// A send whose caller gave up before it could be written is never written.
#[tokio::test(start_paused = true)]
async fn a_cancelled_send_is_never_written() {
    let (client, _streams, mut pipes) = pipe_client(64 * 1024);
    // Connected at TCP level, but the broker has not answered CONNECT yet.
    let mut far = Far::new(pipes.recv().await.unwrap());
    let c = client.clone();
    let cancelled =
        tokio::spawn(async move { c.send("/queue/q", Headers::new(), "cancelled").await });
    tokio::time::sleep(Duration::from_millis(10)).await;
    cancelled.abort();
    assert!(cancelled.await.unwrap_err().is_cancelled());
    let c = client.clone();
    let kept = tokio::spawn(async move { c.send("/queue/q", Headers::new(), "kept").await });
    tokio::time::sleep(Duration::from_millis(10)).await;
    far.handshake().await;
    let f = far.frame().await.expect("a SEND");
    assert_eq!(&f.body[..], b"kept");
    assert_eq!(kept.await.unwrap(), Ok(()));
    client.disconnect().await;
    let f = far.frame().await.expect("DISCONNECT");
    assert_eq!(f.command, Command::Disconnect);
}

/// At most `pending_sends_max` receipts are outstanding; further receipted sends wait
/// for answers.
#[tokio::test(start_paused = true)]
async fn outstanding_receipts_are_bounded() {
    let (client, _streams, mut pipes) = pipe_client_with(64 * 1024, |c| c.pending_sends_max = 2);
    let mut far = Far::new(pipes.recv().await.unwrap());
    far.handshake().await;
    let mut sends = Vec::new();
    for i in 0..3 {
        let c = client.clone();
        sends.push(tokio::spawn(async move {
            c.send_with_receipt("/queue/q", Headers::new(), format!("{i}"))
                .await
        }));
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let first = far.frame().await.unwrap();
    let second = far.frame().await.unwrap();
    assert_eq!((&first.body[..], &second.body[..]), (&b"0"[..], &b"1"[..]));
    assert!(
        tokio::time::timeout(Duration::from_secs(1), far.frame())
            .await
            .is_err(),
        "the third waits while two receipts are outstanding"
    );
    let r = first.headers.get("receipt").unwrap().to_owned();
    far.write(Frame::new(Command::Receipt).header("receipt-id", r))
        .await;
    let third = far.frame().await.unwrap();
    assert_eq!(&third.body[..], b"2");
    for f in [second, third] {
        let r = f.headers.get("receipt").unwrap().to_owned();
        far.write(Frame::new(Command::Receipt).header("receipt-id", r))
            .await;
    }
    for s in sends {
        assert_eq!(s.await.unwrap(), SendOutcome::Confirmed);
    }
}

#[test]
fn heartbeats_go_out_a_little_early() {
    assert_eq!(
        heartbeat_send_period(Duration::from_millis(30_500)),
        Duration::from_millis(27_450)
    );
    assert_eq!(
        heartbeat_send_period(Duration::from_millis(1)),
        Duration::from_millis(1)
    );
}

#[test]
fn mcollective_config_maps_to_the_client_config() {
    let text = "\
connector = activemq
plugin.activemq.pool.size = 2
plugin.activemq.pool.1.host = b1
plugin.activemq.pool.1.user = mco
plugin.activemq.pool.1.password = pw
plugin.activemq.pool.2.host = b2
plugin.activemq.heartbeat_interval = 30
";
    let mco = McoClientConfig::from_text(text, &BTreeMap::new()).unwrap();
    let c = ClientConfig::from_mcollective(&mco);
    assert_eq!(c.policy, PolicyKind::StompGem);
    assert_eq!(c.reconnect, mco.reconnect);
    assert_eq!(c.heart_beat_ms, (30_500, 29_500));
    assert_eq!(c.accept_version.as_deref(), Some(mco.accept_version()));
    assert!(c.accept_version.as_deref().unwrap().starts_with("1.1"));
    assert_eq!(c.host.as_deref(), Some("mcollective"));
    assert!(!c.heartbeat_read_timeout);
    assert_eq!(c.servers.get(0).unwrap().login.as_deref(), Some("mco"));
    let legacy = McoClientConfig::from_text(
        "connector = activemq\nplugin.activemq.pool.size = 1\nplugin.activemq.pool.1.host = b1\n",
        &BTreeMap::new(),
    )
    .unwrap();
    let c = ClientConfig::from_mcollective(&legacy);
    assert_eq!(
        (c.accept_version, c.host, c.heart_beat_ms),
        (None, None, (0, 0))
    );
}

/// Subscriptions queued without waiting for the driver are written in order with the
/// frames queued around them, and their ids come once the driver has made them.
#[tokio::test(start_paused = true)]
async fn queued_subscribes_and_unsubscribes_keep_their_order() {
    let (client, _streams, mut pipes) = pipe_client(64 * 1024);
    let mut far = Far::new(pipes.recv().await.unwrap());
    far.handshake().await;
    let sub = client
        .subscribe_queued(SubscribeSpec::new("/queue/replies.1"))
        .await
        .unwrap();
    let send = client
        .send_queued("/queue/requests", Headers::new(), Bytes::from_static(b"r1"))
        .await
        .unwrap();
    let id = sub.await.unwrap();
    assert_eq!(send.await, Ok(()));
    client.unsubscribe_queued(id).await.unwrap();
    let commands: Vec<(Command, Option<String>)> = [
        far.frame().await.unwrap(),
        far.frame().await.unwrap(),
        far.frame().await.unwrap(),
    ]
    .into_iter()
    .map(|f| (f.command, f.headers.get("destination").map(str::to_owned)))
    .collect();
    assert_eq!(
        commands,
        [
            (Command::Subscribe, Some("/queue/replies.1".to_owned())),
            (Command::Send, Some("/queue/requests".to_owned())),
            (Command::Unsubscribe, None),
        ]
    );
}
