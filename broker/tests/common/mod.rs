//! Helpers shared by the interop tests (`tests/interop_*.rs`).
//!
//! - [`Broker`]: runs the real `stampede-broker` binary on an ephemeral loopback port, waits
//!   for its ready file, sends it SIGHUP and waits for its log (`hangup`, `wait_for_log`),
//!   and kills it when dropped.
//! - [`TempDir`]: a unique directory under the system temp dir, removed when dropped.
//! - [`run_bounded`]: runs a child process with a hard time limit, capturing its output.
//! - `require_*`: fail (never skip) when a Debian client package is missing.
//! - [`run_client_case`] and [`interop_cases!`]: one `#[test]` per case of the Python/Ruby
//!   interop scripts in `tests/interop/`.
//!
//! Set `STAMPEDE_KEEP_TEST_DIRS=1` to keep the temp dirs (broker config, ready file, log).

// Real processes in real time: deadlines on the wall clock, unique names from the system
// time, and threads that drain child processes' output.
#![allow(clippy::disallowed_methods)]
// Each test crate includes this module and uses a different part of it.
#![allow(dead_code, unused_macros, unused_imports)]

use std::fs;
use std::io::{ErrorKind, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What to tell whoever runs the tests on a machine without the client packages.
pub(crate) const INSTALL_HINT: &str = "run `scripts/install-test-deps` (as root; it apt-installs \
     python3-stomp, ruby-stomp, mcollective and mcollective-client) and try again";

/// How long the broker may take to write its ready file. Generous: the binary is already
/// built, but a loaded 2-core CI machine can be slow to schedule it.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Broker config with users for the auth cases and the MCollective test: `alice`/`secret`
/// (group `app`) and `mcollective`/`marionette` (group `everyone`), both allowed everything.
pub(crate) const AUTH_CONFIG: &str = r#"
[server]
listen = ["127.0.0.1:0"]

[core]
broker_name = "interop"

[[security.users]]
name = "alice"
password = "secret"
groups = ["app"]

[[security.users]]
name = "mcollective"
password = "marionette"
groups = ["everyone"]

[[security.authorization]]
queue = ">"
read = ["app", "everyone"]
write = ["app", "everyone"]
admin = ["app", "everyone"]

[[security.authorization]]
topic = ">"
read = ["app", "everyone"]
write = ["app", "everyone"]
admin = ["app", "everyone"]

[[security.authorization]]
queue = "secret.>"
read = ["admins"]
write = ["admins"]
admin = ["admins"]
"#;

/// Broker config for the `authz_denied` cases: `alice` may use `/queue/app.>` and all topics,
/// and no entry covers `/queue/forbidden.>` (authorization is the union of matching entries,
/// so the denied queue must not match any entry that grants `app`).
pub(crate) const DENY_CONFIG: &str = r#"
[server]
listen = ["127.0.0.1:0"]

[core]
broker_name = "interop"

[[security.users]]
name = "alice"
password = "secret"
groups = ["app"]

[[security.authorization]]
queue = "app.>"
read = ["app"]
write = ["app"]
admin = ["app"]

[[security.authorization]]
topic = ">"
read = ["app"]
write = ["app"]
admin = ["app"]
"#;

// ------------------------------------------------------------------------------ TempDir

/// A fresh directory `stampede-<label>-<pid>-<n>-<nanos>` under the system temp dir.
pub(crate) struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub(crate) fn new(label: &str) -> TempDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let base = std::env::temp_dir();
        for _ in 0..100 {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            let path = base.join(format!(
                "stampede-{label}-{}-{n}-{nanos:08x}",
                std::process::id()
            ));
            match fs::create_dir(&path) {
                Ok(()) => return TempDir { path },
                Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                Err(e) => panic!("cannot create temp dir {}: {e}", path.display()),
            }
        }
        panic!("cannot find a free temp dir name under {}", base.display());
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("STAMPEDE_KEEP_TEST_DIRS").is_some() {
            eprintln!("kept {}", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

// ------------------------------------------------------------------------------- Broker

/// A running `stampede-broker`, killed (and reaped) on drop.
pub(crate) struct Broker {
    child: Child,
    addr: Option<SocketAddr>,
    log: PathBuf,
    // Last, so the directory outlives the process that writes into it.
    dir: TempDir,
}

impl Broker {
    /// Starts the broker with `--listen 127.0.0.1:0` and no config file.
    pub(crate) fn start(label: &str) -> Broker {
        Broker::launch(label, None)
    }

    /// Starts the broker with `--config` pointing at `config_toml` (written to a temp file),
    /// which must itself listen on `127.0.0.1:0`.
    pub(crate) fn start_with_config(label: &str, config_toml: &str) -> Broker {
        Broker::launch(label, Some(config_toml))
    }

    fn launch(label: &str, config_toml: Option<&str>) -> Broker {
        let bin = env!("CARGO_BIN_EXE_stampede-broker");
        let dir = TempDir::new(label);
        let ready = dir.path().join("ready");
        let log = dir.path().join("broker.log");
        let log_file = fs::File::create(&log)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", log.display()));
        let log_file_too = log_file
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot clone the log file handle: {e}"));
        let mut cmd = Command::new(bin);
        cmd.arg("--ready-file").arg(&ready);
        match config_toml {
            Some(text) => {
                let path = dir.path().join("broker.toml");
                fs::write(&path, text)
                    .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
                cmd.arg("--config").arg(path);
            }
            None => {
                cmd.args(["--listen", "127.0.0.1:0"]);
            }
        }
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "info");
        }
        cmd.stdin(Stdio::null())
            .stdout(log_file)
            .stderr(log_file_too);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
        let mut broker = Broker {
            child,
            addr: None,
            log,
            dir,
        };
        // From here on a panic drops `broker`, which kills the process.
        match broker.wait_ready(&ready) {
            Ok(addr) => broker.addr = Some(addr),
            Err(why) => panic!(
                "stampede-broker did not become ready: {why}\n--- broker log ---\n{}",
                broker.log_tail(80)
            ),
        }
        broker
    }

    fn wait_ready(&mut self, ready: &Path) -> Result<SocketAddr, String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self
                .child
                .try_wait()
                .map_err(|e| format!("cannot poll the broker process: {e}"))?
            {
                return Err(format!(
                    "it exited with {status} before writing its ready file"
                ));
            }
            // The broker renames a complete file into place, so any content is final.
            if let Ok(text) = fs::read_to_string(ready) {
                let addrs: Vec<SocketAddr> = text
                    .lines()
                    .filter_map(|line| line.trim().parse().ok())
                    .collect();
                if let Some(addr) = addrs
                    .iter()
                    .find(|a| a.ip().is_loopback())
                    .or(addrs.first())
                {
                    return Ok(*addr);
                }
                if !text.trim().is_empty() {
                    return Err(format!("ready file has no host:port line: {text:?}"));
                }
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "no ready file at {} after {READY_TIMEOUT:?}",
                    ready.display()
                ));
            }
            thread::sleep(Duration::from_millis(25));
        }
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr.expect("the broker is ready once constructed")
    }

    pub(crate) fn host(&self) -> String {
        self.addr().ip().to_string()
    }

    pub(crate) fn port(&self) -> String {
        self.addr().port().to_string()
    }

    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The broker's process id (for signals).
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends the broker SIGHUP (reload its configuration).
    pub(crate) fn hangup(&self) {
        let status = Command::new("kill")
            .args(["-HUP", &self.pid().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits (up to 10 s) until the broker's log has `needle` `count` times.
    pub(crate) fn wait_for_log(&self, needle: &str, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.log_tail(10_000);
            if log.matches(needle).count() >= count {
                return;
            }
            assert!(
                Instant::now() <= deadline,
                "no {needle:?} in the log:\n{log}"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The last `lines` lines the broker wrote to stdout/stderr.
    pub(crate) fn log_tail(&self, lines: usize) -> String {
        let text = fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_else(|e| format!("<cannot read {}: {e}>", self.log.display()));
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ------------------------------------------------------------------------ child processes

/// The outcome of [`run_bounded`].
pub(crate) struct Finished {
    pub(crate) what: String,
    pub(crate) status: Option<ExitStatus>,
    pub(crate) timed_out: bool,
    pub(crate) elapsed: Duration,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Finished {
    pub(crate) fn success(&self) -> bool {
        !self.timed_out && self.status.is_some_and(|s| s.success())
    }

    fn describe(&self) -> String {
        if self.timed_out {
            format!(
                "timed out after {:.1}s and was stopped",
                self.elapsed.as_secs_f64()
            )
        } else {
            match self.status {
                Some(status) => format!("{status} after {:.1}s", self.elapsed.as_secs_f64()),
                None => "ended with an unknown status".to_owned(),
            }
        }
    }
}

/// Runs `cmd` to completion with stdin closed and stdout/stderr captured. At `timeout` it is
/// sent SIGTERM (so shell scripts run their EXIT traps and stop what they started), and
/// SIGKILL 15 s later if it is still there.
pub(crate) fn run_bounded(what: &str, mut cmd: Command, timeout: Duration) -> Finished {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}"));
    let stdout = collect(child.stdout.take());
    let stderr = collect(child.stderr.take());
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) => {}
            Err(e) => panic!("{what}: cannot poll the child process: {e}"),
        }
        if start.elapsed() >= timeout {
            timed_out = true;
            terminate(&mut child);
            break child.wait().ok();
        }
        thread::sleep(Duration::from_millis(50));
    };
    Finished {
        what: what.to_owned(),
        status,
        timed_out,
        elapsed: start.elapsed(),
        stdout: stdout.finish(),
        stderr: stderr.finish(),
    }
}

/// Reads a pipe to its end on a thread of its own.
struct Collector(mpsc::Receiver<Vec<u8>>);

impl Collector {
    fn finish(self) -> String {
        // A leftover grandchild could hold the pipe open: do not wait for it forever.
        match self.0.recv_timeout(Duration::from_secs(10)) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(_) => {
                "<output unavailable: the pipe is still held open by another process>".to_owned()
            }
        }
    }
}

fn collect<R: Read + Send + 'static>(pipe: Option<R>) -> Collector {
    let (tx, rx) = mpsc::channel();
    if let Some(mut pipe) = pipe {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            let _ = tx.send(bytes);
        });
    } else {
        let _ = tx.send(Vec::new());
    }
    Collector(rx)
}

