//! The OS collector against fixture host trees built in temporary
//! directories.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use aicr::model::snapshot::{Measurement, Reading, Subtype};
use aicr_agent::collect::{MAX_TEXT_BYTES, Root, os};

struct Host {
    dir: tempfile::TempDir,
}

impl Host {
    fn new() -> Host {
        Host {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn root(&self) -> Root {
        Root::new(self.dir.path())
    }

    fn write(&self, abs: &str, content: impl AsRef<[u8]>) -> &Host {
        let path = self.root().join(abs);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
        self
    }

    /// The minimum tree in which every OS subtype succeeds.
    fn complete() -> Host {
        let h = Host::new();
        h.write("/proc/cmdline", "ro\n")
            .write("/proc/sys/kernel/osrelease", "6.8.0\n")
            .write("/proc/modules", "")
            .write("/etc/os-release", "ID=ubuntu\n");
        h
    }
}

fn data(s: &Subtype) -> Vec<(&str, String)> {
    s.data
        .iter()
        .map(|(k, v)| (k.as_str(), v.render()))
        .collect()
}

fn sub<'a>(m: &'a Measurement, name: &str) -> &'a Subtype {
    m.subtype(name)
        .unwrap_or_else(|| panic!("no {name} subtype in {m:?}"))
}

fn names(m: &Measurement) -> Vec<&str> {
    m.subtypes.iter().map(|s| s.subtype.as_str()).collect()
}

#[test]
fn all_subtypes_in_spec_order() {
    let h = Host::complete();
    let m = os::collect(&h.root());
    assert_eq!(m.kind, "OS");
    assert_eq!(names(&m), ["grub", "sysctl", "kmod", "release"]);
}

#[test]
fn grub_splits_flags_quotes_repeats_and_drops_root() {
    let h = Host::new();
    h.write(
        "/proc/cmdline",
        "BOOT_IMAGE=/vmlinuz-6.8.0 root=UUID=abc ro  quiet foo=\"a b\" hugepagesz=1G \
         hugepagesz=2M  console=ttyS0 =odd key= #hidden x==y\n",
    );
    let s = os::grub(&h.root()).unwrap();
    assert_eq!(
        data(&s),
        [
            ("", "odd".to_string()),
            ("BOOT_IMAGE", "/vmlinuz-6.8.0".into()),
            ("b\"", "".into()),
            ("console", "ttyS0".into()),
            ("foo", "\"a".into()),
            ("hugepagesz", "2M".into()),
            ("key", "".into()),
            ("quiet", "".into()),
            ("ro", "".into()),
            ("x", "=y".into()),
        ]
    );
    assert!(s.data.values().all(|v| matches!(v, Reading::Str(_))));
}

#[test]
fn grub_stops_at_the_arguments_for_init() {
    let h = Host::new();
    h.write(
        "/proc/cmdline",
        "BOOT_IMAGE=/vmlinuz ro quiet -- single splash=no\n",
    );
    let s = os::grub(&h.root()).unwrap();
    assert_eq!(
        data(&s),
        [
            ("BOOT_IMAGE", "/vmlinuz".to_string()),
            ("quiet", "".into()),
            ("ro", "".into()),
        ]
    );
}

#[test]
fn empty_files_give_empty_subtypes() {
    let h = Host::new();
    h.write("/proc/cmdline", "")
        .write("/proc/modules", "\n\n")
        .write("/etc/os-release", "# only a comment\n")
        .write("/proc/sys/kernel/empty", "");
    let m = os::collect(&h.root());
    assert_eq!(names(&m), ["grub", "sysctl", "kmod", "release"]);
    assert!(sub(&m, "grub").data.is_empty());
    assert!(sub(&m, "kmod").data.is_empty());
    assert!(sub(&m, "release").data.is_empty());
    assert_eq!(
        data(sub(&m, "sysctl")),
        [("/proc/sys/kernel/empty", String::new())]
    );
}

#[test]
fn missing_sources_skip_only_their_subtype() {
    let h = Host::new();
    h.write("/proc/modules", "nvidia 1 0 - Live 0x0\n");
    let m = os::collect(&h.root());
    assert_eq!(names(&m), ["kmod"]);
}

