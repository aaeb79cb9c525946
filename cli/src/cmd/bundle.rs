//! `aicr bundle`: flag wiring, `--config` (`spec.bundle`) precedence,
//! loading the recipe, and the summary printed after the bundle is written
//! or pushed. Generation, writing and pushing are `aicr::bundle`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use aicr::attest::{
    self, identity, oidc,
    sign::Attester,
    sign::Keyless,
    statement,
    verifier::{Cached, SigstoreVerifier},
};
use aicr::bundle::checksums;
use aicr::bundle::manifests::ExternalKustomize;
use aicr::bundle::oci;
use aicr::bundle::set::{DynamicPaths, SetOverrides};
use aicr::bundle::values::Scheduling;
use aicr::bundle::{self, Deployer, Options};
use aicr::error::{Error, ErrorKind, Result};
use aicr::kubernetes::scheduling;
use aicr::model::config::BundleSection;
use aicr::model::recipe::{RECIPE_RESULT_KIND, RecipeResult};
use aicr::source::Source;
use aicr::yaml;
use clap::Args;

#[derive(Debug, Args)]
pub struct BundleArgs {
    /// Recipe: file path, http(s) URL or cm://namespace/name
    #[arg(long, short = 'r')]
    pub recipe: Option<String>,
    /// AICRConfig file or http(s) URL (reads spec.bundle); flags win over it
    #[arg(long)]
    pub config: Option<String>,
    /// Output directory (default: the current directory)
    #[arg(long, short = 'o')]
    pub output: Option<String>,
    /// Deployer: helm, argocd, argocd-helm [default: helm]
    #[arg(long, short = 'd', value_parser = aicr::flags::offered(aicr::flags::text, aicr::bundle::Deployer::NAMES), hide_possible_values = true)]
    pub deployer: Option<String>,
    /// Git repository URL baked into Argo CD Applications (argocd only)
    #[arg(long)]
    pub repo: Option<String>,
    /// Override a value: component:path=value (repeatable; the last value of a path wins)
    #[arg(long = "set", action = clap::ArgAction::Append)]
    pub set: Vec<String>,
    /// Install-time value path: component:path (repeatable; helm and argocd-helm)
    #[arg(long, action = clap::ArgAction::Append)]
    pub dynamic: Vec<String>,
    /// External catalog directory layered over the embedded one; copied into data/
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Treat --data as the whole catalog instead of a layer
    #[arg(long, requires = "data")]
    pub data_only: bool,
    /// Node selector for system components: key=value (repeatable)
    #[arg(long, action = clap::ArgAction::Append, value_delimiter = ',')]
    pub system_node_selector: Vec<String>,
    /// Toleration for system components: key=value:effect or key:effect (default: tolerate all)
    #[arg(long, action = clap::ArgAction::Append, value_delimiter = ',')]
    pub system_node_toleration: Vec<String>,
    /// Node selector for GPU components: key=value (repeatable)
    #[arg(long, action = clap::ArgAction::Append, value_delimiter = ',')]
    pub accelerated_node_selector: Vec<String>,
    /// Toleration for GPU components: key=value:effect or key:effect (default: tolerate all)
    #[arg(long, action = clap::ArgAction::Append, value_delimiter = ',')]
    pub accelerated_node_toleration: Vec<String>,
    /// Taint nodewright keeps on nodes until they are tuned: key=value:effect or key:effect
    #[arg(long)]
    pub workload_gate: Option<String>,
    /// Labels of workloads nodewright must not interrupt: key=value (repeatable)
    #[arg(long, action = clap::ArgAction::Append, value_delimiter = ',')]
    pub workload_selector: Vec<String>,
    /// Estimated GPU node count written to the registry's nodeCountPaths (0 = unset)
    #[arg(long, allow_negative_numbers = true)]
    pub nodes: Option<i64>,
    /// StorageClass written to the registry's storageClassPaths
    #[arg(long)]
    pub storage_class: Option<String>,
    /// Kubeconfig for cm:// recipes (default: $KUBECONFIG, in-cluster)
    #[arg(long, short = 'k')]
    pub kubeconfig: Option<PathBuf>,
    /// OCI push: skip TLS verification
    #[arg(long)]
    pub insecure_tls: bool,
    /// OCI push: plain HTTP
    #[arg(long)]
    pub plain_http: bool,
    /// OCI push: file that receives the pushed digest reference
    #[arg(long)]
    pub image_refs: Option<String>,
    /// Sign the bundle with Sigstore keyless signing (needs the binary's own attestation beside it)
    #[arg(long)]
    pub attest: bool,
    /// OIDC identity token for --attest (prefer the env var on shared hosts)
    #[arg(long, env = "COSIGN_IDENTITY_TOKEN", hide_env_values = true)]
    pub identity_token: Option<oidc::IdentityToken>,
    /// Get the --attest OIDC token through the OAuth device flow
    #[arg(long, env = "AICR_OIDC_DEVICE_FLOW", value_parser = aicr::flags::EnvBool)]
    pub oidc_device_flow: bool,
    /// Override the binary attestation identity pattern (must name this project's repository)
    #[arg(long)]
    pub certificate_identity_regexp: Option<String>,
    #[command(flatten)]
    pub signing: crate::args::sigstore::SigningArgs,
    #[command(flatten)]
    pub tuf: crate::args::sigstore::TufArgs,
}

