//! The recipe catalog: the tree embedded in the binary, optionally layered
//! with (or replaced by) an external `--data` directory. Owns file
//! classification, the external-data safety rules and parsing of overlays and
//! the registry. It does not resolve recipes (see `engine`).

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::{Arc, Mutex};

use crate::error::{Error, ErrorKind, Result, ResultExt};
use crate::model::criteria::OverlayCriteria;
use crate::model::recipe::{RECIPE_METADATA_KIND, RecipeMetadata};
use crate::model::registry::ComponentRegistry;
use crate::yaml;

// `EMBEDDED_FILES` and `EMBEDDED_VISIT`: the embedded catalog's YAML
// files (`include_str!`, so checked as UTF-8 at compile time), sorted by
// path, and their depth-first visit order; see `build.rs`.
include!(concat!(env!("OUT_DIR"), "/catalog_files.rs"));

/// The text of embedded catalog file `path`.
fn embedded_text(path: &str) -> Option<&'static str> {
    EMBEDDED_FILES
        .binary_search_by(|(p, _)| (*p).cmp(path))
        .ok()
        .map(|i| EMBEDDED_FILES[i].1)
}

/// The embedded registry, parsed by `build.rs` with these same model types
/// and stored as JSON, which decodes far faster than YAML at every start.
static PREBUILT_REGISTRY: &str = include_str!(concat!(env!("OUT_DIR"), "/catalog.json"));

// `PREBUILT_RECIPES`: the embedded recipe documents, parsed by `build.rs`
// the same way, one JSON text each, with name and criteria apart. Each is
// decoded on first use: a recipe needs its few matching overlays, a bundle
// none.
include!(concat!(env!("OUT_DIR"), "/catalog_recipes.rs"));

type PrebuiltRecipe = (&'static str, &'static str, &'static str, &'static str);

fn prebuilt_recipe(path: &str) -> Option<&'static PrebuiltRecipe> {
    PREBUILT_RECIPES
        .binary_search_by(|r| r.0.cmp(path))
        .ok()
        .map(|i| &PREBUILT_RECIPES[i])
}

/// A recipe document of the catalog: parsed when the catalog loads
/// (external files) or decoded from its build-time JSON on first use
/// (embedded ones). Its criteria are at hand either way, for matching.
#[derive(Debug)]
struct Doc {
    criteria: Option<OverlayCriteria>,
    json: &'static str,
    doc: OnceLock<RecipeMetadata>,
}

impl Doc {
    fn parsed(doc: RecipeMetadata) -> Doc {
        Doc {
            criteria: doc.spec.criteria.clone(),
            json: "",
            doc: OnceLock::from(doc),
        }
    }

    fn embedded(criteria: &str, json: &'static str) -> Result<Doc> {
        let criteria = if criteria.is_empty() {
            None
        } else {
            Some(yaml::from_json(criteria).context("embedded catalog is corrupt")?)
        };
        Ok(Doc {
            criteria,
            json,
            doc: OnceLock::new(),
        })
    }

    fn get(&self) -> &RecipeMetadata {
        // `build.rs` wrote this JSON from this same type (and the tests
        // decode every document), so it always decodes.
        self.doc
            .get_or_init(|| yaml::from_json(self.json).expect("embedded catalog document decodes"))
    }
}

// `PREBUILT_VALUES`: the embedded values files, parsed by `build.rs` with
// the runtime's YAML reader and stored as JSON (see `values_file`).
include!(concat!(env!("OUT_DIR"), "/catalog_values.rs"));

// `EMBEDDED_DIGESTS`: path, length and SHA-256 of the large embedded
// files, computed by `build.rs`.
include!(concat!(env!("OUT_DIR"), "/catalog_digests.rs"));

/// The SHA-256 of `bytes` when they are exactly one of the large embedded
/// catalog files (CRD manifests a bundle copies verbatim): a comparison
/// instead of hashing them at every run.
pub fn embedded_digest(bytes: &[u8]) -> Option<[u8; 32]> {
    EMBEDDED_DIGESTS.iter().find_map(|(path, len, digest)| {
        if *len != bytes.len() {
            return None;
        }
        let text = embedded_text(path)?;
        // A bundle holds such a file borrowed, so it is usually the very
        // same bytes.
        (std::ptr::eq(text.as_bytes(), bytes) || text.as_bytes() == bytes).then_some(*digest)
    })
}

