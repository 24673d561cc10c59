//! A private RabbitMQ broker for tests that stop it: its own node name, ports, data,
//! logs, plugins file and Erlang cookie, in a temporary directory removed after.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

pub struct PrivateBroker {
    dir: PathBuf,
    node: String,
    pub port: u16,
    dist_port: u16,
}

fn server_binary() -> Option<PathBuf> {
    ["/usr/lib/rabbitmq/bin/rabbitmq-server", "/usr/sbin/rabbitmq-server"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// A port nothing listens on now (and its neighbour for distribution).
fn free_port() -> u16 {
    loop {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        if port < 65000 && std::net::TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
}

impl PrivateBroker {
    /// Starts one; panics when no `rabbitmq-server` is installed (scripts/rabbitmq.sh,
    /// which scripts/test.sh runs, installs it).
    pub fn start() -> PrivateBroker {
        assert!(server_binary().is_some(), "rabbitmq-server is not installed; run scripts/rabbitmq.sh");
        let dir = std::env::temp_dir()
            .join(format!("factum-rmq-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]));
        std::fs::create_dir_all(dir.join("home")).unwrap();
        std::fs::write(dir.join("enabled_plugins"), "[].\n").unwrap();
        let port = free_port();
        let broker =
            PrivateBroker { node: format!("factumtest{port}@localhost"), dist_port: port + 1, port, dir };
        broker.boot();
        broker
    }

    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    fn boot(&self) {
        let bin = server_binary().unwrap();
        let status = Command::new(bin)
            .arg("-detached")
            .current_dir(&self.dir)
            .env("HOME", self.dir.join("home"))
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", self.dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", self.dir.join("log"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", self.dir.join("enabled_plugins"))
            .env("RABBITMQ_PID_FILE", self.dir.join("pid"))
            .env("RABBITMQ_CONFIG_FILE", self.dir.join("none"))
            .env("RABBITMQ_ADVANCED_CONFIG_FILE", self.dir.join("none.config"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("rabbitmq-server runs");
        assert!(status.success(), "rabbitmq-server -detached failed: {status:?}");
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "private broker did not listen within 60 s ({:?})", self.dir);
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.dir.join("pid")).ok()?.trim().parse().ok()
    }

    /// Stops the node (SIGTERM: a clean shutdown) and waits until it is gone.
    pub fn stop(&self) {
        let Some(pid) = self.pid() else { return };
        let _ = Command::new("kill").args(["-TERM", &pid.to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::path::Path::new(&format!("/proc/{pid}")).exists() {
            if Instant::now() > deadline {
                let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = std::fs::remove_file(self.dir.join("pid"));
    }

    /// Runs `rabbitmqctl` against this node (with its cookie), e.g. to raise an alarm.
    pub fn ctl(&self, args: &[&str]) {
        let bin = ["/usr/lib/rabbitmq/bin/rabbitmqctl", "/usr/sbin/rabbitmqctl"]
            .iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("rabbitmqctl installed");
        let status = Command::new(bin)
            .arg("-n")
            .arg(&self.node)
            .args(args)
            .env("HOME", self.dir.join("home"))
            .stdout(std::process::Stdio::null())
            .status()
            .expect("rabbitmqctl runs");
        assert!(status.success(), "rabbitmqctl {args:?}: {status:?}");
    }

    /// Starts it again on the same ports and data.
    pub fn restart(&self) {
        self.boot();
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
