//! What every binary's environment and log records promise, checked the
//! same way for each (`aicr-agent`, `aicr-aggregator`): `AICR_LOG_JSON`
//! read as Go's `strconv.ParseBool` reads it (empty means unset, a bad
//! value names the variable), JSON records in the shape the three
//! binaries share (`time`, `level`, `msg`, then fields), and
//! `AICR_LOG_LEVEL` ahead of `LOG_LEVEL`.

use std::process::Output;

use crate::tools::hermetic;

/// A binary run that fails fast (exit 2) on a problem it logs.
pub struct FailingRun {
    /// The binary's name (`aicr-agent`).
    pub bin: &'static str,
    pub args: &'static [&'static str],
    /// What the logged error says.
    pub error_text: &'static str,
}

impl FailingRun {
    fn run(&self, env: &[(&str, &str)]) -> (Option<i32>, String) {
        let Output { status, stderr, .. } = hermetic(self.bin)
            .envs(env.iter().copied())
            .args(self.args)
            .output()
            .unwrap();
        (status.code(), String::from_utf8_lossy(&stderr).into_owned())
    }

    /// Every true spelling gives JSON records of the shared shape; every
    /// false one, and the empty value, gives text without escape codes.
    pub fn check_log_json_reads_go_booleans(&self) {
        for v in ["1", "t", "T", "TRUE", "true", "True"] {
            let (code, err) = self.run(&[("AICR_LOG_JSON", v)]);
            assert_eq!(code, Some(2), "AICR_LOG_JSON={v}: {err}");
            let line = err.lines().last().unwrap();
            let rec: serde_json::Value = serde_json::from_str(line).unwrap();
            let keys: Vec<&str> = rec
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            assert!(line.starts_with("{\"time\":\""), "{line}");
            for k in ["time", "level", "msg"] {
                assert!(keys.contains(&k), "{k} in {line}");
            }
            for gone in ["timestamp", "message", "fields", "target"] {
                assert!(!keys.contains(&gone), "no {gone} in {line}");
            }
            assert_eq!(rec["level"], "ERROR");
            assert!(
                rec["msg"].as_str().unwrap().contains(self.error_text),
                "{line}"
            );
            let time = rec["time"].as_str().unwrap();
            assert!(
                time.len() == 24 && time.ends_with('Z') && time.as_bytes()[19] == b'.',
                "RFC 3339, milliseconds, UTC: {time}"
            );
        }
        for v in ["0", "f", "F", "FALSE", "false", "False", ""] {
            let (code, err) = self.run(&[("AICR_LOG_JSON", v)]);
            assert_eq!(code, Some(2), "AICR_LOG_JSON={v:?}: {err}");
            assert!(
                !err.starts_with('{') && err.contains(self.error_text),
                "{err}"
            );
            assert!(!err.contains('\x1b'), "no escapes in a pipe: {err:?}");
        }
    }

    /// A bad value is a usage error (1) naming the variable, not the flag.
    pub fn check_bad_log_json_names_the_variable(&self) {
        let (code, err) = self.run(&[("AICR_LOG_JSON", "yes")]);
        assert_eq!(code, Some(1), "{err}");
        assert!(
            err.contains("invalid value 'yes' for AICR_LOG_JSON:"),
            "{err}"
        );
        assert!(!err.contains("'--log-json'"), "{err}");
    }

    /// `AICR_LOG_LEVEL` wins over `LOG_LEVEL`; either can silence the run.
    pub fn check_log_level(&self) {
        let (code, err) = self.run(&[("AICR_LOG_LEVEL", "off"), ("LOG_LEVEL", "info")]);
        assert_eq!(code, Some(2));
        assert_eq!(err, "");
        let (_, err) = self.run(&[("LOG_LEVEL", "off")]);
        assert_eq!(err, "");
    }
}

/// Log records written in-process, for tests that set their own
/// subscriber: hand `move || captured.clone()` to `with_writer`, read
/// [`Captured::text`] after.
#[derive(Clone, Default)]
pub struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Captured {
    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
