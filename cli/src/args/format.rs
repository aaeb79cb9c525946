//! `--format` values of the commands whose formats are the CLI's own (the
//! document formats, yaml/json/table, are the core's `OutputFormat`). Each
//! is typed at parse time through `aicr::flags::typed`, so a bad value is
//! rejected before any work with exit 2 and the documented message.

use std::str::FromStr;

use aicr::error::Error;

/// Listings: an aligned table for people, JSON for scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableOrJson {
    Table,
    Json,
}

impl TableOrJson {
    /// The spellings `from_str` accepts, offered to shell completion.
    pub const NAMES: &'static [&'static str] = &["table", "json"];
}

impl FromStr for TableOrJson {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "table" => Ok(TableOrJson::Table),
            "json" => Ok(TableOrJson::Json),
            other => Err(Error::invalid(format!(
                "invalid --format {other:?}: use table or json"
            ))),
        }
    }
}

/// Reports and event streams: lines of text, or JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextOrJson {
    Text,
    Json,
}

impl TextOrJson {
    /// The spellings `from_str` accepts, offered to shell completion.
    pub const NAMES: &'static [&'static str] = &["text", "json"];
}

impl FromStr for TextOrJson {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "text" => Ok(TextOrJson::Text),
            "json" => Ok(TextOrJson::Json),
            _ => Err(Error::invalid("invalid --format: must be text or json")),
        }
    }
}

/// Reports for people or for programs: text, JSON or YAML.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFormat {
    Text,
    Json,
    Yaml,
}

impl ReportFormat {
    /// The spellings `from_str` accepts, offered to shell completion.
    pub const NAMES: &'static [&'static str] = &["text", "json", "yaml"];
}

impl FromStr for ReportFormat {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "text" => Ok(ReportFormat::Text),
            "json" => Ok(ReportFormat::Json),
            "yaml" => Ok(ReportFormat::Yaml),
            _ => Err(Error::invalid(
                "invalid --format: must be text, json or yaml",
            )),
        }
    }
}
