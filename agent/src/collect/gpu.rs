//! The GPU measurement (`GPU.smi`): driver, CUDA version, GPU count and the
//! first GPU's identity and modes. NVML is asked first (through the
//! [`GpuSource`] trait, so tests feed fixtures); when it cannot be
//! initialised, `nvidia-smi -q -x` is run and its XML read. Both paths give
//! the same keys and texts. The same trait lets the agent wait for device
//! events that would change the measurement. This module only queries; it
//! never changes a GPU setting, and without a GPU it degrades to
//! `gpu-count: 0`.

use std::collections::BTreeMap;
use std::ffi::{c_uint, c_void};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aicr::model::snapshot::{Measurement, Reading, Subtype};
use nvml_wrapper::Nvml;
use nvml_wrapper::bitmasks::event::EventTypes;
use nvml_wrapper::enums::device::DeviceArchitecture;
use nvml_wrapper::error::NvmlError;
use tokio::time::Instant;

pub const TYPE: &str = "GPU";
pub const SUBTYPE: &str = "smi";

/// What nvidia-smi prints for a query the device does not support.
pub const NOT_AVAILABLE: &str = "N/A";

/// Why one query gave no value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryError {
    /// The device or driver does not offer it; rendered as `N/A`.
    NotSupported,
    /// Anything else; also rendered as `N/A`, but logged.
    Failed(String),
}

pub type Query<T> = Result<T, QueryError>;

/// The questions the GPU measurement asks. Per-device queries are about GPU
/// index 0; the measurement describes no other GPU.
pub trait GpuSource {
    fn driver_version(&self) -> Query<String>;
    /// NVML's encoding, e.g. `12080` for CUDA 12.8.
    fn cuda_driver_version(&self) -> Query<i32>;
    fn device_count(&self) -> Query<u32>;
    fn name(&self) -> Query<String>;
    /// The nvidia-smi name (`Hopper`, `Ada Lovelace`, ...).
    fn architecture(&self) -> Query<String>;
    fn display_mode(&self) -> Query<bool>;
    fn display_active(&self) -> Query<bool>;
    fn persistence_mode(&self) -> Query<bool>;
    /// NVML's value: 0 none, 1 HMM, 2 ATS.
    fn addressing_mode(&self) -> Query<u32>;
    fn vbios_version(&self) -> Query<String>;
    fn gsp_firmware_version(&self) -> Query<String>;
    /// Current MIG mode: 1 enabled, 0 disabled.
    fn mig_mode(&self) -> Query<u32>;
    /// Block, calling `on_event(true)` for each device event that can
    /// change this measurement (a MIG reconfiguration, a critical Xid) and
    /// `on_event(false)` at least every `tick`, until `on_event` returns
    /// false. A source without device events answers `NotSupported` at once.
    fn watch_events(&self, tick: Duration, on_event: &mut dyn FnMut(bool) -> bool) -> Query<()> {
        let _ = (tick, on_event);
        Err(QueryError::NotSupported)
    }
}

/// Opens a source; an `Err` (with the reason) means "cannot initialise" and
/// sends collection to nvidia-smi.
pub type OpenSource = Arc<dyn Fn() -> Result<Box<dyn GpuSource>, String> + Send + Sync>;

/// Where GPU data comes from first.
#[derive(Clone)]
pub enum GpuBackend {
    /// NVML from `libnvidia-ml.so.1`, nvidia-smi when it cannot initialise.
    Nvml,
    /// nvidia-smi only.
    Smi,
    /// A caller's source in NVML's place, with the same fallback.
    Source(OpenSource),
}

#[derive(Clone)]
pub struct GpuOptions {
    pub backend: GpuBackend,
    /// The nvidia-smi executable; a bare name is looked up on `PATH`.
    pub smi_program: PathBuf,
    /// Budget for the whole collection, NVML and nvidia-smi together; when
    /// it runs out the measurement degrades to `gpu-count: 0`.
    pub timeout: Duration,
}

