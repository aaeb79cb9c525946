//! Where output documents go: stdout, a local file (written atomically) or a
//! ConfigMap (see the kube layer). Owns the "nothing half-written" rule for
//! files: content goes to a temporary file in the target directory and is
//! renamed into place only when complete.

use std::io::Write;
use std::path::Path;

use crate::error::{Error, ErrorKind, Result};

/// Output formats shared by documents (`recipe`, `snapshot`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    #[default]
    Yaml,
    Json,
    Table,
}

impl OutputFormat {
    /// The spellings `from_str` accepts, offered to shell completion.
    pub const NAMES: &'static [&'static str] = &["yaml", "json", "table"];
}

impl std::str::FromStr for OutputFormat {
    type Err = Error;

    fn from_str(s: &str) -> Result<OutputFormat> {
        match s {
            "yaml" => Ok(OutputFormat::Yaml),
            "json" => Ok(OutputFormat::Json),
            "table" => Ok(OutputFormat::Table),
            other => Err(Error::invalid(format!(
                "unknown output format: {other:?}, valid formats are: yaml, json, table"
            ))),
        }
    }
}

impl std::fmt::Display for OutputFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OutputFormat::Yaml => "yaml",
            OutputFormat::Json => "json",
            OutputFormat::Table => "table",
        })
    }
}

/// Whether a destination means standard output.
pub fn is_stdout(dest: &str) -> bool {
    dest.is_empty() || dest == "-"
}

/// Write `content` to `path` atomically: a sibling temporary file, renamed
/// into place once complete. No reader ever sees a partial file, and on any
/// failure nothing is left at `path` (or the old file stays).
///
/// There is no fsync: surviving a power cut is the filesystem's promise, not
/// ours, as for the bundle writer, kubectl and Helm (ext4 flushes a file
/// renamed over another by itself). It cost 0.4 ms of a 3 ms `aicr recipe`.
///
/// A regular file that already holds exactly `content`, with the mode a new
/// one would get, is left alone: its mtime stays, so `make` and file
/// watchers see no change when nothing changed (as prost-build does for
/// generated code), and no inode is freed, which on a filesystem mounted
/// with `discard` is a synchronous trim (0.3 ms of a rerun of `aicr recipe`).
pub fn write_file_atomic(path: &Path, content: &[u8]) -> Result<()> {
    if holds(path, content, under_umask(0o666)) {
        return Ok(());
    }
    let fail = |e: &dyn std::fmt::Display| {
        Error::new(
            ErrorKind::Internal,
            format!(
                "failed to create output file {:?}: {e}",
                path.display().to_string()
            ),
        )
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(fail(&format!(
            "directory {:?} does not exist",
            dir.display().to_string()
        )));
    }
    let mut builder = tempfile::Builder::new();
    builder.prefix(".aicr-");
    // tempfile's default is 0600; an output file is the user's, so it is
    // created 0666 and the kernel applies their umask.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    let mut tmp = builder.tempfile_in(dir).map_err(|e| fail(&e))?;
    tmp.write_all(content).map_err(|e| fail(&e))?;
    tmp.persist(path).map_err(|e| fail(&e.error))?;
    Ok(())
}

/// Whether `path` is a regular file (not a link, FIFO or device) with
/// exactly `content` and permission bits `mode`. Reads no further than the
/// first difference, whatever the file's size.
pub(crate) fn holds(path: &Path, content: &[u8], mode: u32) -> bool {
    // Look before opening: a device or FIFO at an output path is never
    // opened, not even to find out what it is.
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file()) && holds_regular(path, content, mode)
}

/// [`holds`] for a path a directory listing just gave as a regular file.
/// What is opened is checked again on the open file, so a link or FIFO
/// swapped in since is neither followed nor waited on.
pub(crate) fn holds_regular(path: &Path, content: &[u8], mode: u32) -> bool {
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY);
    }
    let Ok(file) = opts.open(path) else {
        return false;
    };
    let Ok(meta) = file.metadata() else {
        return false;
    };
    if !meta.is_file() || meta.len() != content.len() as u64 {
        return false;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o7777 != mode {
            return false;
        }
    }
    #[cfg(not(unix))]
    let _ = mode;
    begins_with(file, content)
}

/// Whether `r` yields `content` first. Compares a chunk at a time through
/// one small buffer (a rerun of `bundle` checks a hundred files, and a
/// fresh buffer per file cost a page fault per 4 KiB read), and stops at
/// `content`'s end: the caller has checked the length.
fn begins_with(mut r: impl std::io::Read, mut content: &[u8]) -> bool {
    let mut buf = [0u8; 8192];
    while !content.is_empty() {
        let want = content.len().min(buf.len());
        let n = match r.read(&mut buf[..want]) {
            Ok(0) => return false,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return false,
        };
        match content.strip_prefix(&buf[..n]) {
            Some(rest) => content = rest,
            None => return false,
        }
    }
    true
}

/// The process umask, read once from `/proc/self/status` (Linux); `None`
/// when unknown.
pub(crate) fn umask() -> Option<u32> {
    static CELL: std::sync::OnceLock<Option<u32>> = std::sync::OnceLock::new();
    *CELL.get_or_init(|| {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find(|l| l.starts_with("Umask:"))?;
        u32::from_str_radix(line.trim_start_matches("Umask:").trim(), 8).ok()
    })
}

/// The mode a file created as `mode` gets under the user's umask (022 when
/// it cannot be read).
pub fn under_umask(mode: u32) -> u32 {
    mode & !umask().unwrap_or(0o022)
}