/// The pre-parsed JSON of embedded values file `path`, if `build.rs` made
/// one.
fn prebuilt_values(path: &str) -> Option<&'static str> {
    PREBUILT_VALUES
        .binary_search_by(|(p, _)| (*p).cmp(path))
        .ok()
        .map(|i| PREBUILT_VALUES[i].1)
}

/// Catalog files as read: catalog-relative path and bytes.
type Files = Vec<(Cow<'static, str>, Cow<'static, [u8]>)>;

/// Largest file an external data directory may contain.
pub(crate) const MAX_EXTERNAL_FILE_BYTES: u64 = 10 * 1024 * 1024;

/// Where the catalog comes from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum DataSource {
    /// Only the embedded catalog.
    #[default]
    Embedded,
    /// The embedded catalog with an external directory layered on top.
    Layered(PathBuf),
    /// The external directory is the whole catalog (organisations with their
    /// own catalog; also how the upstream catalog is tested).
    Only(PathBuf),
}

/// A parsed, layered catalog. Parse once per process and share.
#[derive(Debug)]
pub struct Catalog {
    files: BTreeMap<Cow<'static, str>, Cow<'static, [u8]>>,
    external: BTreeSet<String>,
    base: Doc,
    /// Boxed: a document is a kilobyte, and map nodes move their values.
    overlays: BTreeMap<String, Box<Doc>>,
    /// Every overlay decoded, for [`Catalog::overlays`].
    all_overlays: OnceLock<BTreeMap<String, RecipeMetadata>>,
    registry: ComponentRegistry,
    /// Parsed values files, filled on first use (queries and bundles read
    /// the same few files for many components and recipes).
    values: Mutex<HashMap<String, Arc<serde_json::Value>>>,
}