impl Default for GpuOptions {
    fn default() -> GpuOptions {
        GpuOptions {
            backend: GpuBackend::Nvml,
            smi_program: PathBuf::from("nvidia-smi"),
            timeout: Duration::from_secs(10),
        }
    }
}

/// The GPU measurement; never fails and never outlives `opts.timeout` by
/// more than a blocking NVML call that ignores it (see the module docs).
pub async fn collect(opts: &GpuOptions) -> Measurement {
    let deadline = Instant::now() + opts.timeout;
    if let Some(open) = opener(&opts.backend) {
        // NVML calls block; keep them off the async workers.
        let opened = tokio::task::spawn_blocking(move || open().map(|s| from_source(s.as_ref())));
        match tokio::time::timeout_at(deadline, opened).await {
            Err(_) => {
                tracing::warn!(limit = ?opts.timeout, "GPU query timed out");
                return measurement(Smi::default());
            }
            Ok(Ok(Ok(smi))) => return measurement(smi),
            Ok(Ok(Err(why))) => {
                tracing::debug!(reason = %why, "NVML unavailable, trying nvidia-smi")
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "GPU source failed, trying nvidia-smi"),
        }
    }
    let smi = match run_smi(&opts.smi_program, deadline).await {
        Ok(smi) => smi,
        Err(why) => {
            tracing::warn!("{why}");
            Smi::default()
        }
    };
    measurement(smi)
}

/// How `backend` opens its [`GpuSource`]; `None` for nvidia-smi only.
pub fn opener(backend: &GpuBackend) -> Option<OpenSource> {
    match backend {
        GpuBackend::Nvml => Some(Arc::new(open_nvml)),
        GpuBackend::Smi => None,
        GpuBackend::Source(open) => Some(open.clone()),
    }
}

/// What both sources produce: the readings of the `smi` subtype.
#[derive(Debug, Default)]
struct Smi {
    driver: Option<String>,
    cuda_version: Option<String>,
    count: i64,
    first: Option<FirstGpu>,
}

#[derive(Debug)]
struct FirstGpu {
    model: String,
    architecture: String,
    display_mode: String,
    display_active: String,
    persistence_mode: String,
    addressing_mode: String,
    vbios_version: String,
    gsp_firmware_version: String,
    mig_mode: String,
}

fn measurement(smi: Smi) -> Measurement {
    if smi.driver.is_some() && smi.count == 0 {
        tracing::warn!("No GPUs found");
    }
    let mut data = BTreeMap::new();
    data.insert("gpu-count".to_string(), Reading::Int(smi.count));
    let mut put = |k: &str, v: String| {
        data.insert(k.to_string(), Reading::Str(v));
    };
    if let Some(v) = smi.driver {
        put("driver", v);
    }
    if let Some(v) = smi.cuda_version {
        put("cuda-version", v);
    }
    if let Some(g) = smi.first {
        put("gpu.model", g.model);
        put("gpu.product-architecture", g.architecture);
        put("gpu.display-mode", g.display_mode);
        put("gpu.display-active", g.display_active);
        put("gpu.persistence-mode", g.persistence_mode);
        put("gpu.addressing-mode", g.addressing_mode);
        put("gpu.vbios-version", g.vbios_version);
        put("gpu.gsp-firmware-version", g.gsp_firmware_version);
        put("gpu.mig-mode", g.mig_mode);
    }
    Measurement {
        kind: TYPE.into(),
        subtypes: vec![Subtype {
            subtype: SUBTYPE.into(),
            data,
            ..Default::default()
        }],
    }
}

fn from_source(src: &dyn GpuSource) -> Smi {
    let count = match src.device_count() {
        Ok(n) => i64::from(n),
        Err(e) => {
            tracing::warn!(error = ?e, "failed to count GPUs");
            return Smi::default();
        }
    };
    let first = (count > 0).then(|| FirstGpu {
        model: text(src.name()),
        architecture: text(src.architecture()),
        display_mode: text(src.display_mode().map(enabled)),
        display_active: text(src.display_active().map(enabled)),
        persistence_mode: text(src.persistence_mode().map(enabled)),
        addressing_mode: text(src.addressing_mode().map(addressing_name)),
        vbios_version: text(src.vbios_version()),
        gsp_firmware_version: text(src.gsp_firmware_version()),
        mig_mode: text(src.mig_mode().map(|m| enabled(m == 1))),
    });
    Smi {
        driver: Some(text(src.driver_version())),
        cuda_version: Some(text(src.cuda_driver_version().map(cuda_text))),
        count,
        first,
    }
}

