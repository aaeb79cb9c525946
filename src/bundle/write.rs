//! Writing a generated bundle to its output directory without ever leaving
//! a partial bundle: everything is written into a hidden staging directory
//! on the same filesystem, then renamed into place. Over an existing
//! directory, top-level entries that already hold exactly what would be
//! written are left alone, and the others are moved aside first and put
//! back if anything fails. It owns the output directory and nothing else.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::BundleFile;
use crate::error::{Error, Result};

/// Top-level names a bundle may contain besides `NNN-*` folders; stale
/// ones from an earlier run are removed when the directory held a bundle.
const MANAGED: &[&str] = &[
    "README.md",
    "deploy.sh",
    "undeploy.sh",
    "recipe.yaml",
    "checksums.txt",
    "app-of-apps.yaml",
    "Chart.yaml",
    "values.yaml",
    "templates",
    "static",
    "data",
    "attestation",
];

fn is_numbered(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() > 4 && b[..3].iter().all(u8::is_ascii_digit) && b[3] == b'-'
}

fn io(what: &str, path: &Path, e: impl std::fmt::Display) -> Error {
    Error::internal(format!("failed to {what} {}: {e}", path.display()))
}

fn write_file(path: &Path, f: &BundleFile) -> Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(f.mode);
    }
    let mut file = opts.open(path).map_err(|e| io("create", path, e))?;
    file.write_all(&f.content)
        .map_err(|e| io("write", path, e))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // Skip the extra syscall when the umask cannot have changed anything.
        if private(f) && crate::sink::umask().is_none_or(|m| f.mode & m != 0) {
            file.set_permissions(std::fs::Permissions::from_mode(f.mode))
                .map_err(|e| io("set permissions on", path, e))?;
        }
    }
    Ok(())
}

/// The directories `rels` need, parents before children.
fn parents<'a>(rels: impl Iterator<Item = &'a str>) -> BTreeSet<&'a str> {
    let mut dirs = BTreeSet::new();
    for rel in rels {
        let mut end = 0;
        while let Some(i) = rel[end..].find('/') {
            end += i;
            dirs.insert(&rel[..end]);
            end += 1;
        }
    }
    dirs
}

/// Write `all` under `root`, creating each directory once. Files are
/// written by a few threads: creating ~100 files is dominated by the
/// filesystem's per-file cost, which overlaps well.
fn write_all(root: &Path, all: &[(&str, &BundleFile)]) -> Result<()> {
    for d in parents(all.iter().map(|(rel, _)| *rel)) {
        let p = root.join(d);
        std::fs::create_dir(&p).map_err(|e| io("create directory", &p, e))?;
    }
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 4);
    let per = all.len().div_ceil(workers).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = all
            .chunks(per)
            .map(|chunk| {
                scope.spawn(move || {
                    chunk
                        .iter()
                        .try_for_each(|(rel, f)| write_file(&root.join(rel), f))
                })
            })
            .collect();
        handles.into_iter().try_for_each(|h| {
            h.join()
                .unwrap_or_else(|_| Err(Error::internal("bundle writer thread panicked")))
        })
    })
}

/// Directories that must be created for `out` to exist, outermost first.
fn missing_ancestors(out: &Path) -> Vec<PathBuf> {
    let mut missing = Vec::new();
    let mut cur = out.parent();
    while let Some(p) = cur {
        if p.as_os_str().is_empty() || p.exists() {
            break;
        }
        missing.push(p.to_path_buf());
        cur = p.parent();
    }
    missing.reverse();
    missing
}

/// Write `files` as the bundle in `out` (absolute). Returns the number of
/// files written.
pub fn write_tree(files: &BTreeMap<String, BundleFile>, out: &Path) -> Result<usize> {
    let exists = match std::fs::symlink_metadata(out) {
        Ok(m) if m.is_dir() => true,
        Ok(_) => {
            return Err(Error::invalid(format!(
                "output path {} exists and is not a directory",
                out.display()
            )));
        }
        Err(_) => false,
    };
    let created = if exists {
        Vec::new()
    } else {
        missing_ancestors(out)
    };
    for d in &created {
        if let Err(e) = std::fs::create_dir(d) {
            remove_created(&created);
            return Err(Error::invalid(format!(
                "cannot create output directory {}: {e}",
                d.display()
            )));
        }
    }
    let result = stage_and_commit(files, out, exists);
    if result.is_err() {
        remove_created(&created);
    }
    result
}