fn opt_err(e: Error) -> Error {
    e.wrap(ErrorKind::InvalidRequest, "invalid bundle command options")
}

/// A single value: the flag when given, else the config's when non-empty.
fn pick(flag: &str, field: &str, cli: Option<&str>, config: &str) -> Option<String> {
    match cli {
        Some(v) => {
            if !config.is_empty() && config != v {
                crate::cmd::recipe::log_config_override(field, flag, &config, &v);
            }
            Some(v.to_string())
        }
        None => (!config.is_empty()).then(|| config.to_string()),
    }
}

/// A list: the flags, when any were given, replace the config's list.
fn pick_list(flag: &str, field: &str, cli: &[String], config: Option<&Vec<String>>) -> Vec<String> {
    if !cli.is_empty() {
        if config.is_some() {
            tracing::info!(
                "CLI flag overriding config value: field={field} flag={flag} (the flag's values replace the config's)"
            );
        }
        return cli.to_vec();
    }
    config.cloned().unwrap_or_default()
}

/// A label map: the flags, when any were given, replace the config's map.
fn pick_map(
    flag: &str,
    field: &str,
    cli: &[String],
    config: Option<&BTreeMap<String, String>>,
) -> Result<BTreeMap<String, String>> {
    if !cli.is_empty() {
        if config.is_some() {
            tracing::info!(
                "CLI flag overriding config value: field={field} flag={flag} (the flag's values replace the config's)"
            );
        }
        return scheduling::parse_node_selectors(cli).map_err(|e| e.context(flag));
    }
    Ok(config.cloned().unwrap_or_default())
}

fn tolerations(
    flag: &str,
    field: &str,
    cli: &[String],
    config: Option<&Vec<String>>,
) -> Result<Vec<aicr::bundle::values::Toleration>> {
    let list = pick_list(flag, field, cli, config);
    if list.is_empty() {
        return Ok(vec![scheduling::tolerate_all()]);
    }
    scheduling::parse_tolerations(&list).map_err(|e| e.context(flag))
}

/// Where the bundle goes, settled before any work so a bad reference
/// fails fast.
enum Output {
    /// Absolute.
    Dir(PathBuf),
    Oci {
        target: oci::Target,
        push: oci::PushOptions,
        image_refs: Option<String>,
    },
}

/// Everything resolved from flags and config.
struct Resolved {
    recipe: String,
    output: Output,
    data: Option<PathBuf>,
    opts: Options,
    attest: Option<AttestPlan>,
}