impl Catalog {
    /// The embedded catalog, parsed on first use.
    pub fn embedded() -> Result<&'static Catalog> {
        static CELL: OnceLock<Result<Catalog>> = OnceLock::new();
        CELL.get_or_init(|| Catalog::load(&DataSource::Embedded))
            .as_ref()
            .map_err(Clone::clone)
    }

    pub fn load(source: &DataSource) -> Result<Catalog> {
        let (external, dir) = match source {
            DataSource::Embedded => (Vec::new(), None),
            DataSource::Layered(d) | DataSource::Only(d) => {
                tracing::info!(
                    "initializing external data provider: directory={}",
                    d.display()
                );
                // A missing directory stays not found (3), as every missing
                // input does; what is wrong inside one is internal (8).
                let files = read_external(d).map_err(|e| {
                    let what =
                        "failed to initialize data provider: failed to initialize external data";
                    if e.kind() == ErrorKind::NotFound {
                        e.context(what)
                    } else {
                        e.wrap(ErrorKind::Internal, what)
                    }
                })?;
                (files, Some(d))
            }
        };
        let embedded = match source {
            DataSource::Only(_) => Vec::new(),
            _ => embedded_files(),
        };
        let external_names: BTreeSet<String> =
            external.iter().map(|(p, _)| p.to_string()).collect();
        if let Some(d) = dir {
            tracing::info!(
                "layered data provider initialized: external_dir={} external_files={}",
                d.display(),
                external_names.len()
            );
        }

        // With --data, say where every file comes from (for --debug).
        if dir.is_some() {
            let embedded_names: BTreeSet<&str> = embedded.iter().map(|(p, _)| p.as_ref()).collect();
            for (path, _) in &external {
                if embedded_names.contains::<str>(path) {
                    tracing::debug!(
                        "file source resolved: path={path} source=external (replaces the embedded file)"
                    );
                } else {
                    tracing::debug!("file source resolved: path={path} source=external");
                }
            }
            for (path, _) in embedded
                .iter()
                .filter(|(p, _)| !external_names.contains::<str>(p))
            {
                tracing::debug!("file source resolved: path={path} source=embedded");
            }
        }
        // External files are visited first; an embedded file at the same path
        // is hidden. Overlays are then indexed by name in visit order, so an
        // embedded overlay visited later wins a name clash at another path.
        let mut visit: Files = external;
        visit.extend(
            embedded
                .into_iter()
                .filter(|(p, _)| !external_names.contains::<str>(p)),
        );

        let mut registry: ComponentRegistry = match source {
            DataSource::Only(_) => ComponentRegistry::default(),
            _ => yaml::from_json(PREBUILT_REGISTRY).context("embedded catalog is corrupt")?,
        };
        if dir.is_some() {
            let ext = visit
                .iter()
                .find(|(p, _)| p == "registry.yaml" && external_names.contains::<str>(p));
            if let Some((_, bytes)) = ext {
                let ext: ComponentRegistry = parse_doc(bytes)
                    .wrap(ErrorKind::Internal, "failed to parse external registry")
                    .wrap(ErrorKind::Internal, "failed to initialize data provider")?;
                let (e, x) = (registry.components.len(), ext.components.len());
                for comp in &ext.components {
                    if registry.components.iter().any(|c| c.name == comp.name) {
                        tracing::debug!(
                            "registry component overridden by external data: name={}",
                            comp.name
                        );
                    } else {
                        tracing::debug!(
                            "registry component added by external data: name={}",
                            comp.name
                        );
                    }
                }
                if registry.api_version.is_empty() {
                    registry.api_version = ext.api_version.clone();
                    registry.kind = ext.kind.clone();
                }
                registry.merge_external(ext);
                tracing::info!(
                    "merged component registries: embedded_components={e} external_components={x} merged_components={}",
                    registry.components.len()
                );
            }
        }

        let mut base = None;
        let mut overlays = BTreeMap::new();
        for (path, bytes) in &visit {
            match classify(path) {
                Class::Component | Class::Ignored => {}
                Class::Recipe => {
                    let (name, doc) = if external_names.contains::<str>(path) {
                        let doc: RecipeMetadata = parse_doc(bytes)
                            .context(format!("failed to parse {path}"))
                            .wrap(ErrorKind::Internal, "failed to load metadata store")?;
                        if !doc.kind.is_empty() && doc.kind != RECIPE_METADATA_KIND {
                            continue;
                        }
                        (doc.name().to_string(), Doc::parsed(doc))
                    } else {
                        // Embedded: pre-parsed; foreign kinds were left out.
                        match prebuilt_recipe(path) {
                            Some((_, name, criteria, json)) => {
                                (name.to_string(), Doc::embedded(criteria, json)?)
                            }
                            None => continue,
                        }
                    };
                    if is_base(path) {
                        base = Some(doc);
                    } else {
                        overlays.insert(name, Box::new(doc));
                    }
                }
            }
        }
        let base = base
            .ok_or_else(|| Error::internal("failed to load metadata store: base.yaml not found"))?;
        if dir.is_some() {
            tracing::info!("external data provider initialized successfully");
        }
        Ok(Catalog {
            files: visit.into_iter().collect(),
            external: external_names,
            base,
            overlays,
            all_overlays: OnceLock::new(),
            registry,
            values: Mutex::default(),
        })
    }

    /// A component file parsed as a YAML values document (an empty file is
    /// an empty map); `None` when the catalog has no such file.
    pub(crate) fn values_file(&self, path: &str) -> Result<Option<Arc<serde_json::Value>>> {
        if let Some(v) = self
            .values
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(path)
        {
            return Ok(Some(v.clone()));
        }
        let Some(bytes) = self.file(path) else {
            return Ok(None);
        };
        // An embedded file (present and not external) may have been parsed
        // at build time already, with this same reader.
        let prebuilt = (!self.is_external(path))
            .then(|| prebuilt_values(path))
            .flatten();
        let v = match prebuilt {
            Some(json) => yaml::from_json(json)?,
            None => {
                let text = yaml::utf8(bytes)?;
                if text.trim().is_empty() {
                    serde_json::Value::Object(serde_json::Map::new())
                } else {
                    yaml::from_yaml(text)?
                }
            }
        };
        let v = Arc::new(v);
        self.values
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(path.to_string(), v.clone());
        Ok(Some(v))
    }

    pub fn base(&self) -> &RecipeMetadata {
        self.base.get()
    }

    /// Overlays by name (sorted by name), every one decoded. Matching
    /// needs only [`Catalog::overlay_criteria`].
    pub fn overlays(&self) -> &BTreeMap<String, RecipeMetadata> {
        self.all_overlays.get_or_init(|| {
            self.overlays
                .iter()
                .map(|(name, doc)| (name.clone(), doc.get().clone()))
                .collect()
        })
    }

    /// Each overlay's name and `spec.criteria`, sorted by name, without
    /// decoding the documents.
    pub fn overlay_criteria(&self) -> impl Iterator<Item = (&str, Option<&OverlayCriteria>)> {
        self.overlays
            .iter()
            .map(|(name, doc)| (name.as_str(), doc.criteria.as_ref()))
    }

    pub fn overlay(&self, name: &str) -> Option<&RecipeMetadata> {
        self.overlays.get(name).map(|d| d.get())
    }

    pub fn registry(&self) -> &ComponentRegistry {
        &self.registry
    }

    /// Raw bytes of a catalog file by catalog-relative path.
    pub fn file(&self, path: &str) -> Option<&[u8]> {
        self.files.get(path).map(|c| c.as_ref())
    }

    /// A catalog file as text: embedded ones as checked when the binary
    /// was built, external ones checked now. `None` when there is no such
    /// file.
    pub fn text(&self, path: &str) -> Option<Result<&str>> {
        let bytes = self.file(path)?;
        if !self.is_external(path)
            && let Some(text) = embedded_text(path)
        {
            return Some(Ok(text));
        }
        Some(yaml::utf8(bytes))
    }

    /// A catalog file embedded in the binary, unless the external
    /// directory replaced it: text that lives as long as the process, so
    /// a bundle can hold it without a copy.
    pub fn embedded_text(&self, path: &str) -> Option<&'static str> {
        if self.is_external(path) {
            return None;
        }
        embedded_text(path)
    }

    /// Whether `path` came from the external directory.
    pub fn is_external(&self, path: &str) -> bool {
        self.external.contains(path)
    }

    /// Catalog-relative paths of every file, sorted.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.files.keys().map(|p| p.as_ref())
    }
}