fn text<T: Into<String>>(q: Query<T>) -> String {
    match q {
        Ok(v) => v.into(),
        Err(QueryError::NotSupported) => NOT_AVAILABLE.into(),
        Err(QueryError::Failed(why)) => {
            tracing::warn!(error = %why, "GPU query failed");
            NOT_AVAILABLE.into()
        }
    }
}

fn enabled(on: bool) -> &'static str {
    if on { "Enabled" } else { "Disabled" }
}

fn addressing_name(mode: u32) -> &'static str {
    match mode {
        0 => "None",
        1 => "HMM",
        2 => "ATS",
        _ => NOT_AVAILABLE,
    }
}

/// `12080` → `12.8`, the text nvidia-smi prints.
fn cuda_text(v: i32) -> String {
    format!("{}.{}", v / 1000, (v % 1000) / 10)
}

/// nvml-wrapper's names differ from nvidia-smi's for Ada.
pub fn smi_architecture(arch: DeviceArchitecture) -> &'static str {
    match arch {
        DeviceArchitecture::Kepler => "Kepler",
        DeviceArchitecture::Maxwell => "Maxwell",
        DeviceArchitecture::Pascal => "Pascal",
        DeviceArchitecture::Volta => "Volta",
        DeviceArchitecture::Turing => "Turing",
        DeviceArchitecture::Ampere => "Ampere",
        DeviceArchitecture::Ada => "Ada Lovelace",
        DeviceArchitecture::Hopper => "Hopper",
        DeviceArchitecture::Blackwell => "Blackwell",
        DeviceArchitecture::Unknown => NOT_AVAILABLE,
    }
}

// ---- NVML ----

struct NvmlSource {
    nvml: Nvml,
    /// A second handle on the same library, for symbols nvml-wrapper does
    /// not wrap; `None` if it could not be opened.
    raw: Option<libloading::Library>,
}

const NVML_LIBRARY: &str = "libnvidia-ml.so.1";

fn open_nvml() -> Result<Box<dyn GpuSource>, String> {
    let nvml = Nvml::init().map_err(|e| format!("NVML: {e}"))?;
    // SAFETY: the library is already loaded and initialised by `Nvml::init`,
    // so this only takes another reference; no initialiser runs again.
    let raw = unsafe { libloading::Library::new(NVML_LIBRARY) }.ok();
    Ok(Box::new(NvmlSource { nvml, raw }))
}

fn query_error(e: NvmlError) -> QueryError {
    match e {
        NvmlError::NotSupported
        | NvmlError::FunctionNotFound
        | NvmlError::FailedToLoadSymbol(_) => QueryError::NotSupported,
        other => QueryError::Failed(other.to_string()),
    }
}

/// `nvmlDeviceAddressingMode_v1_t` (R570+).
#[repr(C)]
struct AddressingModeV1 {
    version: c_uint,
    value: c_uint,
}

/// NVML's struct-versioning scheme: size in the low bits, version in the top
/// byte.
const ADDRESSING_MODE_V1: c_uint = (size_of::<AddressingModeV1>() as c_uint) | (1 << 24);

type GetAddressingMode = unsafe extern "C" fn(*mut c_void, *mut AddressingModeV1) -> c_uint;

impl NvmlSource {
    fn device(&self) -> Query<nvml_wrapper::Device<'_>> {
        self.nvml.device_by_index(0).map_err(query_error)
    }
}