/// What `--attest` needs, settled before any work.
struct AttestPlan {
    exe: PathBuf,
    binary_attestation: PathBuf,
    identity: identity::Policy,
    device_flow: bool,
    /// The cached Sigstore trusted root the binary attestation is checked
    /// against.
    trusted_root: PathBuf,
}

fn attest_plan(a: &BundleArgs, sec: &BundleSection) -> Result<Option<AttestPlan>> {
    if !(a.attest || sec.attestation.enabled) {
        return Ok(None);
    }
    let pattern = a.certificate_identity_regexp.clone().or_else(|| {
        Some(sec.attestation.certificate_identity_regexp.clone()).filter(|p| !p.is_empty())
    });
    let identity = identity::Policy::release(pattern.as_deref())?;
    let exe = std::env::current_exe()
        .map_err(|e| Error::internal(format!("cannot locate the running executable: {e}")))?;
    let binary_attestation = attest::binary_attestation_path(&exe);
    if !binary_attestation.is_file() {
        return Err(Error::not_found(format!(
            "binary attestation not found at {}\n  --attest needs an aicr binary installed by the install script, which ships this file from the release archive\n  binaries built from source or downloaded by hand lack it\n  reinstall with the install script, or remove --attest",
            binary_attestation.display()
        )));
    }
    Ok(Some(AttestPlan {
        exe,
        binary_attestation,
        identity,
        device_flow: a.oidc_device_flow || sec.attestation.oidc_device_flow,
        trusted_root: a.tuf.cached_root(),
    }))
}

