//! A private PostgreSQL cluster for tests that stop, restart or pause the server: its own
//! data directory and port, fsync on, never the shared server. Started as the `postgres`
//! user when the tests run as root (PostgreSQL refuses to run as root).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A running private cluster, stopped and removed when dropped.
pub struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    as_postgres: bool,
}

/// The directory holding `initdb` and `pg_ctl`: `$FACTUM_PG_BIN`, else the newest
/// `/usr/lib/postgresql/*/bin`, else `$PATH`.
fn bin_dir() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("FACTUM_PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, p): &(u32, PathBuf)| p.join("pg_ctl").exists())
        .collect();
    versions.sort();
    versions.pop().map(|(_, p)| p)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0\n")).unwrap_or(false)
}

impl Cluster {
    /// Creates and starts a cluster, or `None` (with a message saying why) when the
    /// server binaries are not installed.
    pub fn start() -> Option<Cluster> {
        let Some(bin) = bin_dir() else {
            eprintln!("SKIP: no PostgreSQL server binaries (set FACTUM_PG_BIN or install postgresql)");
            return None;
        };
        let dir = std::env::temp_dir().join(format!("factum-cluster-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("cluster dir");
        let as_postgres = is_root();
        let cluster = Cluster { bin, dir, port: free_port(), as_postgres };
        if as_postgres {
            let ok = Command::new("chown").args(["-R", "postgres:postgres"]).arg(&cluster.dir).status();
            assert!(ok.is_ok_and(|s| s.success()), "chown the cluster dir to postgres");
        }
        let data = cluster.data();
        cluster
            .run("initdb", &["-D", data.to_str().unwrap(), "-U", "postgres", "--auth=trust", "-E", "UTF8"]);
        let conf = format!(
            "port = {}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\nfsync = on\n\
             max_connections = 100\nshared_buffers = 32MB\n",
            cluster.port,
            cluster.dir.display()
        );
        let path = data.join("postgresql.auto.conf");
        let mut existing = std::fs::read_to_string(&path).unwrap_or_default();
        existing.push_str(&conf);
        std::fs::write(&path, existing).expect("write the cluster's settings");
        cluster.start_server();
        Some(cluster)
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let program = self.bin.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        let out = cmd.args(args).stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("run {tool}: {e}"));
        assert!(out.status.success(), "{tool} {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    fn pg_ctl(&self, args: &[&str]) {
        let data = self.data();
        let log = self.dir.join("server.log");
        let mut all = vec!["-D", data.to_str().unwrap(), "-l", log.to_str().unwrap()];
        all.extend_from_slice(args);
        self.run("pg_ctl", &all);
    }

    /// Starts the server and waits until it accepts connections.
    pub fn start_server(&self) {
        self.pg_ctl(&["-w", "-t", "60", "start"]);
    }

    /// Stops the server at once (`-m immediate`: no checkpoint, crash recovery on start).
    pub fn stop_immediate(&self) {
        self.pg_ctl(&["-m", "immediate", "stop"]);
    }

    /// The postmaster's process id.
    pub fn pid(&self) -> i32 {
        let pid = std::fs::read_to_string(self.data().join("postmaster.pid")).expect("postmaster.pid");
        pid.lines().next().and_then(|l| l.trim().parse().ok()).expect("a pid")
    }

    /// Sends `signal` (e.g. `"STOP"`, `"CONT"`) to the server and all its processes.
    pub fn signal(&self, signal: &str) {
        let pid = self.pid().to_string();
        let status = Command::new("pkill").args([&format!("-{signal}"), "-P", &pid]).status();
        assert!(status.is_ok(), "signal the server's children");
        let status = Command::new("kill").args([&format!("-{signal}"), &pid]).status();
        assert!(status.is_ok_and(|s| s.success()), "signal the postmaster");
    }

    /// The URL of database `db` on this cluster.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Waits until a TCP connection to the port is accepted (the server may still
    /// refuse the login while it recovers).
    pub fn wait_listening(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.data();
        let ctl = self.bin.join("pg_ctl");
        let args = ["-D", data.to_str().unwrap_or_default(), "-m", "immediate", "stop"];
        let _ = if self.as_postgres {
            Command::new("runuser").args(["-u", "postgres", "--"]).arg(&ctl).args(args).output()
        } else {
            Command::new(&ctl).args(args).output()
        };
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