#[test]
fn oversized_and_binary_files_are_skipped() {
    let h = Host::complete();
    let big = vec![b'a'; MAX_TEXT_BYTES as usize + 1];
    h.write("/proc/cmdline", &big)
        .write("/proc/modules", [b'n', 0xff, 0xfe, b'\n'])
        .write("/proc/sys/kernel/big", &big)
        .write("/proc/sys/kernel/binary", [0xc3, 0x28]);
    let m = os::collect(&h.root());
    assert_eq!(names(&m), ["sysctl", "release"]);
    assert_eq!(
        data(sub(&m, "sysctl")),
        [("/proc/sys/kernel/osrelease", "6.8.0".to_string())]
    );
}

#[test]
fn unreadable_files_are_skipped() {
    let h = Host::complete();
    h.write("/proc/sys/kernel/secret", "42\n");
    let secret = h.root().join("/proc/sys/kernel/secret");
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o000)).unwrap();
    // A directory where a file is expected cannot be read even by root.
    fs::remove_file(h.root().join("/proc/cmdline")).unwrap();
    fs::create_dir(h.root().join("/proc/cmdline")).unwrap();
    let privileged = fs::read(&secret).is_ok();
    // A FIFO would block a reader forever; it must be refused, not opened.
    fs::remove_file(h.root().join("/proc/modules")).unwrap();
    let status = std::process::Command::new("mkfifo")
        .arg(h.root().join("/proc/modules"))
        .status()
        .unwrap();
    assert!(status.success());

    let m = os::collect(&h.root());
    assert_eq!(names(&m), ["sysctl", "release"]);
    let sysctl = sub(&m, "sysctl");
    // Root bypasses mode bits, so there the file is simply read.
    assert_eq!(
        sysctl.data.contains_key("/proc/sys/kernel/secret"),
        privileged
    );
    assert!(sysctl.data.contains_key("/proc/sys/kernel/osrelease"));
}

#[test]
fn sysctl_expands_multi_field_files_and_keeps_tabs() {
    let h = Host::complete();
    h.write("/proc/sys/kernel/printk", "4\t4\t1\t7\n")
        .write("/proc/sys/kernel/core_modes", "file\npipe\n")
        .write(
            "/proc/sys/kernel/version",
            "#1 SMP PREEMPT_DYNAMIC Tue Nov  5 00:21:55 UTC 2024\n",
        )
        .write("/proc/sys/fs/table", "alpha 1   2\n# comment\nbeta\t3\n\n")
        .write("/proc/sys/fs/half", "alpha 1\nbeta\n")
        .write("/proc/sys/fs/single_pair", "alpha 1\n")
        .write("/proc/sys/vm/deep/er/value", "  padded  \n");
    let s = os::sysctl(&h.root()).unwrap();
    assert_eq!(
        data(&s),
        [
            ("/proc/sys/fs/half", "alpha 1\nbeta".to_string()),
            ("/proc/sys/fs/single_pair", "alpha 1".into()),
            ("/proc/sys/fs/table/alpha", "1 2".into()),
            ("/proc/sys/fs/table/beta", "3".into()),
            ("/proc/sys/kernel/core_modes", "file\npipe".into()),
            ("/proc/sys/kernel/osrelease", "6.8.0".into()),
            ("/proc/sys/kernel/printk", "4\t4\t1\t7".into()),
            ("/proc/sys/kernel/version", "".into()),
            ("/proc/sys/vm/deep/er/value", "padded".into()),
        ]
    );
}

#[test]
fn sysctl_leaves_out_net_cdrom_symlinks_and_special_files() {
    let h = Host::complete();
    h.write("/proc/sys/net/ipv4/ip_forward", "1\n")
        .write("/proc/sys/netfilter_like", "kept\n")
        .write("/proc/sys/dev/cdrom/autoclose", "1\n")
        .write(
            "/proc/sys/dev/cdrom/info",
            "CD-ROM information\n\ndrive name:\tsr0\ndrive speed:\t1\n",
        )
        .write("/proc/sys/dev/raid/speed_limit_max", "200000\n");
    let sys = h.root().join("/proc/sys");
    std::os::unix::fs::symlink(sys.join("kernel/osrelease"), sys.join("link")).unwrap();
    let fifo = sys.join("fifo");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());

    let s = os::sysctl(&h.root()).unwrap();
    let keys: Vec<&str> = s.data.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "/proc/sys/dev/raid/speed_limit_max",
            "/proc/sys/kernel/osrelease",
            "/proc/sys/netfilter_like",
        ]
    );
}