fn resolve(a: &BundleArgs) -> Result<Resolved> {
    let config = a
        .config
        .as_deref()
        .filter(|c| !c.is_empty())
        .map(crate::cmd::recipe::load_config)
        .transpose()?;
    let sec: BundleSection = config
        .as_ref()
        .and_then(|c| c.spec.bundle.clone())
        .unwrap_or_default();
    let recipe_data = config
        .as_ref()
        .and_then(|c| c.spec.recipe.as_ref())
        .map(|r| r.data.clone())
        .unwrap_or_default();

    let attest = attest_plan(a, &sec)?;
    if sec.deployment.vendor_charts {
        tracing::warn!("spec.bundle.deployment.vendorCharts is not supported and is ignored");
    }

    let recipe = pick(
        "--recipe",
        "spec.bundle.input.recipe",
        a.recipe.as_deref(),
        &sec.input.recipe,
    )
    .ok_or_else(|| {
        opt_err(Error::invalid(
            "--recipe is required (or spec.bundle.input.recipe in --config)",
        ))
    })?;
    let output = pick(
        "--output",
        "spec.bundle.output.target",
        a.output.as_deref(),
        &sec.output.target,
    )
    .unwrap_or_else(|| ".".into());
    let target = oci::is_oci(&output)
        .then(|| oci::Target::parse(&output).map_err(opt_err))
        .transpose()?;
    let deployer = pick(
        "--deployer",
        "spec.bundle.deployment.deployer",
        a.deployer.as_deref(),
        &sec.deployment.deployer,
    )
    .map(|d| Deployer::parse(&d))
    .transpose()
    .map_err(opt_err)?
    .unwrap_or(Deployer::Helm);
    let repo = pick(
        "--repo",
        "spec.bundle.deployment.repo",
        a.repo.as_deref(),
        &sec.deployment.repo,
    )
    .unwrap_or_default();
    let set = pick_list(
        "--set",
        "spec.bundle.deployment.set",
        &a.set,
        sec.deployment.set.as_ref(),
    );
    let dynamic = pick_list(
        "--dynamic",
        "spec.bundle.deployment.dynamic",
        &a.dynamic,
        sec.deployment.dynamic.as_ref(),
    );
    let sc = &sec.scheduling;
    let nodes = match a.nodes {
        Some(n) => {
            if sc.nodes != 0 && sc.nodes != n {
                crate::cmd::recipe::log_config_override(
                    "spec.bundle.scheduling.nodes",
                    "--nodes",
                    &sc.nodes,
                    &n,
                );
            }
            n
        }
        None => sc.nodes,
    };
    if nodes < 0 {
        return Err(opt_err(Error::invalid("--nodes must be >= 0")));
    }
    let workload_gate = pick(
        "--workload-gate",
        "spec.bundle.scheduling.workloadGate",
        a.workload_gate.as_deref(),
        &sc.workload_gate,
    )
    .map(|g| scheduling::parse_taint(&g).map_err(|e| e.context("--workload-gate")))
    .transpose()
    .map_err(opt_err)?;
    let storage_class = pick(
        "--storage-class",
        "spec.bundle.scheduling.storageClass",
        a.storage_class.as_deref(),
        &sc.storage_class,
    );
    let scheduling = Scheduling {
        system_selector: pick_map(
            "--system-node-selector",
            "spec.bundle.scheduling.systemNodeSelector",
            &a.system_node_selector,
            sc.system_node_selector.as_ref(),
        )
        .map_err(opt_err)?,
        system_tolerations: tolerations(
            "--system-node-toleration",
            "spec.bundle.scheduling.systemNodeTolerations",
            &a.system_node_toleration,
            sc.system_node_tolerations.as_ref(),
        )
        .map_err(opt_err)?,
        accelerated_selector: pick_map(
            "--accelerated-node-selector",
            "spec.bundle.scheduling.acceleratedNodeSelector",
            &a.accelerated_node_selector,
            sc.accelerated_node_selector.as_ref(),
        )
        .map_err(opt_err)?,
        accelerated_tolerations: tolerations(
            "--accelerated-node-toleration",
            "spec.bundle.scheduling.acceleratedNodeTolerations",
            &a.accelerated_node_toleration,
            sc.accelerated_node_tolerations.as_ref(),
        )
        .map_err(opt_err)?,
        workload_selector: pick_map(
            "--workload-selector",
            "spec.bundle.scheduling.workloadSelector",
            &a.workload_selector,
            sc.workload_selector.as_ref(),
        )
        .map_err(opt_err)?,
        workload_gate,
        nodes: u32::try_from(nodes)
            .map_err(|_| opt_err(Error::invalid(format!("--nodes is too large: {nodes}"))))?,
        storage_class,
    };
    let opts = Options {
        deployer,
        repo,
        set: SetOverrides::parse(&set).map_err(opt_err)?,
        dynamic: DynamicPaths::parse(&dynamic).map_err(opt_err)?,
        scheduling,
    };
    opts.validate()?;

    let image_refs = pick(
        "--image-refs",
        "spec.bundle.output.imageRefs",
        a.image_refs.as_deref(),
        &sec.output.image_refs,
    );
    let push = oci::PushOptions {
        insecure_tls: a.insecure_tls || sec.registry.insecure_tls,
        plain_http: a.plain_http || sec.registry.plain_http,
    };
    let output = match target {
        Some(target) => Output::Oci {
            target,
            push,
            image_refs,
        },
        None => {
            let oci_only = [
                ("--insecure-tls", push.insecure_tls),
                ("--plain-http", push.plain_http),
                ("--image-refs", image_refs.is_some()),
            ];
            for (flag, set) in oci_only {
                if set {
                    tracing::warn!(
                        "{flag} only applies to oci:// output and is ignored for a directory"
                    );
                }
            }
            let dir = std::path::absolute(&output)
                .map_err(|e| Error::invalid(format!("invalid output directory {output:?}: {e}")))?;
            // Refuse before any work, not after generating the bundle.
            if std::fs::symlink_metadata(&dir).is_ok_and(|m| !m.is_dir()) {
                return Err(opt_err(Error::invalid(format!(
                    "output path {} exists and is not a directory",
                    dir.display()
                ))));
            }
            Output::Dir(dir)
        }
    };
    let data = a
        .data
        .clone()
        .or_else(|| (!recipe_data.is_empty()).then(|| PathBuf::from(recipe_data)));
    Ok(Resolved {
        recipe,
        output,
        data,
        opts,
        attest,
    })
}