enum Class {
    Component,
    Recipe,
    Ignored,
}

/// Classification by relative path, in the spec's order. "contains" is a
/// plain substring test on purpose: that is the upstream rule.
fn classify(path: &str) -> Class {
    if path.contains("checks/") {
        return Class::Ignored;
    }
    if path.contains("components/") {
        return Class::Component;
    }
    let file = path.rsplit('/').next().unwrap_or(path);
    if !file.ends_with(".yaml") || file == "registry.yaml" || file == "data-v1.yaml" {
        return Class::Ignored;
    }
    Class::Recipe
}

fn is_base(path: &str) -> bool {
    path.contains("overlays/") && path.rsplit('/').next() == Some("base.yaml")
}

fn parse_doc<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    let text = yaml::utf8(bytes)?;
    if text.trim().is_empty() {
        return yaml::from_yaml("{}");
    }
    yaml::from_yaml(text)
}

/// The embedded tree in depth-first lexical order.
fn embedded_files() -> Files {
    EMBEDDED_VISIT
        .iter()
        .map(|&i| {
            let (path, text) = EMBEDDED_FILES[i];
            (Cow::Borrowed(path), Cow::Borrowed(text.as_bytes()))
        })
        .collect()
}

/// Read and vet an external data directory: it must exist, be a directory
/// and hold `registry.yaml`; no entry may be a symlink, contain `..`, or be
/// larger than [`MAX_EXTERNAL_FILE_BYTES`]. Files come back depth-first in
/// lexical order.
fn read_external(dir: &Path) -> Result<Files> {
    let meta = std::fs::metadata(dir).map_err(|e| {
        Error::not_found(format!(
            "external data directory not found: {}: {e}",
            dir.display()
        ))
    })?;
    if !meta.is_dir() {
        return Err(Error::invalid(format!(
            "external data path is not a directory: {}",
            dir.display()
        )));
    }
    if !dir.join("registry.yaml").is_file() {
        return Err(Error::invalid(format!(
            "registry.yaml is required in external data directory: {}",
            dir.display()
        )));
    }
    let mut out = Vec::new();
    walk_external(dir, dir, &mut out).context("external directory validation failed")?;
    Ok(out)
}