fn remove_created(created: &[PathBuf]) {
    for d in created.iter().rev() {
        let _ = std::fs::remove_dir(d);
    }
}

fn stage_and_commit(
    files: &BTreeMap<String, BundleFile>,
    out: &Path,
    exists: bool,
) -> Result<usize> {
    let staging_parent = if exists {
        out.to_path_buf()
    } else {
        out.parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."))
    };
    let kept = if exists {
        unchanged(files, out)
    } else {
        BTreeSet::new()
    };
    let changed: Vec<(&str, &BundleFile)> = files
        .iter()
        .map(|(rel, f)| (rel.as_str(), f))
        .filter(|(rel, _)| !kept.contains(top(rel)))
        .collect();
    let outdated = if exists {
        outdated(files, &kept, out)?
    } else {
        Vec::new()
    };
    if exists && changed.is_empty() && outdated.is_empty() {
        return Ok(files.len());
    }
    let staging = tempfile::Builder::new()
        .prefix(".aicr-bundle-")
        .tempdir_in(&staging_parent)
        .map_err(|e| {
            Error::invalid(format!(
                "output directory {} is not writable: {e}",
                staging_parent.display()
            ))
        })?;
    write_all(staging.path(), &changed)?;
    if !exists {
        let staged = staging.keep();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o755));
        }
        if let Err(e) = std::fs::rename(&staged, out) {
            let _ = std::fs::remove_dir_all(&staged);
            return Err(io("move the bundle into", out, e));
        }
        return Ok(files.len());
    }
    let new_names: BTreeSet<&str> = changed.iter().map(|(rel, _)| top(rel)).collect();
    replace_entries(&new_names, &outdated, out, staging.path())?;
    Ok(files.len())
}

/// The top-level name a bundle path sits under.
fn top(rel: &str) -> &str {
    rel.split('/').next().unwrap_or(rel)
}

/// Public files (0644, 0755) take the user's umask, as any file a command
/// writes; a private one (0600: values, which carry --set credentials)
/// stays exactly private whatever the umask says.
fn private(f: &BundleFile) -> bool {
    f.mode & 0o077 == 0
}

/// The mode `write_file` leaves on `f`.
fn written_mode(f: &BundleFile) -> u32 {
    if private(f) {
        f.mode
    } else {
        crate::sink::under_umask(f.mode)
    }
}

/// The top-level entries of `files` that `out` already holds exactly: the
/// same files with the same bytes and modes, directories as `create_dir`
/// makes them, and nothing else (no links, no extra files). A rerun leaves
/// those in place and writes only what changed, so a bundle regenerated
/// unchanged frees and creates no inode, and keeps its mtimes for `make`
/// and file watchers. Kept entries are identical to what would have been
/// written, so the commit stays all or nothing.
fn unchanged<'a>(files: &'a BTreeMap<String, BundleFile>, out: &Path) -> BTreeSet<&'a str> {
    let mut by_top: BTreeMap<&str, Vec<(&str, &BundleFile)>> = BTreeMap::new();
    for (rel, f) in files {
        by_top.entry(top(rel)).or_default().push((rel, f));
    }
    by_top
        .into_iter()
        .filter(|(name, entries)| holds_entry(out, name, entries))
        .map(|(name, _)| name)
        .collect()
}

fn holds_entry(out: &Path, name: &str, entries: &[(&str, &BundleFile)]) -> bool {
    if let [(rel, f)] = entries
        && *rel == name
    {
        return crate::sink::holds(&out.join(rel), &f.content, written_mode(f));
    }
    let mut found_files = BTreeSet::new();
    let mut found_dirs = BTreeSet::new();
    if !walk(out, name, &mut found_files, &mut found_dirs) {
        return false;
    }
    let want_dirs = parents(entries.iter().map(|(rel, _)| *rel));
    entries
        .iter()
        .map(|(rel, _)| *rel)
        .eq(found_files.iter().map(String::as_str))
        && want_dirs
            .iter()
            .copied()
            .eq(found_dirs.iter().map(String::as_str))
        && entries
            .iter()
            .all(|(rel, f)| crate::sink::holds_regular(&out.join(rel), &f.content, written_mode(f)))
}