fn load_recipe(uri: &str, kubeconfig: Option<&PathBuf>) -> Result<RecipeResult> {
    let mut source = Source::parse(uri).map_err(opt_err)?;
    if let Source::File(p) = &source {
        let abs = std::path::absolute(p).unwrap_or_else(|_| p.clone());
        if !abs.is_file() {
            return Err(Error::not_found(format!(
                "recipe file not found: {}",
                abs.display()
            )));
        }
        source = Source::File(abs);
    }
    tracing::info!("loading recipe from: uri={uri}");
    let (bytes, format) = crate::kubernetes::read_source(&source, uri, kubeconfig)
        .map_err(|e| e.context(format!("failed to load recipe from {uri:?}")))?;
    let recipe: RecipeResult = yaml::utf8(&bytes)
        .and_then(|t| yaml::parse(t, format))
        .map_err(|e| e.context(format!("failed to parse recipe from {uri:?}")))?;
    if recipe.kind != RECIPE_RESULT_KIND {
        return Err(Error::invalid(format!(
            "{uri:?} is not a recipe: kind is {:?}, expected {RECIPE_RESULT_KIND:?}",
            recipe.kind
        )));
    }
    Ok(recipe)
}

fn append_notes(s: &mut String, b: &bundle::Bundle) {
    if !b.notes.is_empty() {
        s.push_str("\nNote:\n");
        for n in &b.notes {
            s.push_str(&format!("  ⚠ {n}\n"));
        }
    }
}

/// The lines printed to stdout after a bundle was pushed; deployment steps
/// name local paths, so they are left out.
fn oci_summary(b: &bundle::Bundle, target: &oci::Target, pushed: &oci::Pushed) -> String {
    let mut s = format!(
        "\n{} pushed successfully!\nReference: {target}\nDigest: {}\nPinned reference: {}\nFiles packed: {}\n",
        b.deployer.describe(),
        pushed.digest,
        pushed.digest_ref,
        b.files.len()
    );
    append_notes(&mut s, b);
    s
}

/// The lines printed to stdout after a successful bundle.
fn summary(b: &bundle::Bundle, dir: &Path, files: usize) -> String {
    let dir = dir.display().to_string();
    let mut s = format!(
        "\n{} generated successfully!\nOutput directory: {dir}\nFiles generated: {files}\n",
        b.deployer.describe()
    );
    append_notes(&mut s, b);
    s.push_str("\nTo deploy:\n");
    for (i, step) in b.deployer.steps(&dir).iter().enumerate() {
        s.push_str(&format!("  {}. {step}\n", i + 1));
    }
    s
}

/// Verify the running binary's attestation, sign the bundle's provenance
/// and add both attestation files to the tree before it is written.
fn sign_bundle(
    b: &mut bundle::Bundle,
    plan: &AttestPlan,
    signer: &Keyless,
    output: &str,
    started_on: std::time::SystemTime,
) -> Result<()> {
    let Some(sums) = b.files.get(checksums::FILE) else {
        tracing::warn!("no checksums.txt in the bundle; attestation skipped");
        return Ok(());
    };
    let exe_bytes = std::fs::read(&plan.exe)
        .map_err(|e| Error::internal(format!("cannot read {}: {e}", plan.exe.display())))?;
    let binary_sha256 = checksums::sha256_hex(&exe_bytes);
    let binary_att = std::fs::read(&plan.binary_attestation).map_err(|e| {
        Error::internal(format!(
            "cannot read {}: {e}",
            plan.binary_attestation.display()
        ))
    })?;
    if let Err(e) =
        Cached(plan.trusted_root.clone()).verify(&binary_att, &binary_sha256, &plan.identity)
    {
        tracing::warn!("binary attestation check: {}", e.message());
        return Err(Error::new(
            ErrorKind::Unauthorized,
            "binary attestation verification failed; only release-built binaries can attest bundles — remove --attest to skip",
        ));
    }
    let data_files = b
        .files
        .iter()
        .filter_map(|(p, f)| {
            p.strip_prefix("data/")
                .map(|rel| (rel.to_string(), checksums::sha256_hex(&f.content)))
        })
        .collect::<Vec<_>>();
    let info = statement::BuildInfo {
        subject: checksums::FILE.to_string(),
        checksums_sha256: checksums::sha256_hex(&sums.content),
        criteria: b.recipe.criteria.clone(),
        external_data: !data_files.is_empty(),
        components: b
            .recipe
            .component_refs
            .iter()
            .map(|c| c.name.clone())
            .collect(),
        output_dir: output.to_string(),
        tool_version: aicr::VERSION.to_string(),
        binary_path: plan.exe.display().to_string(),
        binary_sha256,
        data_files,
        builder_id: signer.identity().to_string(),
        invocation_id: statement::random_uuid()?,
        started_on,
    };
    let signed = signer.attest(&statement::build(&info)?)?;
    tracing::info!("bundle attested by {}", signer.identity());
    for (path, content) in [
        (attest::BUNDLE_ATTESTATION, signed.into_bytes()),
        (attest::BINARY_ATTESTATION_COPY, binary_att),
    ] {
        b.files.insert(
            path.to_string(),
            bundle::BundleFile {
                content: content.into(),
                mode: 0o644,
            },
        );
    }
    Ok(())
}

