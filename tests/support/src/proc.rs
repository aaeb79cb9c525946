//! Child processes a test starts: the real binaries under test, each with
//! its output in a log file and killed when dropped, however the test ends.
//! A test that fails prints the last lines of every log it held.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A child process whose stdout and stderr go to `<dir>/<name>.log`.
pub struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    /// Start `cmd` with no stdin and `NO_COLOR` set, so logs read plainly.
    pub fn spawn(name: &str, cmd: &mut Command, dir: &Path) -> Proc {
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", log.display()));
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .env("NO_COLOR", "1")
            .spawn()
            .unwrap_or_else(|e| panic!("{name} does not start: {e}"));
        Proc {
            name: name.to_string(),
            child,
            log,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The exit status, if the process has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap()
    }

    pub fn running(&mut self) -> bool {
        self.exited().is_none()
    }

    /// Wait, without blocking the runtime, for the process to exit on its
    /// own; panics with its log after `within`.
    pub async fn exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.exited() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit within {within:?}\n{}",
                self.name,
                self.tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last lines of the log, for failure messages.
    pub fn tail(&self) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(25);
        format!("---- {} log\n{}\n", self.name, lines[from..].join("\n"))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("{}", self.tail());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut c = Command::new("sh");
        c.args(["-c", script]);
        c
    }

    #[tokio::test]
    async fn output_goes_to_the_log_and_the_exit_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = Proc::spawn(
            "talker",
            &mut sh("echo out; echo err >&2; exit 3"),
            dir.path(),
        );
        let status = p.exit(Duration::from_secs(10)).await;
        assert_eq!(status.code(), Some(3));
        assert!(!p.running());
        let log = p.log_text();
        assert!(log.contains("out") && log.contains("err"), "{log}");
        assert!(p.tail().starts_with("---- talker log\n"), "{}", p.tail());
    }

    #[test]
    fn dropping_kills_the_process() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = Proc::spawn("sleeper", &mut sh("echo $$; exec sleep 60"), dir.path());
        let deadline = Instant::now() + Duration::from_secs(10);
        let pid = loop {
            if let Ok(pid) = p.log_text().trim().parse::<u32>() {
                break pid;
            }
            assert!(Instant::now() < deadline, "no pid in the log");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(p.running());
        drop(p);
        // Reaped by the drop, so the pid no longer names a process.
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
    }
}