#[test]
fn sysctl_fails_whole_when_a_directory_cannot_be_listed() {
    let h = Host::complete();
    fs::remove_dir_all(h.root().join("/proc/sys")).unwrap();
    assert!(os::sysctl(&h.root()).is_err());
    assert_eq!(names(&os::collect(&h.root())), ["grub", "kmod", "release"]);
}

#[test]
fn kmod_takes_the_first_field_of_each_line() {
    let h = Host::new();
    h.write(
        "/proc/modules",
        "nvidia_uvm 1769472 0 - Live 0x0000000000000000 (POE)\n\
         nvidia 104071168 2 nvidia_uvm, Live 0x0 (POE)\n\
         \n   loop   \n# not a module\n",
    );
    let s = os::kmod(&h.root()).unwrap();
    assert_eq!(
        s.data.iter().collect::<Vec<_>>(),
        [
            (&"loop".to_string(), &Reading::Bool(true)),
            (&"nvidia".to_string(), &Reading::Bool(true)),
            (&"nvidia_uvm".to_string(), &Reading::Bool(true)),
        ]
    );
}

#[test]
fn release_strips_quotes_and_skips_empty_values() {
    let h = Host::new();
    h.write(
        "/etc/os-release",
        "NAME=\"Ubuntu\"\nVERSION_ID=\"24.04\"\nID=ubuntu\nVARIANT=\"\"\nPRETTY_NAME='Ubuntu 24.04.2 LTS'\n\
         ODD=\"'mixed\"'\nHOME_URL=\"https://x/?a=b\"\nno equals sign\n  SPACED = \" v \" \n# ID=commented\n",
    );
    let s = os::release(&h.root()).unwrap();
    assert_eq!(
        data(&s),
        [
            ("HOME_URL", "https://x/?a=b".to_string()),
            ("ID", "ubuntu".into()),
            ("NAME", "Ubuntu".into()),
            ("ODD", "mixed".into()),
            ("PRETTY_NAME", "Ubuntu 24.04.2 LTS".into()),
            ("SPACED", " v ".into()),
            ("VERSION_ID", "24.04".into()),
        ]
    );
}

#[test]
fn release_falls_back_to_usr_lib_only_when_etc_is_absent() {
    let h = Host::new();
    h.write("/usr/lib/os-release", "ID=rhel\n");
    assert_eq!(
        data(&os::release(&h.root()).unwrap()),
        [("ID", "rhel".to_string())]
    );

    h.write("/etc/os-release", "ID=ubuntu\n");
    assert_eq!(
        data(&os::release(&h.root()).unwrap()),
        [("ID", "ubuntu".to_string())]
    );

    // The usual layout: /etc/os-release is an absolute link into /usr/lib,
    // which must resolve inside the root, not on this machine.
    fs::remove_file(h.root().join("/etc/os-release")).unwrap();
    std::os::unix::fs::symlink("/usr/lib/os-release", h.root().join("/etc/os-release")).unwrap();
    assert_eq!(
        data(&os::release(&h.root()).unwrap()),
        [("ID", "rhel".to_string())]
    );

    let empty = Host::new();
    let err = os::release(&empty.root()).unwrap_err();
    assert_eq!(err.kind(), aicr::ErrorKind::NotFound);
}

#[test]
fn host_root_reads_this_machine() {
    // Whatever this machine is, collection must not panic and must keep the
    // subtype order; /proc/cmdline and /proc/modules exist on any Linux.
    let m = os::collect(&Root::host());
    let n = names(&m);
    assert!(n.starts_with(&["grub"]), "{n:?}");
    if Path::new("/proc/sys/kernel/osrelease").exists() {
        let s = sub(&m, "sysctl");
        assert!(s.data.contains_key("/proc/sys/kernel/osrelease"));
        assert!(!s.data.keys().any(|k| k.starts_with("/proc/sys/net/")));
    }
}
