//! The real `hawser` binary as a child process: started with arguments, its `listening` log
//! lines read for the addresses it bound, stopped with SIGTERM or killed on drop.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Every listener of `hawser run` / `quickstart` on a port the kernel picks (the binary logs which).
pub const ANY_PORTS: [&str; 6] =
    ["--http-addr", "127.0.0.1:0", "--https-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"];

/// A child process killed on drop, with the addresses it logged as `listening`.
pub struct Process {
    child: Child,
    listening: Vec<(String, SocketAddr)>,
    /// Every JSON log line after the `listening` ones.
    logged: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
    /// With [`Self::start_unread`]: stdout, held open and never read.
    _unread: Option<std::io::Lines<BufReader<std::process::ChildStdout>>>,
}

impl Process {
    pub fn start(args: &[&str], listeners: usize) -> Self {
        Self::start_with_env(args, listeners, &[])
    }

    /// Like [`Self::start`], with extra environment variables.
    pub fn start_with_env(args: &[&str], listeners: usize, env: &[(&str, &str)]) -> Self {
        Self::start_under(&[], args, listeners, env)
    }

    /// Like [`Self::start`], but nothing reads stdout after the `listening` lines: once the
    /// pipe is full, every write to it blocks.
    pub fn start_unread(args: &[&str], listeners: usize) -> Self {
        let (child, listening, lines) = Self::spawn(&[], args, listeners, &[]);
        Self { child, listening, logged: std::sync::Arc::default(), _unread: Some(lines) }
    }

    /// Like [`Self::start_with_env`], run by `wrapper` (e.g. `prlimit --nofile=N:N --`).
    pub fn start_under(wrapper: &[&str], args: &[&str], listeners: usize, env: &[(&str, &str)]) -> Self {
        let (child, listening, lines) = Self::spawn(wrapper, args, listeners, env);
        let logged: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>> = std::sync::Arc::default();
        let keep = std::sync::Arc::clone(&logged);
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) {
                    keep.lock().unwrap().push(event);
                }
            }
        });
        Self { child, listening, logged, _unread: None }
    }

    /// Starts the binary and reads its stdout up to the `listening` lines.
    #[allow(clippy::type_complexity)]
    fn spawn(
        wrapper: &[&str],
        args: &[&str],
        listeners: usize,
        env: &[(&str, &str)],
    ) -> (Child, Vec<(String, SocketAddr)>, std::io::Lines<BufReader<std::process::ChildStdout>>) {
        let binary = env!("CARGO_BIN_EXE_hawser");
        let mut command = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut command = Command::new(program);
                command.args(rest).arg(binary);
                command
            }
            None => Command::new(binary),
        };
        let mut child = command
            .args(args)
            // No load balancer to wait for: stop accepting at once on SIGTERM.
            .env("HAWSER_SHUTDOWN_DELAY", "0s")
            .envs(env.iter().copied())
            .arg("--log-format=json")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut listening = Vec::new();
        while listening.len() < listeners {
            let line = lines.next().expect("exited before listening").unwrap();
            // Skip lines that are not log events (the quickstart banner).
            let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
            if event["message"] == "listening" {
                let addr = event["addr"].as_str().unwrap().parse().unwrap();
                listening.push((event["listener"].as_str().unwrap().to_owned(), addr));
            }
        }
        (child, listening, lines)
    }

    /// The JSON log events logged so far whose `message` is `message`.
    pub fn events(&self, message: &str) -> Vec<serde_json::Value> {
        self.logged.lock().unwrap().iter().filter(|e| e["message"] == message).cloned().collect()
    }

    pub fn addr(&self, listener: &str) -> SocketAddr {
        self.listening.iter().find(|(name, _)| name == listener).unwrap().1
    }

    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        for _ in 0..100 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("hawser did not exit within 5 s of SIGTERM");
    }
}

impl Process {
    /// Kills the process now (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `command` to its end, checks that it failed, and returns what it said (stdout, stderr).
pub fn failure_output(command: &mut Command) -> String {
    let output = command.output().expect("run hawser");
    assert!(!output.status.success(), "hawser was expected to fail");
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}
