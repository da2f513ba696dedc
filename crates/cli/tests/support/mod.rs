//! Running the real `tito` binary from the integration tests: every run in a given directory,
//! with no `TITO_*` settings or `RUST_LOG` inherited from the caller's environment.
#![allow(dead_code)] // each test file uses its own part

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

/// The binary under test.
pub const TITO: &str = env!("CARGO_BIN_EXE_tito");

/// `tito args` in `dir`, not started yet.
pub fn command(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(TITO);
    cmd.args(args)
        .current_dir(dir)
        .env_remove("TITO_DB")
        .env_remove("TITO_STORE")
        .env_remove("TITO_CONFIG")
        .env_remove("TITO_ENCRYPTION_KEY_FILE")
        .env_remove("RUST_LOG");
    cmd
}

/// Run tito in `dir` with `args` to its end.
pub fn tito(dir: &Path, args: &[&str]) -> Output {
    command(dir, args).output().expect("run tito")
}

/// Its stdout, as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Its stderr, as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Run and require success; returns stdout.
pub fn ok(dir: &Path, args: &[&str]) -> String {
    let o = tito(dir, args);
    assert!(
        o.status.success(),
        "tito {args:?} failed ({:?}): {}",
        o.status.code(),
        stderr(&o)
    );
    stdout(&o)
}

/// The arguments of a restore from the store `backups` into `target`, then `more`.
pub fn restore<'a>(target: &'a str, more: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["--store", "backups", "restore", "--target", target];
    args.extend_from_slice(more);
    args
}

/// Start a continuous backup of `db` to the store `backups`, shipping every 100 ms, with
/// `more` arguments, in `dir` in the background, its output captured.
pub fn continuous_backup(dir: &Path, db: &str, more: &[&str]) -> Child {
    let mut args = vec![
        "--db",
        db,
        "--store",
        "backups",
        "backup",
        "--continuous",
        "--interval",
        "100ms",
    ];
    args.extend_from_slice(more);
    command(dir, &args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tito")
}

/// A local address no one listens on now (for `--metrics`).
#[allow(dead_code)]
pub fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    format!("127.0.0.1:{}", l.local_addr().expect("addr").port())
}

/// `GET /metrics` from `addr` until `done` says the body is what is awaited (or about 10 s
/// passed); the last response, status line included.
#[allow(dead_code)]
pub fn scrape(addr: &str, done: impl Fn(&str) -> bool) -> String {
    use std::io::{Read, Write};
    let mut body = String::new();
    for _ in 0..100 {
        std::thread::sleep(std::time::Duration::from_millis(100));
        let Ok(mut s) = std::net::TcpStream::connect(addr) else {
            continue;
        };
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("write");
        body.clear();
        s.read_to_string(&mut body).expect("read");
        if done(&body) {
            break;
        }
    }
    body
}

/// The value of metric `name` in a Prometheus text `body`.
#[allow(dead_code)]
pub fn metric(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Stop a background tito with SIGTERM, as a service manager would: it must exit 0.
/// Returns what it wrote to stderr.
pub fn terminate(child: Child) -> String {
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let out = child.wait_with_output().expect("wait");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The endpoints of the etcd test cluster: `TITO_TEST_ETCD`, or what `scripts/start-etcd.sh`
/// wrote into `target/etcd.env`.
pub fn etcd_endpoints() -> String {
    if let Ok(v) = std::env::var("TITO_TEST_ETCD") {
        return v;
    }
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/etcd.env");
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("TITO_TEST_ETCD="))
        .map(|v| v.trim().trim_matches('\'').trim_matches('"').to_string())
        .unwrap_or_else(|| {
            panic!(
                "no etcd test cluster: run scripts/start-etcd.sh (it writes target/etcd.env) \
                 or set TITO_TEST_ETCD=host:port,host:port,..."
            )
        })
}

/// A private one-member etcd cluster on free ports with its own data directory, for
/// tests that need a whole cluster to themselves (a restore target must hold no keys).
/// Killed when dropped.
pub struct PrivateEtcd {
    /// Its client endpoint, `127.0.0.1:port`.
    pub endpoint: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl PrivateEtcd {
    /// Start one and wait until it answers.
    pub fn start() -> PrivateEtcd {
        let free = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port()
        };
        let (client, peer) = (free(), free());
        let dir = tempfile::tempdir().expect("tempdir");
        let endpoint = format!("127.0.0.1:{client}");
        let log = std::fs::File::create(dir.path().join("etcd.log")).expect("log");
        let child = Command::new("etcd")
            .args([
                "--name",
                "private",
                "--data-dir",
                dir.path().join("data").to_str().expect("utf-8"),
                "--listen-client-urls",
                &format!("http://{endpoint}"),
                "--advertise-client-urls",
                &format!("http://{endpoint}"),
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{peer}"),
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{peer}"),
                "--initial-cluster",
                &format!("private=http://127.0.0.1:{peer}"),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("etcd (scripts/start-etcd.sh installs it)");
        let etcd = PrivateEtcd {
            endpoint,
            child,
            _dir: dir,
        };
        for _ in 0..100 {
            let health = Command::new("etcdctl")
                .env("ETCDCTL_API", "3")
                .arg(format!("--endpoints={}", etcd.endpoint))
                .args(["endpoint", "health"])
                .output();
            if health.is_ok_and(|o| o.status.success()) {
                return etcd;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("private etcd at {} did not become healthy", etcd.endpoint);
    }
}

impl Drop for PrivateEtcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