fn walk_external(root: &Path, dir: &Path, out: &mut Files) -> Result<()> {
    let io = |e: std::io::Error, p: &Path| Error::internal(format!("{}: {e}", p.display()));
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| io(e, dir))?
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| io(e, dir))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let rel = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .to_string_lossy()
            .replace('\\', "/");
        let meta = std::fs::symlink_metadata(&path).map_err(|e| io(e, &path))?;
        if meta.file_type().is_symlink() {
            return Err(Error::invalid(format!("symlinks not allowed: {rel}")));
        }
        if meta.is_dir() {
            walk_external(root, &path, out)?;
            continue;
        }
        if rel.contains("..") {
            return Err(Error::invalid(format!("path traversal detected: {rel}")));
        }
        if meta.len() > MAX_EXTERNAL_FILE_BYTES {
            return Err(Error::invalid(format!(
                "file too large ({} bytes, max {MAX_EXTERNAL_FILE_BYTES}): {rel}",
                meta.len()
            )));
        }
        let bytes = std::fs::read(&path).map_err(|e| io(e, &path))?;
        tracing::debug!("discovered external file: {rel}");
        out.push((Cow::Owned(rel), Cow::Owned(bytes)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The build-time JSON of every values file is what the YAML reader
    /// makes of the embedded file now, and every component values file has
    /// one.
    #[test]
    fn prebuilt_values_match_the_yaml_reader() {
        let mut seen = 0;
        for (path, bytes) in embedded_files() {
            let Some(json) = prebuilt_values(&path) else {
                assert!(
                    !path.ends_with("values.yaml") || path.contains("/manifests/"),
                    "{path} was not pre-parsed"
                );
                continue;
            };
            let text = yaml::utf8(&bytes).unwrap();
            let from_yaml: serde_json::Value = if text.trim().is_empty() {
                serde_json::Value::Object(serde_json::Map::new())
            } else {
                yaml::from_yaml(text).unwrap()
            };
            let from_json: serde_json::Value = yaml::from_json(json).unwrap();
            assert_eq!(from_json, from_yaml, "{path}");
            seen += 1;
        }
        assert_eq!(seen, PREBUILT_VALUES.len());
        assert!(PREBUILT_VALUES.windows(2).all(|w| w[0].0 < w[1].0));
    }

    /// Every embedded document decodes, under the name and with the
    /// criteria stored beside it, and is what parsing its YAML gives.
    #[test]
    fn prebuilt_recipes_decode_to_their_documents() {
        assert!(PREBUILT_RECIPES.windows(2).all(|w| w[0].0 < w[1].0));
        for (path, name, criteria, json) in PREBUILT_RECIPES {
            let doc = Doc::embedded(criteria, json).unwrap();
            let full = doc.get();
            assert_eq!(full.name(), *name, "{path}");
            assert_eq!(doc.criteria, full.spec.criteria, "{path}");
            let yaml_doc: RecipeMetadata =
                parse_doc(embedded_text(path).unwrap().as_bytes()).unwrap();
            assert_eq!(full, &yaml_doc, "{path}");
        }
        let c = Catalog::embedded().unwrap();
        assert_eq!(c.overlays().len(), c.overlay_criteria().count());
    }

    /// The embedded table is the recipes tree: every YAML file, its text,
    /// each once, visited depth-first in path order.
    #[test]
    fn embedded_files_are_the_recipes_tree() {
        fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            entries.sort();
            for p in entries {
                if p.is_dir() {
                    walk(&p, root, out);
                } else if p.extension().is_some_and(|e| e == "yaml") {
                    out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
                }
            }
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes");
        let mut want = Vec::new();
        walk(&root, &root, &mut want);
        let got: Vec<String> = embedded_files()
            .into_iter()
            .map(|(p, _)| p.into_owned())
            .collect();
        assert_eq!(got, want);
        assert!(EMBEDDED_FILES.windows(2).all(|w| w[0].0 < w[1].0));
        for (path, text) in EMBEDDED_FILES {
            assert_eq!(
                *text,
                std::fs::read_to_string(root.join(path)).unwrap(),
                "{path}"
            );
        }
        let c = Catalog::embedded().unwrap();
        let (path, text) = EMBEDDED_FILES[0];
        assert_eq!(c.text(path).unwrap().unwrap(), text);
        assert!(c.text("no/such.yaml").is_none());
    }

    #[test]
    fn embedded_digests_are_the_files_sha256() {
        use sha2::{Digest, Sha256};
        assert!(!EMBEDDED_DIGESTS.is_empty());
        for (path, len, digest) in EMBEDDED_DIGESTS {
            let bytes = embedded_text(path).unwrap().as_bytes();
            assert_eq!(bytes.len(), *len, "{path}");
            let want: [u8; 32] = Sha256::digest(bytes).into();
            assert_eq!(&want, digest, "{path}");
            assert_eq!(embedded_digest(bytes), Some(want));
            let mut other = bytes.to_vec();
            other[0] ^= 1;
            assert_eq!(embedded_digest(&other), None);
        }
        assert_eq!(embedded_digest(b"kind: x\n"), None);
    }
}