impl GpuSource for NvmlSource {
    fn driver_version(&self) -> Query<String> {
        self.nvml.sys_driver_version().map_err(query_error)
    }
    fn cuda_driver_version(&self) -> Query<i32> {
        self.nvml.sys_cuda_driver_version().map_err(query_error)
    }
    fn device_count(&self) -> Query<u32> {
        self.nvml.device_count().map_err(query_error)
    }
    fn name(&self) -> Query<String> {
        self.device()?.name().map_err(query_error)
    }
    fn architecture(&self) -> Query<String> {
        let arch = self.device()?.architecture().map_err(query_error)?;
        Ok(smi_architecture(arch).to_string())
    }
    fn display_mode(&self) -> Query<bool> {
        self.device()?.is_display_connected().map_err(query_error)
    }
    fn display_active(&self) -> Query<bool> {
        self.device()?.is_display_active().map_err(query_error)
    }
    fn persistence_mode(&self) -> Query<bool> {
        self.device()?.is_in_persistent_mode().map_err(query_error)
    }
    fn addressing_mode(&self) -> Query<u32> {
        let device = self.device()?;
        let lib = self.raw.as_ref().ok_or(QueryError::NotSupported)?;
        // SAFETY: the symbol's C signature is
        // `nvmlReturn_t nvmlDeviceGetAddressingMode(nvmlDevice_t, nvmlDeviceAddressingMode_t *)`,
        // which `GetAddressingMode` mirrors (the handle is an opaque pointer,
        // the return an enum of C `unsigned int` width).
        let get = unsafe { lib.get::<GetAddressingMode>(b"nvmlDeviceGetAddressingMode\0") }
            .map_err(|_| QueryError::NotSupported)?;
        let mut mode = AddressingModeV1 {
            version: ADDRESSING_MODE_V1,
            value: 0,
        };
        // SAFETY: `device` is a live handle from this NVML session and `mode`
        // is a properly versioned struct that outlives the call.
        let status = unsafe { get(device.handle().cast(), &mut mode) };
        match status {
            0 => Ok(mode.value),
            // NVML_ERROR_NOT_SUPPORTED, NVML_ERROR_FUNCTION_NOT_FOUND
            3 | 13 => Err(QueryError::NotSupported),
            code => Err(QueryError::Failed(format!(
                "nvmlDeviceGetAddressingMode returned {code}"
            ))),
        }
    }
    fn vbios_version(&self) -> Query<String> {
        self.device()?.vbios_version().map_err(query_error)
    }
    fn gsp_firmware_version(&self) -> Query<String> {
        self.device()?.gsp_firmware_version().map_err(query_error)
    }
    fn mig_mode(&self) -> Query<u32> {
        Ok(self.device()?.mig_mode().map_err(query_error)?.current)
    }
    fn watch_events(&self, tick: Duration, on_event: &mut dyn FnMut(bool) -> bool) -> Query<()> {
        // Clock and P-state events fire constantly and change nothing this
        // measurement reports; only these two can.
        let relevant = EventTypes::MIG_CONFIG_CHANGE | EventTypes::CRITICAL_XID_ERROR;
        let mut set = self.nvml.create_event_set().map_err(query_error)?;
        let mut watched = 0;
        for i in 0..self.nvml.device_count().map_err(query_error)? {
            let device = self.nvml.device_by_index(i).map_err(query_error)?;
            let wanted = device.supported_event_types().map_err(query_error)? & relevant;
            if wanted.is_empty() {
                continue;
            }
            set = device
                .register_events(wanted, set)
                .map_err(|e| query_error(e.error))?;
            watched += 1;
        }
        if watched == 0 {
            return Err(QueryError::NotSupported);
        }
        let tick_ms = u32::try_from(tick.as_millis()).unwrap_or(u32::MAX);
        loop {
            let arrived = match set.wait(tick_ms) {
                Ok(_) => true,
                Err(NvmlError::Timeout) => false,
                Err(e) => return Err(query_error(e)),
            };
            if !on_event(arrived) {
                return Ok(());
            }
        }
    }
}

// ---- nvidia-smi ----

