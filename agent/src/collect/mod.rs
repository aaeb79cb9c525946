//! Node-local collection: the host root every collector reads under, the
//! shared text-file rules of the OS and sysctl readers, per-collector time
//! limits, and [`collect_node`], which runs the SystemD, OS and GPU
//! collectors side by side. Collectors degrade and log here; nothing in this
//! module fails a snapshot or touches Kubernetes (the K8s and NodeTopology
//! collectors live beside these and are orchestrated by their caller).

// The one place with unsafe code: raw NVML entry points nvml-wrapper lacks.
#[allow(unsafe_code)]
pub mod gpu;
pub mod os;
pub mod systemd;

use std::fs::File;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use aicr::model::snapshot::Measurement;
use aicr::{Error, ErrorKind, Result};

/// Largest text file a collector reads; anything bigger is not a settings
/// file and is skipped rather than loaded.
pub const MAX_TEXT_BYTES: u64 = 1 << 20;

/// See [`collect_node`]'s GPU limit.
const GPU_GRACE: Duration = Duration::from_millis(500);

/// How many symlinks [`Root::resolve`] follows before giving up; matches the
/// spirit of the kernel's own loop limit without its exact value.
const MAX_SYMLINK_HOPS: usize = 16;

/// The directory that stands for the host's `/`. In an agent pod the host's
/// files are mounted somewhere else, and tests point it at fixture trees, so
/// every absolute host path a collector reads goes through [`Root::join`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root(PathBuf);

impl Root {
    pub fn new(path: impl Into<PathBuf>) -> Root {
        Root(path.into())
    }

