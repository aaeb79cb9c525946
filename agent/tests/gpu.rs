//! The GPU collector with a fake NVML source and fake `nvidia-smi`
//! executables (shell scripts in temporary directories, passed by path so no
//! test touches the global `PATH`).

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use aicr::model::snapshot::{Measurement, Reading};
use aicr_agent::collect::gpu::{self, GpuBackend, GpuOptions, GpuSource, Query, QueryError};

/// Writing an executable while another thread forks can leave the file busy
/// (ETXTBSY) when it is run; scripted tests take turns.
static SCRIPTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[derive(Clone)]
struct FakeGpu {
    count: Query<u32>,
    unsupported: bool,
    failing: bool,
}

impl FakeGpu {
    fn h100(count: u32) -> FakeGpu {
        FakeGpu {
            count: Ok(count),
            unsupported: false,
            failing: false,
        }
    }

    fn field<T>(&self, v: T) -> Query<T> {
        if self.unsupported {
            Err(QueryError::NotSupported)
        } else if self.failing {
            Err(QueryError::Failed("GPU is lost".into()))
        } else {
            Ok(v)
        }
    }
}

impl GpuSource for FakeGpu {
    fn driver_version(&self) -> Query<String> {
        Ok("570.86.15".into())
    }
    fn cuda_driver_version(&self) -> Query<i32> {
        Ok(12080)
    }
    fn device_count(&self) -> Query<u32> {
        self.count.clone()
    }
    fn name(&self) -> Query<String> {
        self.field("NVIDIA H100 80GB HBM3".into())
    }
    fn architecture(&self) -> Query<String> {
        self.field("Hopper".into())
    }
    fn display_mode(&self) -> Query<bool> {
        self.field(true)
    }
    fn display_active(&self) -> Query<bool> {
        self.field(false)
    }
    fn persistence_mode(&self) -> Query<bool> {
        self.field(false)
    }
    fn addressing_mode(&self) -> Query<u32> {
        self.field(0)
    }
    fn vbios_version(&self) -> Query<String> {
        self.field("96.00.A5.00.01".into())
    }
    fn gsp_firmware_version(&self) -> Query<String> {
        self.field("570.86.15".into())
    }
    fn mig_mode(&self) -> Query<u32> {
        self.field(1)
    }
}

fn with_source(fake: FakeGpu, smi: PathBuf) -> GpuOptions {
    GpuOptions {
        backend: GpuBackend::Source(Arc::new(move || Ok(Box::new(fake.clone())))),
        smi_program: smi,
        timeout: Duration::from_secs(5),
    }
}

fn failing_init(smi: PathBuf) -> GpuOptions {
    GpuOptions {
        backend: GpuBackend::Source(Arc::new(|| Err("NVML library not found".into()))),
        smi_program: smi,
        timeout: Duration::from_secs(5),
    }
}

fn smi_data(m: &Measurement) -> &BTreeMap<String, Reading> {
    assert_eq!(m.kind, "GPU");
    assert_eq!(m.subtypes.len(), 1);
    assert_eq!(m.subtypes[0].subtype, "smi");
    &m.subtypes[0].data
}

