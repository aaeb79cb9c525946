//! CTRF (Common Test Report Format) documents as `aicr validate` emits them:
//! the shape and key order, summary arithmetic, a phase's status, merging of
//! per-phase reports and the exact JSON text (Go-encoder escaping).
//!
//! Owns report data only. It must not know how a test was run or decide the
//! process exit code.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::Result;

pub(crate) const REPORT_FORMAT: &str = "CTRF";
pub(crate) const SPEC_VERSION: &str = "0.0.1";
pub(crate) const GENERATED_BY: &str = "aicr";

/// A test's result. `pending` is part of the format but never produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Passed,
    Failed,
    Skipped,
    Pending,
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Test {
    pub name: String,
    pub status: Status,
    /// Milliseconds; always present.
    pub duration: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub suite: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stdout: Vec<String>,
}

impl Test {
    /// A test that never ran, with the reason as its message.
    pub fn skipped(name: &str, suite: &[&str], message: &str) -> Test {
        Test {
            name: name.to_string(),
            status: Status::Skipped,
            duration: 0,
            suite: suite.iter().map(|s| s.to_string()).collect(),
            message: message.to_string(),
            stdout: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub tests: usize,
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
    pub pending: usize,
    pub other: usize,
    /// Milliseconds since the Unix epoch.
    pub start: u64,
    pub stop: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tool {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Results {
    pub tool: Tool,
    pub summary: Summary,
    pub tests: Vec<Test>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub report_format: String,
    pub spec_version: String,
    pub timestamp: String,
    pub generated_by: String,
    pub results: Results,
}

/// How a phase (one report) ended, from its summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PhaseStatus {
    Passed,
    Failed,
    Skipped,
    Other,
}

/// Milliseconds since the Unix epoch.
pub fn epoch_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis()
        .try_into()
        .unwrap_or(u64::MAX)
}

impl Report {
    /// A finished report: counts come from `tests`, `stop` and `timestamp`
    /// from `now`.
    pub fn build(version: &str, start_ms: u64, tests: Vec<Test>, now: SystemTime) -> Report {
        let mut summary = Summary {
            start: start_ms,
            stop: epoch_ms(now),
            ..Summary::default()
        };
        count(&mut summary, &tests);
        Report {
            report_format: REPORT_FORMAT.into(),
            spec_version: SPEC_VERSION.into(),
            timestamp: humantime::format_rfc3339_seconds(now).to_string(),
            generated_by: GENERATED_BY.into(),
            results: Results {
                tool: Tool {
                    name: GENERATED_BY.into(),
                    version: version.into(),
                },
                summary,
                tests,
            },
        }
    }

    pub fn tests(&self) -> &[Test] {
        &self.results.tests
    }

    /// `failed` beats `other` beats an empty (`skipped`) phase; a phase whose
    /// tests were all skipped still counts as `passed`.
    pub(crate) fn phase_status(&self) -> PhaseStatus {
        let s = &self.results.summary;
        if s.failed > 0 {
            PhaseStatus::Failed
        } else if s.other > 0 {
            PhaseStatus::Other
        } else if s.tests == 0 {
            PhaseStatus::Skipped
        } else {
            PhaseStatus::Passed
        }
    }

    /// One report from several phases' reports. A single report is returned
    /// as it is; otherwise tests are concatenated in order, `start` is the
    /// earliest non-zero start, `stop` the latest stop and `timestamp` the
    /// first report's.
    pub(crate) fn merge(mut reports: Vec<Report>) -> Option<Report> {
        if reports.len() <= 1 {
            return reports.pop();
        }
        let first = reports[0].clone();
        let start = reports
            .iter()
            .map(|r| r.results.summary.start)
            .filter(|s| *s != 0)
            .min()
            .unwrap_or(0);
        let stop = reports
            .iter()
            .map(|r| r.results.summary.stop)
            .max()
            .unwrap_or(0);
        let tests: Vec<Test> = reports.into_iter().flat_map(|r| r.results.tests).collect();
        let mut summary = Summary {
            start,
            stop,
            ..Summary::default()
        };
        count(&mut summary, &tests);
        Some(Report {
            results: Results {
                tool: first.results.tool,
                summary,
                tests,
            },
            ..first
        })
    }

    /// The document text: two-space JSON in key order, `<`, `>`, `&`,
    /// U+2028 and U+2029 escaped as Go's encoder does, newline-terminated.
    pub fn to_json(&self) -> Result<String> {
        let text = crate::yaml::to_json(self)?;
        if !text.contains(['\u{2028}', '\u{2029}']) {
            return Ok(text);
        }
        Ok(text
            .replace('\u{2028}', "\\u2028")
            .replace('\u{2029}', "\\u2029"))
    }
}

fn count(summary: &mut Summary, tests: &[Test]) {
    summary.tests = tests.len();
    for t in tests {
        match t.status {
            Status::Passed => summary.passed += 1,
            Status::Failed => summary.failed += 1,
            Status::Skipped => summary.skipped += 1,
            Status::Pending => summary.pending += 1,
            Status::Other => summary.other += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test(name: &str, status: Status) -> Test {
        Test {
            name: name.into(),
            status,
            duration: 5,
            suite: vec!["deployment".into()],
            message: String::new(),
            stdout: Vec::new(),
        }
    }

    fn at(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    #[test]
    fn phase_status_follows_the_summary() {
        let r = |tests| Report::build("dev", 1, tests, at(2));
        assert_eq!(r(vec![]).phase_status(), PhaseStatus::Skipped);
        assert_eq!(
            r(vec![test("a", Status::Skipped)]).phase_status(),
            PhaseStatus::Passed
        );
        assert_eq!(
            r(vec![test("a", Status::Other), test("b", Status::Passed)]).phase_status(),
            PhaseStatus::Other
        );
        assert_eq!(
            r(vec![test("a", Status::Other), test("b", Status::Failed)]).phase_status(),
            PhaseStatus::Failed
        );
    }

    #[test]
    fn merge_sums_and_spans() {
        let a = Report::build("dev", 0, vec![test("a", Status::Passed)], at(1_000));
        let b = Report::build(
            "dev",
            1_500,
            vec![test("b", Status::Failed), test("c", Status::Other)],
            at(3_000),
        );
        let c = Report::build("dev", 900, vec![], at(2_000));
        let m = Report::merge(vec![a.clone(), b, c]).unwrap();
        let s = &m.results.summary;
        assert_eq!((s.tests, s.passed, s.failed, s.other), (3, 1, 1, 1));
        assert_eq!((s.start, s.stop), (900, 3_000));
        assert_eq!(m.timestamp, a.timestamp);
        assert_eq!(Report::merge(vec![a.clone()]).unwrap(), a);
        assert!(Report::merge(vec![]).is_none());
    }

    #[test]
    fn empty_merge_keeps_an_array() {
        let m = Report::merge(vec![
            Report::build("", 1, vec![], at(2)),
            Report::build("", 1, vec![], at(2)),
        ])
        .unwrap();
        let text = m.to_json().unwrap();
        assert!(text.contains("\"tests\": []"), "{text}");
        assert!(!text.contains("\"version\""), "empty version is omitted");
    }

    #[test]
    fn json_text_escapes_like_go() {
        let mut t = test("x", Status::Failed);
        t.message = "a <b> & c\u{2028}→".into();
        let text = Report::build("dev", 1, vec![t], at(1_700_000_000_000))
            .to_json()
            .unwrap();
        assert!(text.contains(r#""message": "a \u003cb\u003e \u0026 c\u2028→""#));
        assert!(text.contains("\"timestamp\": \"2023-11-14T22:13:20Z\""));
        assert!(text.ends_with("}\n"));
        let keys: Vec<&str> = text
            .lines()
            .filter_map(|l| l.trim().strip_prefix('"'))
            .filter_map(|l| l.split('"').next())
            .collect();
        assert_eq!(
            &keys[..5],
            [
                "reportFormat",
                "specVersion",
                "timestamp",
                "generatedBy",
                "results"
            ]
        );
    }
}