fn terminate(child: &mut Child) {
    let _ = Command::new("/bin/sh")
        .arg("-c")
        .arg(format!("kill -TERM {}", child.id()))
        .status();
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
}

/// Panics with the script's output and the broker's log unless `run` succeeded.
pub(crate) fn assert_passed(run: &Finished, broker: &Broker) {
    if run.success() {
        eprintln!("{}: passed in {:.1}s", run.what, run.elapsed.as_secs_f64());
        return;
    }
    panic!(
        "{} failed: {}\n--- stdout ---\n{}\n--- stderr ---\n{}\n--- broker log (last 60 lines) ---\n{}",
        run.what,
        run.describe(),
        run.stdout.trim_end(),
        run.stderr.trim_end(),
        broker.log_tail(60)
    );
}

// ------------------------------------------------------------------------- prerequisites

fn probe(program: &str, args: &[&str]) -> Result<(), String> {
    match Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
    {
        Ok(out) if out.status.success() => Ok(()),
        Ok(out) => Err(format!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Err(format!("cannot run {program}: {e}")),
    }
}

fn require(
    what: &str,
    cell: &'static OnceLock<Result<(), String>>,
    check: fn() -> Result<(), String>,
) {
    if let Err(why) = cell.get_or_init(check) {
        panic!("{what} is not usable on this machine: {why}\n{INSTALL_HINT}");
    }
}

/// Debian's stomp.py (`python3-stomp`), seen by Debian's interpreter.
pub(crate) fn require_python_stomp() {
    static CHECK: OnceLock<Result<(), String>> = OnceLock::new();
    require(
        "python3-stomp (stomp.py for /usr/bin/python3)",
        &CHECK,
        || probe("/usr/bin/python3", &["-c", "import stomp"]),
    );
}

/// Debian's ruby stomp gem (`ruby-stomp`).
pub(crate) fn require_ruby_stomp() {
    static CHECK: OnceLock<Result<(), String>> = OnceLock::new();
    require(
        "ruby-stomp (the stomp gem for /usr/bin/ruby)",
        &CHECK,
        || probe("/usr/bin/ruby", &["-e", "require 'stomp'"]),
    );
}

/// Debian's `mcollective` (mcollectived) and `mcollective-client` (mco).
pub(crate) fn require_mcollective() {
    static CHECK: OnceLock<Result<(), String>> = OnceLock::new();
    require("MCollective (mcollectived and mco)", &CHECK, || {
        for path in ["/usr/sbin/mcollectived", "/usr/bin/mco"] {
            if !Path::new(path).exists() {
                return Err(format!("{path} does not exist"));
            }
        }
        probe("/usr/bin/ruby", &["-e", "require 'mcollective'"])
    });
}

// --------------------------------------------------------------------- client case tests

/// Which STOMP client library an interop script drives.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Client {
    /// `tests/interop/stomp_py_cases.py`, stomp.py 8.0.0.
    Python,
    /// `tests/interop/stomp_rb_cases.rb`, the ruby stomp gem 1.4.10.
    Ruby,
}