    /// The real host: paths are read as they are.
    pub fn host() -> Root {
        Root(PathBuf::from("/"))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Where the host path `abs` (e.g. `/proc/cmdline`) lies under this root.
    pub fn join(&self, abs: &str) -> PathBuf {
        self.0.join(abs.trim_start_matches('/'))
    }

    /// Like [`Root::join`], but a symlink at the end of the path is followed
    /// inside the root: `/etc/os-release -> /usr/lib/os-release` must land on
    /// the mounted host's file, not on this process's own.
    pub fn resolve(&self, abs: &str) -> PathBuf {
        let mut logical = PathBuf::from(abs);
        for _ in 0..MAX_SYMLINK_HOPS {
            let path = self.join(&logical.to_string_lossy());
            let Ok(target) = std::fs::read_link(&path) else {
                return path;
            };
            let joined = logical.parent().unwrap_or(Path::new("/")).join(target);
            logical = confine(&joined);
        }
        self.join(&logical.to_string_lossy())
    }
}

/// `..` resolved lexically and never above `/`, so a link target cannot
/// lead out of the root.
fn confine(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for part in path.components() {
        match part {
            Component::Normal(p) => out.push(p),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

impl Default for Root {
    fn default() -> Root {
        Root::host()
    }
}

/// Read a text file under the shared rules: at most [`MAX_TEXT_BYTES`],
/// valid UTF-8, a regular file. `/proc` files report a size of 0, so the
/// cap is enforced while reading, not from metadata.
pub fn read_text(path: &Path) -> Result<String> {
    let io_err = |e: io::Error| {
        let kind = match e.kind() {
            io::ErrorKind::NotFound => ErrorKind::NotFound,
            _ => ErrorKind::Internal,
        };
        Error::new(kind, format!("failed to read {}: {e}", path.display()))
    };
    // Opening a FIFO or device could block forever; settings are regular
    // files (procfs ones included).
    if !std::fs::metadata(path).map_err(io_err)?.is_file() {
        return Err(Error::internal(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    let file = File::open(path).map_err(io_err)?;
    let mut buf = Vec::new();
    file.take(MAX_TEXT_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(io_err)?;
    if buf.len() as u64 > MAX_TEXT_BYTES {
        return Err(Error::internal(format!(
            "{} is larger than {MAX_TEXT_BYTES} bytes",
            path.display()
        )));
    }
    String::from_utf8(buf)
        .map_err(|_| Error::internal(format!("{} is not valid UTF-8", path.display())))
}

/// Split text into entries at `sep`, trim each, and drop empty entries and
/// `#` comments.
pub fn entries(text: &str, sep: char) -> Vec<&str> {
    text.split(sep)
        .map(str::trim)
        .filter(|e| !e.is_empty() && !e.starts_with('#'))
        .collect()
}

/// [`read_text`] then [`entries`] by line.
pub fn read_lines(path: &Path) -> Result<Vec<String>> {
    let text = read_text(path)?;
    Ok(entries(&text, '\n').into_iter().map(String::from).collect())
}

/// Time limits per collector; past its limit a collector's measurement is
/// left out of the result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub systemd: Duration,
    pub os: Duration,
    pub gpu: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        let limit = Duration::from_secs(10);
        Timeouts {
            systemd: limit,
            os: limit,
            gpu: limit,
        }
    }
}

/// Everything [`collect_node`] needs; `Default` is the real host.
#[derive(Clone)]
pub struct CollectOptions {
    pub root: Root,
    /// Units to describe, one SystemD subtype each, in this order.
    pub systemd_units: Vec<String>,
    pub timeouts: Timeouts,
    pub gpu: gpu::GpuOptions,
}

impl Default for CollectOptions {
    fn default() -> CollectOptions {
        CollectOptions {
            root: Root::host(),
            systemd_units: systemd::DEFAULT_UNITS.map(String::from).to_vec(),
            timeouts: Timeouts::default(),
            gpu: gpu::GpuOptions::default(),
        }
    }
}

/// Run the SystemD, OS and GPU collectors concurrently and return their
/// measurements in that fixed order. A collector that panics or runs past its
/// limit is logged and its measurement left out; this never fails.
pub async fn collect_node(opts: &CollectOptions) -> Vec<Measurement> {
    let systemd = {
        let root = opts.root.clone();
        let units = opts.systemd_units.clone();
        tokio::spawn(async move {
            let units: Vec<&str> = units.iter().map(String::as_str).collect();
            systemd::collect(&root, &units).await
        })
    };
    let os = {
        let root = opts.root.clone();
        tokio::task::spawn_blocking(move || os::collect(&root))
    };
    let t = opts.timeouts;
    let gpu = {
        let mut gpu_opts = opts.gpu.clone();
        gpu_opts.timeout = gpu_opts.timeout.min(t.gpu);
        tokio::spawn(async move { gpu::collect(&gpu_opts).await })
    };
    let (systemd, os, gpu) = tokio::join!(
        bounded(systemd::TYPE, t.systemd, systemd),
        bounded(os::TYPE, t.os, os),
        // The GPU collector keeps its own deadline and degrades to
        // `gpu-count: 0` (as upstream does when nvidia-smi is cut off); the
        // grace only catches an NVML call that blocks past it.
        bounded(gpu::TYPE, t.gpu + GPU_GRACE, gpu),
    );
    [systemd, os, gpu].into_iter().flatten().collect()
}

async fn bounded(
    name: &str,
    limit: Duration,
    task: tokio::task::JoinHandle<Measurement>,
) -> Option<Measurement> {
    let abort = task.abort_handle();
    match tokio::time::timeout(limit, task).await {
        Ok(Ok(m)) => Some(m),
        Ok(Err(e)) => {
            tracing::warn!(collector = name, error = %e, "failed to collect {name} - skipping");
            None
        }
        Err(_) => {
            // A blocking task cannot be stopped; it finishes unobserved.
            abort.abort();
            tracing::warn!(
                collector = name,
                limit = ?limit,
                "failed to collect {name} - skipping: time limit exceeded"
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_trim_and_drop_blank_and_comment_lines() {
        let text = "  a b \n\n# note\n   #also\n\tc\t\n";
        assert_eq!(entries(text, '\n'), vec!["a b", "c"]);
        assert_eq!(entries(" x  y=1 ", ' '), vec!["x", "y=1"]);
        assert!(entries("", '\n').is_empty());
    }

    #[test]
    fn join_puts_absolute_paths_under_the_root() {
        let r = Root::new("/host");
        assert_eq!(r.join("/proc/cmdline"), PathBuf::from("/host/proc/cmdline"));
        assert_eq!(
            Root::host().join("/etc/os-release"),
            PathBuf::from("/etc/os-release")
        );
    }

    #[test]
    fn resolve_follows_absolute_links_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        std::fs::create_dir_all(root.join("/etc")).unwrap();
        std::fs::create_dir_all(root.join("/usr/lib")).unwrap();
        std::fs::write(root.join("/usr/lib/os-release"), "ID=x\n").unwrap();
        std::os::unix::fs::symlink("/usr/lib/os-release", root.join("/etc/os-release")).unwrap();
        assert_eq!(
            root.resolve("/etc/os-release"),
            root.join("/usr/lib/os-release")
        );
        std::fs::remove_file(root.join("/etc/os-release")).unwrap();
        std::os::unix::fs::symlink("../usr/lib/os-release", root.join("/etc/os-release")).unwrap();
        assert_eq!(
            root.resolve("/etc/os-release"),
            root.join("/usr/lib/os-release")
        );
        std::fs::remove_file(root.join("/etc/os-release")).unwrap();
        std::os::unix::fs::symlink(
            "../../../../usr/lib/os-release",
            root.join("/etc/os-release"),
        )
        .unwrap();
        assert_eq!(
            root.resolve("/etc/os-release"),
            root.join("/usr/lib/os-release")
        );
    }

    #[test]
    fn read_text_enforces_the_cap_and_utf8() {
        let dir = tempfile::tempdir().unwrap();
        let exact = dir.path().join("exact");
        std::fs::write(&exact, vec![b'a'; MAX_TEXT_BYTES as usize]).unwrap();
        assert_eq!(read_text(&exact).unwrap().len(), MAX_TEXT_BYTES as usize);
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'a'; MAX_TEXT_BYTES as usize + 1]).unwrap();
        assert!(
            read_text(&big)
                .unwrap_err()
                .message()
                .contains("larger than")
        );
        let bin = dir.path().join("bin");
        std::fs::write(&bin, [0xff, 0xfe, b'\n']).unwrap();
        assert!(read_text(&bin).unwrap_err().message().contains("UTF-8"));
        let missing = read_text(&dir.path().join("none")).unwrap_err();
        assert_eq!(missing.kind(), ErrorKind::NotFound);
    }
}