fn rendered(m: &Measurement) -> Vec<(String, String)> {
    smi_data(m)
        .iter()
        .map(|(k, v)| (k.clone(), v.render()))
        .collect()
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

const H100: &[(&str, &str)] = &[
    ("cuda-version", "12.8"),
    ("driver", "570.86.15"),
    ("gpu-count", "2"),
    ("gpu.addressing-mode", "None"),
    ("gpu.display-active", "Disabled"),
    ("gpu.display-mode", "Enabled"),
    ("gpu.gsp-firmware-version", "570.86.15"),
    ("gpu.mig-mode", "Enabled"),
    ("gpu.model", "NVIDIA H100 80GB HBM3"),
    ("gpu.persistence-mode", "Disabled"),
    ("gpu.product-architecture", "Hopper"),
    ("gpu.vbios-version", "96.00.A5.00.01"),
];

fn only_count_zero(m: &Measurement) {
    assert_eq!(smi_data(m).len(), 1, "{m:?}");
    assert_eq!(smi_data(m)["gpu-count"], Reading::Int(0));
}

/// `nvidia-smi -q -x` as an H100 node prints it, trimmed to what matters
/// plus some elements the collector must ignore.
const H100_XML: &str = r#"<?xml version="1.0" ?>
<!DOCTYPE nvidia_smi_log SYSTEM "nvsmi_device_v12.dtd">
<nvidia_smi_log>
	<timestamp>Fri Nov 28 01:12:40 2026</timestamp>
	<driver_version>570.86.15</driver_version>
	<cuda_version>12.8</cuda_version>
	<attached_gpus>8</attached_gpus>
	<gpu id="00000000:18:00.0">
		<product_name>NVIDIA H100 80GB HBM3</product_name>
		<product_brand>NVIDIA</product_brand>
		<product_architecture>Hopper</product_architecture>
		<display_mode>Enabled</display_mode>
		<display_active>Disabled</display_active>
		<persistence_mode>Disabled</persistence_mode>
		<addressing_mode>None</addressing_mode>
		<mig_mode>
			<current_mig>Enabled</current_mig>
			<pending_mig>Enabled</pending_mig>
		</mig_mode>
		<vbios_version>96.00.A5.00.01</vbios_version>
		<gsp_firmware_version>570.86.15</gsp_firmware_version>
	</gpu>
	<gpu id="00000000:2A:00.0">
		<product_name>NVIDIA H100 80GB HBM3</product_name>
		<mig_mode><current_mig>Disabled</current_mig></mig_mode>
	</gpu>
</nvidia_smi_log>
"#;

const NO_GPU_XML: &str = r#"<?xml version="1.0" ?>
<!DOCTYPE nvidia_smi_log SYSTEM "nvsmi_device_v12.dtd">
<nvidia_smi_log>
	<driver_version>570.86.15</driver_version>
	<cuda_version>12.8</cuda_version>
	<attached_gpus>0</attached_gpus>
</nvidia_smi_log>
"#;

/// A fake `nvidia-smi` that checks its arguments and runs `body`.
fn fake_smi(dir: &tempfile::TempDir, body: &str) -> PathBuf {
    let path = dir.path().join("nvidia-smi");
    let script = format!(
        "#!/bin/sh\nif [ \"$1 $2\" != \"-q -x\" ]; then echo \"bad args: $*\" >&2; exit 2; fi\n{body}\n"
    );
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn printing(xml: &str) -> String {
    format!("cat <<'XML'\n{xml}XML")
}

fn nowhere() -> PathBuf {
    PathBuf::from("/nonexistent/aicr-test/nvidia-smi")
}

#[tokio::test]
async fn nvml_source_describes_the_first_gpu() {
    let m = gpu::collect(&with_source(FakeGpu::h100(2), nowhere())).await;
    assert_eq!(rendered(&m), pairs(H100));
    let data = smi_data(&m);
    assert_eq!(data["gpu-count"], Reading::Int(2));
    assert!(
        data.iter()
            .filter(|(k, _)| *k != "gpu-count")
            .all(|(_, v)| matches!(v, Reading::Str(_)))
    );
}

#[tokio::test]
async fn zero_gpus_keep_driver_and_cuda_only() {
    let m = gpu::collect(&with_source(FakeGpu::h100(0), nowhere())).await;
    assert_eq!(
        rendered(&m),
        pairs(&[
            ("cuda-version", "12.8"),
            ("driver", "570.86.15"),
            ("gpu-count", "0")
        ])
    );
}

#[tokio::test]
async fn unsupported_and_failed_queries_read_na() {
    for fake in [
        FakeGpu {
            unsupported: true,
            ..FakeGpu::h100(1)
        },
        FakeGpu {
            failing: true,
            ..FakeGpu::h100(1)
        },
    ] {
        let m = gpu::collect(&with_source(fake, nowhere())).await;
        let data = smi_data(&m);
        assert_eq!(data.len(), 12);
        for (k, v) in data.iter().filter(|(k, _)| k.starts_with("gpu.")) {
            assert_eq!(v, &Reading::Str("N/A".into()), "{k}");
        }
        assert_eq!(data["driver"], Reading::Str("570.86.15".into()));
    }
}

#[tokio::test]
async fn failing_count_degrades_to_zero() {
    let fake = FakeGpu {
        count: Err(QueryError::Failed("Unknown Error".into())),
        ..FakeGpu::h100(1)
    };
    only_count_zero(&gpu::collect(&with_source(fake, nowhere())).await);
}

#[tokio::test]
async fn init_failure_falls_back_to_nvidia_smi_with_the_same_readings() {
    let _turn = SCRIPTS.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let smi = fake_smi(&dir, &printing(H100_XML));
    let from_smi = gpu::collect(&failing_init(smi.clone())).await;
    assert_eq!(rendered(&from_smi), pairs(H100));

    let from_nvml = gpu::collect(&with_source(FakeGpu::h100(2), smi)).await;
    assert_eq!(from_smi, from_nvml);
}

#[tokio::test]
async fn smi_only_backend_with_no_gpus() {
    let _turn = SCRIPTS.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let opts = GpuOptions {
        backend: GpuBackend::Smi,
        ..failing_init(fake_smi(&dir, &printing(NO_GPU_XML)))
    };
    let m = gpu::collect(&opts).await;
    assert_eq!(
        rendered(&m),
        pairs(&[
            ("cuda-version", "12.8"),
            ("driver", "570.86.15"),
            ("gpu-count", "0")
        ])
    );
}

#[tokio::test]
async fn no_nvml_and_no_nvidia_smi_gives_zero_gpus() {
    only_count_zero(&gpu::collect(&failing_init(nowhere())).await);
}

#[tokio::test]
async fn nvidia_smi_failures_give_zero_gpus() {
    let _turn = SCRIPTS.lock().await;
    let bodies = [
        "echo 'NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver.' >&2; exit 9",
        "echo 'this is not XML <'",
        "echo '<?xml version=\"1.0\"?><other/>'",
    ];
    for body in bodies {
        let dir = tempfile::tempdir().unwrap();
        only_count_zero(&gpu::collect(&failing_init(fake_smi(&dir, body))).await);
    }
}

#[tokio::test]
async fn hanging_nvidia_smi_is_cut_off() {
    let _turn = SCRIPTS.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let opts = GpuOptions {
        timeout: Duration::from_millis(300),
        ..failing_init(fake_smi(&dir, "exec sleep 30"))
    };
    let started = std::time::Instant::now();
    only_count_zero(&gpu::collect(&opts).await);
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn real_backend_never_crashes() {
    // On a machine without a GPU this exercises NVML's load failure and the
    // nvidia-smi lookup on PATH; on a GPU machine it reads real values.
    let m = gpu::collect(&GpuOptions::default()).await;
    assert!(matches!(smi_data(&m)["gpu-count"], Reading::Int(n) if n >= 0));
}
