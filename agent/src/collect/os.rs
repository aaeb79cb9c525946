//! The OS measurement: kernel command line (`grub`), `/proc/sys` settings
//! (`sysctl`), loaded modules (`kmod`) and os-release (`release`), read as
//! plain files under a [`Root`]. It only reads; it never writes to `/proc`
//! and never interprets values beyond the snapshot spec's text rules.
//!
//! The `procfs` crate is deliberately not used: it reads the live `/proc`
//! rather than a configurable root, and its strict parsers would reject the
//! lines the spec's lenient rules keep.

use std::collections::BTreeMap;
use std::path::Path;

use aicr::model::snapshot::{Measurement, Reading, Subtype};
use aicr::{Error, ErrorKind, Result};

use super::{Root, entries, read_lines, read_text};

pub const TYPE: &str = "OS";

const CMDLINE: &str = "/proc/cmdline";
const PROC_SYS: &str = "/proc/sys";
const PROC_SYS_NET: &str = "/proc/sys/net";
const CDROM_PREFIX: &str = "/proc/sys/dev/cdrom/";
const MODULES: &str = "/proc/modules";
const OS_RELEASE: &str = "/etc/os-release";
const OS_RELEASE_FALLBACK: &str = "/usr/lib/os-release";

type Part = fn(&Root) -> Result<Subtype>;

/// All four subtypes, in spec order; one that fails is logged and left out.
pub fn collect(root: &Root) -> Measurement {
    let parts: [(&str, Part); 4] = [
        ("grub", grub),
        ("sysctl", sysctl),
        ("kmod", kmod),
        ("release", release),
    ];
    let mut subtypes = Vec::with_capacity(parts.len());
    for (name, part) in parts {
        match part(root) {
            Ok(s) => subtypes.push(s),
            Err(e) => tracing::warn!(error = %e, "failed to collect {name} - skipping"),
        }
    }
    Measurement {
        kind: TYPE.into(),
        subtypes,
    }
}

/// Kernel command-line parameters. Quotes are not interpreted and `root` is
/// removed, as upstream does; a parameter without `=` is a flag with `""`.
pub fn grub(root: &Root) -> Result<Subtype> {
    let text = read_text(&root.join(CMDLINE))?;
    let mut data = BTreeMap::new();
    // The kernel hands everything after a lone `--` to init; those are not
    // kernel parameters.
    for entry in entries(&text, ' ').into_iter().take_while(|e| *e != "--") {
        let (key, value) = entry.split_once('=').unwrap_or((entry, ""));
        data.insert(key.trim().to_string(), Reading::from(value.trim()));
    }
    data.remove("root");
    Ok(subtype("grub", data))
}

/// Every readable file under `/proc/sys` except the `net` subtree, keyed by
/// its host path. Unreadable files are skipped silently; a directory that
/// cannot be listed fails the whole subtype.
pub fn sysctl(root: &Root) -> Result<Subtype> {
    let mut data = BTreeMap::new();
    walk_sysctl(&root.join(PROC_SYS), PROC_SYS, &mut data)?;
    data.retain(|k, _| !k.starts_with(CDROM_PREFIX));
    Ok(subtype("sysctl", data))
}

fn walk_sysctl(dir: &Path, logical: &str, data: &mut BTreeMap<String, Reading>) -> Result<()> {
    let walk_err =
        |e: std::io::Error| Error::internal(format!("failed to walk {}: {e}", dir.display()));
    for entry in std::fs::read_dir(dir).map_err(walk_err)? {
        let entry = entry.map_err(walk_err)?;
        let kind = entry.file_type().map_err(walk_err)?;
        let name = entry.file_name();
        let key = format!("{logical}/{}", name.to_string_lossy());
        if key == PROC_SYS_NET || kind.is_symlink() {
            continue;
        }
        if kind.is_dir() {
            walk_sysctl(&entry.path(), &key, data)?;
        } else if kind.is_file()
            && let Ok(lines) = read_lines(&entry.path())
        {
            insert_sysctl(key, &lines, data);
        }
    }
    Ok(())
}

/// Table-like files (several lines, each at least `name value`) become one
/// key per line; anything else is one value with its lines rejoined.
fn insert_sysctl(key: String, lines: &[String], data: &mut BTreeMap<String, Reading>) {
    let rows: Vec<Vec<&str>> = lines
        .iter()
        .map(|l| l.split_whitespace().collect())
        .collect();
    if rows.len() > 1 && rows.iter().all(|r| r.len() >= 2) {
        for row in rows {
            data.insert(
                format!("{key}/{}", row[0]),
                Reading::from(row[1..].join(" ")),
            );
        }
    } else {
        data.insert(key, Reading::from(lines.join("\n")));
    }
}

/// Loaded kernel modules, each `true`.
pub fn kmod(root: &Root) -> Result<Subtype> {
    let mut data = BTreeMap::new();
    for line in read_lines(&root.join(MODULES))? {
        if let Some(name) = line.split_whitespace().next() {
            data.insert(name.to_string(), Reading::Bool(true));
        }
    }
    Ok(subtype("kmod", data))
}

/// os-release pairs, `/usr/lib/os-release` when `/etc/os-release` is absent.
/// Quote characters are stripped from both ends, not parsed as shell quoting.
pub fn release(root: &Root) -> Result<Subtype> {
    let etc = root.resolve(OS_RELEASE);
    let path = if etc.exists() {
        etc
    } else {
        root.resolve(OS_RELEASE_FALLBACK)
    };
    let lines = read_lines(&path).map_err(|e| match e.kind() {
        ErrorKind::NotFound => Error::not_found(format!(
            "neither {OS_RELEASE} nor {OS_RELEASE_FALLBACK} exists"
        )),
        _ => e,
    })?;
    let mut data = BTreeMap::new();
    for line in &lines {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim().trim_matches(['"', '\'']);
        if !value.is_empty() {
            data.insert(key.trim().to_string(), Reading::from(value));
        }
    }
    Ok(subtype("release", data))
}

fn subtype(name: &str, data: BTreeMap<String, Reading>) -> Subtype {
    Subtype {
        subtype: name.into(),
        data,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        entries(text, '\n').into_iter().map(String::from).collect()
    }

    #[test]
    fn sysctl_expands_tables_and_keeps_single_lines() {
        let mut data = BTreeMap::new();
        insert_sysctl("/k/t".into(), &lines("a 1 2\nb\t3\n"), &mut data);
        insert_sysctl("/k/one".into(), &lines("4\t4\t1\t7\n"), &mut data);
        insert_sysctl("/k/mixed".into(), &lines("file\npipe x\n"), &mut data);
        insert_sysctl("/k/empty".into(), &lines("\n# c\n"), &mut data);
        let get = |k: &str| data.get(k).map(Reading::render);
        assert_eq!(get("/k/t/a").as_deref(), Some("1 2"));
        assert_eq!(get("/k/t/b").as_deref(), Some("3"));
        assert_eq!(get("/k/t"), None);
        assert_eq!(get("/k/one").as_deref(), Some("4\t4\t1\t7"));
        assert_eq!(get("/k/mixed").as_deref(), Some("file\npipe x"));
        assert_eq!(get("/k/empty").as_deref(), Some(""));
    }
}