impl Client {
    fn interpreter(self) -> &'static str {
        match self {
            Client::Python => "/usr/bin/python3",
            Client::Ruby => "/usr/bin/ruby",
        }
    }

    fn script(self) -> &'static str {
        match self {
            Client::Python => concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/interop/stomp_py_cases.py"
            ),
            Client::Ruby => concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/interop/stomp_rb_cases.rb"
            ),
        }
    }

    fn label(self) -> &'static str {
        match self {
            Client::Python => "py",
            Client::Ruby => "rb",
        }
    }

    fn require(self) {
        match self {
            Client::Python => require_python_stomp(),
            Client::Ruby => require_ruby_stomp(),
        }
    }
}

/// The script's own limit for one case (its watchdog), and ours on top of it.
const CASE_WATCHDOG_SECS: u64 = 90;
const CASE_TIMEOUT: Duration = Duration::from_secs(CASE_WATCHDOG_SECS + 30);

/// Runs one case of `client`'s interop script against a fresh broker and asserts it passed.
///
/// `auth_failure` runs against [`AUTH_CONFIG`] and `authz_denied` against [`DENY_CONFIG`],
/// both as alice/secret; every other case runs against a broker without a config file.
pub(crate) fn run_client_case(client: Client, case: &str) {
    client.require();
    let label = format!("{}-{}", client.label(), case.replace('_', "-"));
    let (broker, login, passcode) = match case {
        "auth_failure" => (
            Broker::start_with_config(&label, AUTH_CONFIG),
            "alice",
            "secret",
        ),
        "authz_denied" => (
            Broker::start_with_config(&label, DENY_CONFIG),
            "alice",
            "secret",
        ),
        _ => (Broker::start(&label), "interop", "interop"),
    };
    let mut cmd = Command::new(client.interpreter());
    cmd.arg(client.script())
        .args(["--host", &broker.host(), "--port", &broker.port()])
        .args(["--login", login, "--passcode", passcode])
        .args(["--case", case, "--timeout", &CASE_WATCHDOG_SECS.to_string()]);
    let what = format!("{} case {case}", client.label());
    let run = run_bounded(&what, cmd, CASE_TIMEOUT);
    assert_passed(&run, &broker);
}