/// Every file and directory under the directory `out/rel` (`rel`
/// included), by path relative to `out`, types as the listing gives them.
/// False on anything else (a link, a FIFO), on a directory whose mode
/// `create_dir` would not give, or on a read error.
fn walk(out: &Path, rel: &str, files: &mut BTreeSet<String>, dirs: &mut BTreeSet<String>) -> bool {
    let dir = out.join(rel);
    let Ok(meta) = std::fs::symlink_metadata(&dir) else {
        return false;
    };
    if !meta.is_dir() {
        return false;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o7777 != crate::sink::under_umask(0o777) {
            return false;
        }
    }
    dirs.insert(rel.to_string());
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return false;
    };
    entries.into_iter().all(|e| {
        let Some((name, kind)) = e
            .ok()
            .and_then(|e| Some((e.file_name().into_string().ok()?, e.file_type().ok()?)))
        else {
            return false;
        };
        let child = format!("{rel}/{name}");
        if kind.is_file() {
            files.insert(child);
            true
        } else {
            kind.is_dir() && walk(out, &child, files, dirs)
        }
    })
}

/// The entries of `out` a rerun replaces or removes: those the bundle
/// writes anew and those of an earlier bundle it no longer has, but not
/// those in `kept`, which already hold what the bundle would write.
fn outdated(
    files: &BTreeMap<String, BundleFile>,
    kept: &BTreeSet<&str>,
    out: &Path,
) -> Result<Vec<String>> {
    let new_names: BTreeSet<&str> = files.keys().map(|k| top(k)).collect();
    let was_bundle = out.join(super::checksums::FILE).is_file();
    let mut old_names = Vec::new();
    let entries = std::fs::read_dir(out).map_err(|e| io("read", out, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| io("read", out, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if kept.contains(name.as_str()) {
            continue;
        }
        let stale = is_numbered(&name) || (was_bundle && MANAGED.contains(&name.as_str()));
        if new_names.contains(name.as_str()) || stale {
            old_names.push(name);
        }
    }
    Ok(old_names)
}

/// Swap the staged entries `new_names` into `out`, moving `old_names`
/// aside, with rollback.
fn replace_entries(
    new_names: &BTreeSet<&str>,
    old_names: &[String],
    out: &Path,
    staged: &Path,
) -> Result<()> {
    let aside = tempfile::Builder::new()
        .prefix(".aicr-previous-")
        .tempdir_in(out)
        .map_err(|e| io("create a directory in", out, e))?;
    let mut moved_out: Vec<&str> = Vec::new();
    let mut moved_in: Vec<&str> = Vec::new();
    let rollback = |moved_out: &[&str], moved_in: &[&str]| {
        for n in moved_in {
            let _ = std::fs::rename(out.join(n), staged.join(n));
        }
        for n in moved_out {
            let _ = std::fs::rename(aside.path().join(n), out.join(n));
        }
    };
    for n in old_names {
        if let Err(e) = std::fs::rename(out.join(n), aside.path().join(n)) {
            rollback(&moved_out, &moved_in);
            return Err(io("move aside", &out.join(n), e));
        }
        moved_out.push(n);
    }
    for n in new_names {
        if let Err(e) = std::fs::rename(staged.join(n), out.join(n)) {
            rollback(&moved_out, &moved_in);
            return Err(io("move into place", &out.join(n), e));
        }
        moved_in.push(n);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(pairs: &[(&str, &str)]) -> BTreeMap<String, BundleFile> {
        pairs
            .iter()
            .map(|(p, c)| {
                (
                    p.to_string(),
                    BundleFile {
                        content: c.as_bytes().to_vec().into(),
                        mode: 0o600,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn new_directory_appears_whole() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("a/b/bundle");
        let n = write_tree(&tree(&[("x/y.txt", "1"), ("checksums.txt", "c")]), &out).unwrap();
        assert_eq!(n, 2);
        assert_eq!(std::fs::read_to_string(out.join("x/y.txt")).unwrap(), "1");
        let leftovers: Vec<_> = std::fs::read_dir(d.path().join("a/b")).unwrap().collect();
        assert_eq!(leftovers.len(), 1);
    }

    #[test]
    fn rerun_replaces_stale_folders_and_keeps_foreign_files() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().to_path_buf();
        std::fs::write(out.join("notes.txt"), "mine").unwrap();
        write_tree(
            &tree(&[
                ("001-a/values.yaml", "1"),
                ("002-b/values.yaml", "2"),
                ("checksums.txt", "c"),
                ("static/x.yaml", "s"),
            ]),
            &out,
        )
        .unwrap();
        write_tree(
            &tree(&[("001-b/values.yaml", "3"), ("checksums.txt", "d")]),
            &out,
        )
        .unwrap();
        let mut names: Vec<String> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["001-b", "checksums.txt", "notes.txt"]);
    }

    #[cfg(unix)]
    #[test]
    fn rerun_rewrites_only_the_entries_that_differ() {
        use std::os::unix::fs::MetadataExt;
        let d = tempfile::tempdir().unwrap();
        let out = d.path().to_path_buf();
        let ino = |rel: &str| std::fs::symlink_metadata(out.join(rel)).unwrap().ino();
        let first = tree(&[
            ("001-a/values.yaml", "1"),
            ("001-a/templates/x.yaml", "x"),
            ("002-b/values.yaml", "2"),
            ("003-c/values.yaml", "3"),
            ("004-d/values.yaml", "4"),
            ("005-e/values.yaml", "5"),
            ("checksums.txt", "c"),
        ]);
        write_tree(&first, &out).unwrap();
        let before: BTreeMap<&str, u64> =
            first.keys().map(|rel| (rel.as_str(), ino(rel))).collect();

        write_tree(&first, &out).unwrap();
        let again: BTreeMap<&str, u64> = first.keys().map(|rel| (rel.as_str(), ino(rel))).collect();
        assert_eq!(again, before, "an unchanged bundle is left as it is");

        // Tamper with four entries behind the writer's back: an extra
        // file, a link where a file was, a file's mode, a FIFO where a file
        // was (which must not be waited on).
        std::fs::write(out.join("002-b/extra.txt"), "mine").unwrap();
        std::fs::remove_file(out.join("003-c/values.yaml")).unwrap();
        std::os::unix::fs::symlink(out.join("checksums.txt"), out.join("003-c/values.yaml"))
            .unwrap();
        std::fs::set_permissions(
            out.join("004-d/values.yaml"),
            std::os::unix::fs::PermissionsExt::from_mode(0o640),
        )
        .unwrap();
        std::fs::remove_file(out.join("005-e/values.yaml")).unwrap();
        let mkfifo = std::process::Command::new("mkfifo")
            .arg(out.join("005-e/values.yaml"))
            .status()
            .unwrap();
        assert!(mkfifo.success());
        let mut second = first.clone();
        second.get_mut("checksums.txt").unwrap().content = b"d".to_vec().into();
        write_tree(&second, &out).unwrap();

        assert_eq!(
            ino("001-a/values.yaml"),
            before["001-a/values.yaml"],
            "001-a is unchanged"
        );
        assert_eq!(
            ino("001-a/templates/x.yaml"),
            before["001-a/templates/x.yaml"]
        );
        assert_ne!(ino("checksums.txt"), before["checksums.txt"]);
        assert!(!out.join("002-b/extra.txt").exists());
        assert!(
            std::fs::symlink_metadata(out.join("003-c/values.yaml"))
                .unwrap()
                .is_file()
        );
        for (rel, f) in &second {
            let meta = std::fs::symlink_metadata(out.join(rel)).unwrap();
            assert_eq!(
                std::fs::read(out.join(rel)).unwrap()[..],
                f.content[..],
                "{rel}"
            );
            assert_eq!(meta.mode() & 0o777, 0o600, "{rel}");
        }
        let leftovers: Vec<_> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[cfg(unix)]
    #[test]
    fn unwritable_parent_is_invalid_input_and_leaves_nothing() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let ro = d.path().join("ro");
        std::fs::create_dir(&ro).unwrap();
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
        if std::fs::write(ro.join("probe"), "x").is_ok() {
            return; // running as root: permissions are not enforced
        }
        let e = write_tree(&tree(&[("a", "1")]), &ro.join("out")).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::InvalidRequest);
        assert!(e.to_string().contains("is not writable"), "{e}");
        assert_eq!(std::fs::read_dir(&ro).unwrap().count(), 0);
    }
}