/// Write to stdout or a file path. ConfigMap destinations go through the
/// kube layer.
pub fn write_local(dest: &str, content: &[u8]) -> Result<()> {
    if is_stdout(dest) {
        let mut out = std::io::stdout().lock();
        out.write_all(content)
            .and_then(|_| out.flush())
            .map_err(|e| Error::internal(format!("failed to write to stdout: {e}")))
    } else {
        write_file_atomic(Path::new(dest), content)
    }
}

/// Render `Path<TAB>value` rows under a FIELD/VALUE header, sorted by path,
/// aligned like Go's tabwriter (padding 2): upstream's table format.
pub fn table(mut rows: Vec<(String, String)>) -> String {
    if rows.is_empty() {
        return "<empty>\n".into();
    }
    rows.sort();
    let mut tw = tabwriter::TabWriter::new(Vec::new()).padding(2).minwidth(0);
    let mut text = String::from("FIELD\tVALUE\n-----\t-----\n");
    for (p, v) in rows {
        text.push_str(&format!("{p}\t{v}\n"));
    }
    // Writing into a Vec cannot fail.
    let _ = tw.write_all(text.as_bytes());
    let _ = tw.flush();
    String::from_utf8_lossy(&tw.into_inner().unwrap_or_default()).into_owned()
}

/// Flatten a document into rows with upstream's Go field names for keys
/// (`apiVersion` → `APIVersion`), lists as `[i]`, null as `<nil>`.
pub fn flatten(doc: &serde_json::Value) -> Vec<(String, String)> {
    fn walk(prefix: &str, v: &serde_json::Value, rows: &mut Vec<(String, String)>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    let p = if prefix.is_empty() {
                        go_name(k)
                    } else {
                        format!("{prefix}.{}", go_name(k))
                    };
                    walk(&p, v, rows);
                }
            }
            serde_json::Value::Array(a) => {
                for (i, v) in a.iter().enumerate() {
                    walk(&format!("{prefix}.[{i}]"), v, rows);
                }
            }
            serde_json::Value::Null => rows.push((prefix.to_string(), "<nil>".into())),
            serde_json::Value::String(s) => rows.push((prefix.to_string(), s.clone())),
            other => rows.push((prefix.to_string(), other.to_string())),
        }
    }
    let mut rows = Vec::new();
    walk("", doc, &mut rows);
    rows
}

/// Document keys as upstream's Go field names (`apiVersion` → `APIVersion`).
fn go_name(key: &str) -> String {
    match key {
        "apiVersion" => "APIVersion".into(),
        "os" => "OS".into(),
        k => {
            let mut c = k.chars();
            match c.next() {
                Some(f) => f.to_uppercase().chain(c).collect(),
                None => String::new(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_leaves_nothing_when_the_directory_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("missing/out.yaml");
        let e = write_file_atomic(&p, b"x").unwrap_err();
        assert!(e.to_string().contains("does not exist"), "{e}");
        assert!(!p.exists());
    }

    #[test]
    fn atomic_write_replaces_content_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.yaml");
        write_file_atomic(&p, b"one").unwrap();
        write_file_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp files left"
        );
    }

    #[cfg(unix)]
    #[test]
    fn an_identical_file_is_left_alone_and_a_different_one_replaced() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.yaml");
        let ino = |p: &Path| std::fs::metadata(p).unwrap().ino();
        write_file_atomic(&p, b"same").unwrap();
        let first = ino(&p);
        write_file_atomic(&p, b"same").unwrap();
        assert_eq!(ino(&p), first, "identical content keeps the file");

        // Same bytes, other mode: rewritten with the mode a new file gets.
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        write_file_atomic(&p, b"same").unwrap();
        assert_ne!(ino(&p), first);
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            under_umask(0o666)
        );

        // A longer file that starts with the content is not the content.
        std::fs::write(&p, b"same and more").unwrap();
        write_file_atomic(&p, b"same").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"same");

        // A link to an identical file is replaced, never followed.
        let target = dir.path().join("target");
        std::fs::write(&target, b"same").unwrap();
        std::fs::remove_file(&p).unwrap();
        std::os::unix::fs::symlink(&target, &p).unwrap();
        write_file_atomic(&p, b"same").unwrap();
        assert!(std::fs::symlink_metadata(&p).unwrap().is_file());
    }

    #[test]
    fn bytes_compare_across_chunks() {
        let long: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        assert!(begins_with(&long[..], &long));
        assert!(begins_with(&b""[..], b""));
        assert!(!begins_with(&long[..19_999], &long), "shorter");
        let mut other = long.clone();
        other[12_345] ^= 1;
        assert!(!begins_with(&other[..], &long), "one byte differs");
    }

    #[test]
    fn formats_parse_strictly() {
        assert_eq!("json".parse::<OutputFormat>().unwrap(), OutputFormat::Json);
        assert_eq!(OutputFormat::Table.to_string(), "table");
        let e = "xml".parse::<OutputFormat>().unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"unknown output format: "xml", valid formats are: yaml, json, table"#
        );
    }

    #[test]
    fn table_flattens_with_go_names() {
        let t = table(flatten(
            &serde_json::json!({"apiVersion": "v", "criteria": {"os": "ubuntu"}, "l": ["a"], "n": null}),
        ));
        assert!(t.starts_with("FIELD"), "{t}");
        assert!(t.contains("APIVersion   v\n"), "{t}");
        assert!(t.contains("Criteria.OS  ubuntu\n"), "{t}");
        assert!(t.contains("L.[0]        a\n"), "{t}");
        assert!(t.contains("N            <nil>\n"), "{t}");
        assert_eq!(table(vec![]), "<empty>\n");
    }
}