/// Asserts that the script's `--list` names exactly the cases the test crate covers, so a
/// case added to a script cannot go untested.
pub(crate) fn assert_case_list(client: Client, tested: &[&str]) {
    client.require();
    let mut cmd = Command::new(client.interpreter());
    cmd.arg(client.script()).arg("--list");
    let run = run_bounded(
        &format!("{} --list", client.label()),
        cmd,
        Duration::from_secs(60),
    );
    assert!(
        run.success(),
        "{} --list failed: {}\n{}{}",
        client.script(),
        run.describe(),
        run.stdout,
        run.stderr
    );
    let mut listed: Vec<&str> = run
        .stdout
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    let mut tested = tested.to_vec();
    listed.sort_unstable();
    tested.sort_unstable();
    assert_eq!(
        listed,
        tested,
        "the cases in {} and the #[test]s in the Rust test crate differ",
        client.script()
    );
}

/// `interop_cases!(Client::Python; queue_competing, topic_fanout, ...)` defines one
/// `#[test]` per script case (so a failure names the case) plus a test that the list matches
/// the script's `--list`.
macro_rules! interop_cases {
    ($client:expr; $($case:ident),+ $(,)?) => {
        const CASES: &[&str] = &[$(stringify!($case)),+];

        $(
            #[test]
            fn $case() {
                common::run_client_case($client, stringify!($case));
            }
        )+

        #[test]
        fn every_script_case_has_a_test() {
            common::assert_case_list($client, CASES);
        }
    };
}
pub(crate) use interop_cases;