async fn run_smi(program: &Path, deadline: Instant) -> Result<Smi, String> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(["-q", "-x"])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = match tokio::time::timeout_at(deadline, cmd.output()).await {
        Err(_) => return Err("nvidia-smi did not finish in time".into()),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err("nvidia-smi not found - no GPU data will be collected".into());
        }
        Ok(Err(e)) => return Err(format!("failed to run nvidia-smi: {e}")),
        Ok(Ok(out)) => out,
    };
    if !out.status.success() {
        return Err(format!(
            "nvidia-smi failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let xml = String::from_utf8_lossy(&out.stdout);
    parse_smi_xml(&xml).map_err(|e| format!("failed to parse nvidia-smi output: {e}"))
}

/// Read `nvidia-smi -q -x` output. Element text is taken verbatim and a
/// missing element reads as `""`, as upstream does.
fn parse_smi_xml(xml: &str) -> Result<Smi, String> {
    let opts = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..Default::default()
    };
    let doc = roxmltree::Document::parse_with_options(xml, opts).map_err(|e| e.to_string())?;
    let log = doc.root_element();
    if !log.has_tag_name("nvidia_smi_log") {
        return Err(format!(
            "unexpected root element <{}>",
            log.tag_name().name()
        ));
    }
    let gpus: Vec<_> = log.children().filter(|n| n.has_tag_name("gpu")).collect();
    let first = gpus.first().map(|g| FirstGpu {
        model: child_text(*g, &["product_name"]),
        architecture: child_text(*g, &["product_architecture"]),
        display_mode: child_text(*g, &["display_mode"]),
        display_active: child_text(*g, &["display_active"]),
        persistence_mode: child_text(*g, &["persistence_mode"]),
        addressing_mode: child_text(*g, &["addressing_mode"]),
        vbios_version: child_text(*g, &["vbios_version"]),
        gsp_firmware_version: child_text(*g, &["gsp_firmware_version"]),
        mig_mode: child_text(*g, &["mig_mode", "current_mig"]),
    });
    Ok(Smi {
        driver: Some(child_text(log, &["driver_version"])),
        cuda_version: Some(child_text(log, &["cuda_version"])),
        count: gpus.len() as i64,
        first,
    })
}

fn child_text(node: roxmltree::Node<'_, '_>, path: &[&str]) -> String {
    let mut cur = node;
    for name in path {
        match cur.children().find(|n| n.has_tag_name(*name)) {
            Some(next) => cur = next,
            None => return String::new(),
        }
    }
    cur.text().unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuda_versions_render_like_nvidia_smi() {
        assert_eq!(cuda_text(12080), "12.8");
        assert_eq!(cuda_text(12020), "12.2");
        assert_eq!(cuda_text(11040), "11.4");
        assert_eq!(cuda_text(13000), "13.0");
    }

    #[test]
    fn architectures_use_nvidia_smi_names() {
        assert_eq!(smi_architecture(DeviceArchitecture::Ada), "Ada Lovelace");
        assert_eq!(smi_architecture(DeviceArchitecture::Hopper), "Hopper");
        assert_eq!(smi_architecture(DeviceArchitecture::Blackwell), "Blackwell");
    }

    #[test]
    fn addressing_mode_struct_version_follows_nvml_scheme() {
        assert_eq!(ADDRESSING_MODE_V1, 0x0100_0008);
        assert_eq!(addressing_name(0), "None");
        assert_eq!(addressing_name(2), "ATS");
    }

    #[test]
    fn smi_xml_missing_elements_read_as_empty() {
        let smi = parse_smi_xml(
            "<nvidia_smi_log><gpu><product_name>X</product_name></gpu><gpu/></nvidia_smi_log>",
        )
        .unwrap();
        assert_eq!(smi.count, 2);
        assert_eq!(smi.driver.as_deref(), Some(""));
        let g = smi.first.unwrap();
        assert_eq!(g.model, "X");
        assert_eq!(g.mig_mode, "");
        assert!(parse_smi_xml("<other/>").is_err());
        assert!(parse_smi_xml("not xml").is_err());
    }
}
