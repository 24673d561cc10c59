//! Running the `factum` binary against a test database.

use std::process::{Command, Output, Stdio};

/// What one run of the binary printed, and how it ended.
pub(crate) struct Run {
    /// The exit code.
    pub(crate) code: i32,
    /// Standard output.
    pub(crate) stdout: String,
    /// Standard error.
    pub(crate) stderr: String,
}

impl Run {
    /// Panics unless the run succeeded; returns its standard output.
    #[track_caller]
    pub(crate) fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "factum failed: stderr {:?}, stdout {:?}", self.stderr, self.stdout);
        &self.stdout
    }

    /// Panics unless the run failed with `code` and one line `error: …` containing `text`.
    #[track_caller]
    pub(crate) fn fails(&self, code: i32, text: &str) {
        assert_eq!(self.code, code, "exit code; stderr {:?}, stdout {:?}", self.stderr, self.stdout);
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line of error, got {:?}", self.stderr);
        assert!(lines[0].starts_with("error: "), "{:?}", lines[0]);
        assert!(lines[0].contains(text), "{:?} should say {text:?}", lines[0]);
        for debug in ["Backend(", "Error {", "Some(", "kind:"] {
            assert!(!lines[0].contains(debug), "a Debug dump: {:?}", lines[0]);
        }
    }

    /// Standard output's lines, each parsed as JSON.
    #[track_caller]
    pub(crate) fn json_lines(&self) -> Vec<serde_json::Value> {
        self.ok().lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}"))).collect()
    }
}

/// The binary, with no database settings of its own.
pub(crate) fn factum() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_factum"));
    for var in [
        "DATABASE_URL",
        "DATABASE_HOST",
        "DATABASE_NAME",
        "DATABASE_USER",
        "DATABASE_PASSWORD",
        "DATABASE_PORT",
    ] {
        cmd.env_remove(var);
    }
    cmd.stdin(Stdio::null());
    cmd
}

/// Runs the binary with `args` against `url`, to its end.
pub(crate) async fn run(url: Option<&str>, args: &[&str]) -> Run {
    let mut cmd = factum();
    if let Some(url) = url {
        cmd.env("DATABASE_URL", url);
    }
    cmd.args(args);
    let out: Output = tokio::task::spawn_blocking(move || cmd.output()).await.unwrap().expect("run factum");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(out.stderr).expect("utf-8 stderr"),
    }
}