pub fn run(a: &BundleArgs) -> Result<()> {
    let started_on = std::time::SystemTime::now();
    let r = resolve(a)?;
    let signer = r
        .attest
        .as_ref()
        .map(|plan| {
            oidc::resolve(&oidc::Request {
                identity_token: a.identity_token.clone(),
                device_flow: plan.device_flow,
                issuer: a.signing.oidc_issuer.clone(),
                github_actions: crate::args::sigstore::github_actions_token_endpoint(),
            })
            .and_then(|token| Keyless::new(token, &a.signing.fulcio_url, &a.signing.rekor_url))
        })
        .transpose()?;
    let recipe = load_recipe(&r.recipe, a.kubeconfig.as_ref())?;
    let catalog = crate::cmd::recipe::open_catalog(r.data.clone(), a.data_only)?;
    // What the provenance and the log name as the bundle's destination.
    let destination = match &r.output {
        Output::Dir(d) => d.display().to_string(),
        Output::Oci { target, .. } => format!("{}{target}", oci::SCHEME),
    };
    tracing::info!(
        "generating bundle: deployer={} components={} output={destination}",
        r.opts.deployer.name(),
        recipe.component_refs.len(),
    );
    let mut b = bundle::generate(&catalog, &recipe, &r.opts, &ExternalKustomize)?;
    if let (Some(plan), Some(signer)) = (&r.attest, &signer) {
        sign_bundle(&mut b, plan, signer, &destination, started_on)?;
    }
    let (target, push, image_refs) = match &r.output {
        Output::Dir(out_dir) => {
            let files = bundle::write::write_tree(&b.files, out_dir)?;
            tracing::info!(
                "bundle generated: deployer={} components={} files={files}",
                r.opts.deployer.name(),
                b.recipe.component_refs.len()
            );
            return aicr::sink::write_local("-", summary(&b, out_dir, files).as_bytes());
        }
        Output::Oci {
            target,
            push,
            image_refs,
        } => (target, *push, image_refs),
    };
    let credentials = oci::Credentials::from_docker_config(&target.registry);
    let pushed = crate::runtime::block_on(oci::push(&b.files, target, push, &credentials))??;
    tracing::info!(
        "bundle pushed: deployer={} components={} files={} digest={}",
        r.opts.deployer.name(),
        b.recipe.component_refs.len(),
        b.files.len(),
        pushed.digest
    );
    if let Some(path) = image_refs {
        aicr::sink::write_file_atomic(
            Path::new(path),
            format!("{}\n", pushed.digest_ref).as_bytes(),
        )
        .map_err(|e| e.context("failed to write --image-refs"))?;
    }
    aicr::sink::write_local("-", oci_summary(&b, target, &pushed).as_bytes())
}
