//! `collect_node`: all node-local collectors together over one fixture root,
//! with a real D-Bus peer for systemd and a fake GPU source.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::FakeSystemd;
use aicr::model::snapshot::{Measurement, Reading};
use aicr_agent::collect::gpu::{GpuBackend, GpuOptions, GpuSource, Query, QueryError};
use aicr_agent::collect::{CollectOptions, Root, Timeouts, collect_node, systemd};
use zbus::{Guid, connection::Builder};

/// A GPU source whose every answer takes `delay` (a wedged driver) and
/// which reports no GPUs.
struct SlowGpu {
    delay: Duration,
}

impl SlowGpu {
    fn wait<T>(&self, v: T) -> Query<T> {
        std::thread::sleep(self.delay);
        Ok(v)
    }
}

impl GpuSource for SlowGpu {
    fn driver_version(&self) -> Query<String> {
        self.wait("580.1".into())
    }
    fn cuda_driver_version(&self) -> Query<i32> {
        self.wait(13000)
    }
    fn device_count(&self) -> Query<u32> {
        self.wait(0)
    }
    fn name(&self) -> Query<String> {
        Err(QueryError::NotSupported)
    }
    fn architecture(&self) -> Query<String> {
        Err(QueryError::NotSupported)
    }
    fn display_mode(&self) -> Query<bool> {
        Err(QueryError::NotSupported)
    }
    fn display_active(&self) -> Query<bool> {
        Err(QueryError::NotSupported)
    }
    fn persistence_mode(&self) -> Query<bool> {
        Err(QueryError::NotSupported)
    }
    fn addressing_mode(&self) -> Query<u32> {
        Err(QueryError::NotSupported)
    }
    fn vbios_version(&self) -> Query<String> {
        Err(QueryError::NotSupported)
    }
    fn gsp_firmware_version(&self) -> Query<String> {
        Err(QueryError::NotSupported)
    }
    fn mig_mode(&self) -> Query<u32> {
        Err(QueryError::NotSupported)
    }
}

fn write(root: &Root, abs: &str, content: &str) {
    let path = root.join(abs);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

fn options(root: Root, gpu_delay: Duration) -> CollectOptions {
    CollectOptions {
        root,
        gpu: GpuOptions {
            backend: GpuBackend::Source(Arc::new(move || {
                Ok(Box::new(SlowGpu { delay: gpu_delay }))
            })),
            smi_program: PathBuf::from("/nonexistent/aicr-test/nvidia-smi"),
            timeout: Duration::from_secs(1),
        },
        ..CollectOptions::default()
    }
}

fn kinds(ms: &[Measurement]) -> Vec<&str> {
    ms.iter().map(|m| m.kind.as_str()).collect()
}

#[tokio::test]
async fn collects_systemd_os_and_gpu_in_fixed_order() {
    let fake = FakeSystemd::start().await;
    write(&fake.root, "/proc/cmdline", "ro quiet\n");
    write(
        &fake.root,
        "/etc/os-release",
        "ID=ubuntu\nVERSION_ID=\"24.04\"\n",
    );
    let ms = collect_node(&options(fake.root.clone(), Duration::ZERO)).await;
    assert_eq!(kinds(&ms), ["SystemD", "OS", "GPU"]);

    let units: Vec<&str> = ms[0].subtypes.iter().map(|s| s.subtype.as_str()).collect();
    assert_eq!(units, ["containerd.service", "kubelet.service"]);
    assert_eq!(
        fake.asked.lock().unwrap().len(),
        systemd::DEFAULT_UNITS.len()
    );
    let os: Vec<&str> = ms[1].subtypes.iter().map(|s| s.subtype.as_str()).collect();
    assert_eq!(os, ["grub", "release"]);
    let smi = &ms[2].subtype("smi").unwrap().data;
    assert_eq!(smi["gpu-count"], Reading::Int(0));
    assert_eq!(smi["cuda-version"], Reading::Str("13.0".into()));
}

#[tokio::test]
async fn defaults_describe_the_standard_units_with_ten_second_limits() {
    let opts = CollectOptions::default();
    assert_eq!(opts.root, Root::host());
    assert_eq!(opts.systemd_units, systemd::DEFAULT_UNITS);
    assert_eq!(opts.timeouts.gpu, Duration::from_secs(10));
}

#[tokio::test]
async fn a_wedged_gpu_source_degrades_to_zero_gpus_within_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let opts = CollectOptions {
        timeouts: Timeouts {
            gpu: Duration::from_millis(100),
            ..Timeouts::default()
        },
        ..options(Root::new(dir.path()), Duration::from_secs(1))
    };
    let started = Instant::now();
    let ms = collect_node(&opts).await;
    // The source alone would take three seconds.
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(kinds(&ms), ["SystemD", "OS", "GPU"]);
    let smi = &ms[2].subtype("smi").unwrap().data;
    assert_eq!(smi.len(), 1);
    assert_eq!(smi["gpu-count"], Reading::Int(0));
}

#[tokio::test]
async fn a_collector_past_its_limit_is_left_out() {
    // A peer that authenticates and then never answers a call.
    let dir = tempfile::tempdir().unwrap();
    let root = Root::new(dir.path());
    let socket = root.join(systemd::PRIVATE_SOCKET);
    std::fs::create_dir_all(socket.parent().unwrap()).unwrap();
    let listener = tokio::net::UnixListener::bind(&socket).unwrap();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let _conn = Builder::unix_stream(stream.into_std().unwrap())
            .server(Guid::generate())
            .p2p()
            .build()
            .await
            .unwrap();
        std::future::pending::<()>().await;
    });
    write(&root, "/proc/modules", "nvidia 1 0 - Live 0x0\n");
    let opts = CollectOptions {
        timeouts: Timeouts {
            systemd: Duration::from_millis(200),
            ..Timeouts::default()
        },
        ..options(root, Duration::ZERO)
    };
    let ms = collect_node(&opts).await;
    assert_eq!(kinds(&ms), ["OS", "GPU"]);
    assert_eq!(ms[0].subtypes.len(), 1);
}

#[tokio::test]
async fn a_panicking_gpu_source_degrades_to_zero_gpus() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(Root::new(dir.path()), Duration::ZERO);
    opts.gpu.backend = GpuBackend::Source(Arc::new(|| panic!("driver bug")));
    let ms = collect_node(&opts).await;
    assert_eq!(kinds(&ms), ["SystemD", "OS", "GPU"]);
    let smi = &ms[2].subtype("smi").unwrap().data;
    assert_eq!(smi.len(), 1);
    assert_eq!(smi["gpu-count"], Reading::Int(0));
}
