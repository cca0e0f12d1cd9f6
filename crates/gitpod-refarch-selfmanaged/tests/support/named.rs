//! A private BIND 9 (`named -g -n 1`) on 127.0.0.1 and a random port, in a temporary
//! directory removed on drop, primary for one or more zones that accept RFC 2136
//! updates signed with a TSIG key:
//!
//! - key `gitpod-refarch.` (hmac-sha256, a fresh random secret) is granted
//!   `update-policy { grant gitpod-refarch. zonesub ANY; }` and `allow-transfer` on
//!   every zone (no transfer with [`start_without_transfer`]),
//! - key `other-key.` (valid, known to the server) is granted nothing,
//! - each zone has its SOA, two NS (`ns1`/`ns2`) with glue, and the extra records given.
//!
//! Needs `named`, `named-checkconf` and `named-checkzone`:
//! `apt-get install -y --no-install-recommends bind9 bind9-utils` (a test fails, it does
//! not skip, without them). `named` runs as the current user (root in CI).

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use gitpod_refarch::Secret;

/// How to install what this needs.
pub const APT: &str = "apt-get install -y --no-install-recommends bind9 bind9-utils";

/// The key the zones grant.
pub const KEY: &str = "gitpod-refarch.";
/// A key the server knows but no zone grants.
pub const OTHER_KEY: &str = "other-key.";

/// A running `named` and its directory.
pub struct Named {
    child: Child,
    dir: PathBuf,
    /// Its TCP and UDP port on 127.0.0.1.
    pub port: u16,
    /// The secret of [`KEY`] (base64).
    pub secret: Secret,
    /// The secret of [`OTHER_KEY`] (base64).
    pub other_secret: Secret,
}

impl Drop for Named {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Named {
    /// `127.0.0.1:PORT`.
    pub fn server(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The directory holding the zone files and their journals.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// A port free for both UDP and TCP on 127.0.0.1 (nobody listens on it afterwards).
fn free_port() -> u16 {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
        let port = udp.local_addr().expect("local addr").port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free for both UDP and TCP");
}

/// The path of a bind9 tool, or a panic naming the package to install.
pub fn tool(name: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/sbin", "/bin"] {
        let path = Path::new(dir).join(name);
        if path.exists() {
            return path;
        }
    }
    if Command::new(name).arg("-v").output().is_ok() {
        return PathBuf::from(name);
    }
    panic!("`{name}` (bind9) is not installed; install it with: {APT}");
}

fn zone_file(origin: &str, body: &str) -> String {
    format!(
        "$ORIGIN {origin}.\n$TTL 300\n\
         @ IN SOA ns1.{origin}. hostmaster.{origin}. 1 3600 600 86400 300\n\
         @ IN NS ns1.{origin}.\n\
         @ IN NS ns2.{origin}.\n\
         ns1 IN A 127.0.0.1\n\
         ns2 IN A 127.0.0.2\n\
         {body}"
    )
}

/// Starts `named` primary for each `(origin, extra zone-file lines)`.
pub fn start(zones: &[(&str, &str)]) -> Named {
    start_with(zones, true)
}

/// The same, but no zone allows transfers (AXFR) to the key: external-dns could not
/// read the zones.
pub fn start_without_transfer(zones: &[(&str, &str)]) -> Named {
    start_with(zones, false)
}

fn start_with(zones: &[(&str, &str)], allow_transfer: bool) -> Named {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let named = tool("named");
    let checkconf = tool("named-checkconf");
    let checkzone = tool("named-checkzone");
    let port = free_port();
    let dir = std::env::temp_dir().join(format!(
        "gitpod-refarch-named-{}-{}-{port}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let d = dir.display();
    let secret = Secret::generate_base64_key(32);
    let other_secret = Secret::generate_base64_key(32);

    let mut conf = format!(
        "options {{\n  directory \"{d}\";\n  pid-file \"{d}/named.pid\";\n  \
         session-keyfile \"{d}/session.key\";\n  listen-on port {port} {{ 127.0.0.1; }};\n  \
         listen-on-v6 {{ none; }};\n  recursion no;\n  allow-query {{ any; }};\n  \
         dnssec-validation no;\n  notify no;\n}};\ncontrols {{ }};\n\
         key \"{KEY}\" {{ algorithm hmac-sha256; secret \"{}\"; }};\n\
         key \"{OTHER_KEY}\" {{ algorithm hmac-sha256; secret \"{}\"; }};\n",
        secret.expose(),
        other_secret.expose()
    );
    for (origin, body) in zones {
        let file = dir.join(format!("{origin}.zone"));
        std::fs::write(&file, zone_file(origin, body)).expect("zone file");
        let transfer = if allow_transfer {
            format!("key {KEY};")
        } else {
            "none;".to_string()
        };
        conf.push_str(&format!(
            "zone \"{origin}\" {{\n  type primary;\n  file \"{}\";\n  \
             update-policy {{ grant {KEY} zonesub ANY; }};\n  \
             allow-transfer {{ {transfer} }};\n}};\n",
            file.display()
        ));
        let out = Command::new(&checkzone)
            .arg(origin)
            .arg(&file)
            .output()
            .expect("named-checkzone");
        assert!(
            out.status.success(),
            "named-checkzone {origin}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let conf_path = dir.join("named.conf");
    std::fs::write(&conf_path, conf).expect("named.conf");
    let out = Command::new(&checkconf)
        .arg(&conf_path)
        .output()
        .expect("named-checkconf");
    assert!(
        out.status.success(),
        "named-checkconf: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let mut child = Command::new(&named)
        .arg("-c")
        .arg(&conf_path)
        .args(["-g", "-n", "1"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {}: {e}; install it with: {APT}",
                named.display()
            )
        });
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        // Keep draining after "running" so named never blocks on a full pipe.
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let named = Named {
        child,
        dir,
        port,
        secret,
        other_secret,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut log = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => {
                let running = line.trim_end().ends_with(" running");
                log.push(line);
                if running {
                    return named;
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                panic!("named exited before running:\n{}", log.join("\n"))
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        assert!(
            Instant::now() < deadline,
            "named not running after 30 s:\n{}",
            log.join("\n")
        );
    }
}
