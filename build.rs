//! Build steps for the core library:
//!
//! 1. Compile `proto/` with protox, so no system `protoc` is needed.
//! 2. Pre-parse the embedded catalog's recipe documents and registry with the
//!    library's own model types and store them as JSON in `OUT_DIR`. The
//!    binary then decodes JSON (fast) instead of YAML (slow) on every start,
//!    with exactly the semantics of the YAML path, because the same types
//!    and the same YAML reader produce it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[allow(dead_code)]
#[path = "src/error.rs"]
mod error;

// The model modules refer to each other as `super::…` and `crate::error`,
// which resolve the same way at the root of this build script.
#[allow(dead_code)]
#[path = "src/model/criteria.rs"]
mod criteria;
#[allow(dead_code)]
#[path = "src/model/recipe.rs"]
mod recipe;
#[allow(dead_code)]
#[path = "src/model/registry.rs"]
mod registry;

// The runtime's YAML reader, so values files parse here exactly as they
// would at run time (same options, same budgets).
#[allow(dead_code)]
#[path = "src/yaml.rs"]
mod yaml;

use recipe::{RECIPE_METADATA_KIND, RecipeMetadata};
use registry::ComponentRegistry;

fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(root, &p, out);
        } else {
            out.push(p.strip_prefix(root).unwrap().to_path_buf());
        }
    }
}

fn parse<T: serde::de::DeserializeOwned>(path: &Path) -> T {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let text = if text.trim().is_empty() {
        "{}".to_string()
    } else {
        text
    };
    serde_saphyr::from_str(&text)
        .unwrap_or_else(|e| panic!("failed to parse {}: {e}", path.display()))
}

fn prebuild_catalog() {
    let root = Path::new("recipes");
    let mut files = Vec::new();
    walk(root, root, &mut files);
    let mut recipes = BTreeMap::new();
    for rel in files {
        let rel_s = rel.to_string_lossy().replace('\\', "/");
        let file = rel.file_name().unwrap().to_string_lossy();
        // Same classification as `catalog::classify` for recipe documents.
        if rel_s.contains("checks/")
            || rel_s.contains("components/")
            || !file.ends_with(".yaml")
            || file == "registry.yaml"
            || file == "data-v1.yaml"
        {
            continue;
        }
        let doc: RecipeMetadata = parse(&root.join(&rel));
        if doc.kind.is_empty() || doc.kind == RECIPE_METADATA_KIND {
            recipes.insert(rel_s, doc);
        }
    }
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let registry: ComponentRegistry = parse(&root.join("registry.yaml"));
    std::fs::write(
        out_dir.join("catalog.json"),
        serde_json::to_vec(&registry).unwrap(),
    )
    .unwrap();
    // Each document on its own, with its name and criteria apart: a run
    // decodes only the overlays it matches (and their parents).
    let mut out = String::from(
        "/// Embedded recipe documents (foreign kinds left out), sorted by\n\
         /// catalog path: path, `metadata.name`, `spec.criteria` as JSON\n\
         /// (empty when absent) and the whole document as JSON.\n\
         static PREBUILT_RECIPES: &[(&str, &str, &str, &str)] = &[\n",
    );
    for (path, doc) in &recipes {
        let criteria = match &doc.spec.criteria {
            Some(c) => serde_json::to_string(c).unwrap(),
            None => String::new(),
        };
        let json = serde_json::to_string(doc).unwrap();
        out.push_str(&format!(
            "    ({path:?}, {:?}, {criteria:?}, {json:?}),\n",
            doc.name()
        ));
    }
    out.push_str("];\n");
    std::fs::write(out_dir.join("catalog_recipes.rs"), out).unwrap();
}

/// Component values files (every `components/**.yaml` outside a
/// `manifests/` folder) as JSON, for `Catalog::values_file`: decoding JSON
/// is an order of magnitude faster than YAML. A file is left out (and
/// parsed at run time as before) when the runtime reader rejects it or its
/// value would not come back identical from JSON (NaN, say).
fn prebuild_values() {
    let root = Path::new("recipes");
    let mut files = Vec::new();
    walk(root, root, &mut files);
    let mut prebuilt = BTreeMap::new();
    for rel in files {
        let rel_s = rel.to_string_lossy().replace('\\', "/");
        if !rel_s.starts_with("components/")
            || rel_s.contains("/manifests/")
            || !rel_s.ends_with(".yaml")
        {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(root.join(&rel)) else {
            continue;
        };
        // As `Catalog::values_file` reads it: an empty file is an empty map.
        let value: serde_json::Value = if text.trim().is_empty() {
            serde_json::Value::Object(serde_json::Map::new())
        } else {
            match yaml::from_yaml(&text) {
                Ok(v) => v,
                Err(_) => continue,
            }
        };
        let json = serde_json::to_string(&value).unwrap();
        if serde_json::from_str::<serde_json::Value>(&json)
            .ok()
            .as_ref()
            != Some(&value)
        {
            continue;
        }
        prebuilt.insert(rel_s, json);
    }
    let mut out = String::from(
        "/// Pre-parsed values files: catalog path and JSON text, sorted by path.\n\
         static PREBUILT_VALUES: &[(&str, &str)] = &[\n",
    );
    for (path, json) in &prebuilt {
        out.push_str(&format!("    ({path:?}, {json:?}),\n"));
    }
    out.push_str("];\n");
    let dest = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("catalog_values.rs");
    std::fs::write(dest, out).unwrap();
}

/// Files at least this large get a build-time SHA-256 (`catalog_digests.rs`).
const DIGEST_MIN_BYTES: usize = 16 * 1024;

/// SHA-256 of the large embedded files, for `catalog::embedded_digest`: a
/// bundle copies CRD manifests verbatim, and hashing ~700 KiB at every run
/// was a tenth of `aicr bundle`.
fn prebuild_digests() {
    use sha2::{Digest, Sha256};
    let root = Path::new("recipes");
    let mut files = Vec::new();
    walk(root, root, &mut files);
    let mut out = String::from(
        "/// Large embedded files: catalog path, length and SHA-256.\n\
         static EMBEDDED_DIGESTS: &[(&str, usize, [u8; 32])] = &[\n",
    );
    for rel in files {
        let bytes = std::fs::read(root.join(&rel)).unwrap();
        if bytes.len() < DIGEST_MIN_BYTES {
            continue;
        }
        let rel_s = rel.to_string_lossy().replace('\\', "/");
        let digest: [u8; 32] = Sha256::digest(&bytes).into();
        out.push_str(&format!("    ({rel_s:?}, {}, {digest:?}),\n", bytes.len()));
    }
    out.push_str("];\n");
    let dest = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("catalog_digests.rs");
    std::fs::write(dest, out).unwrap();
}

/// The embedded catalog (every `.yaml` file under `recipes/`), as
/// `include_str!`s: the compiler checks they are UTF-8 once, instead of
/// every run, and the table is sorted already. `EMBEDDED_FILES` is sorted
/// by path (for lookups), `EMBEDDED_VISIT` lists its indices depth-first
/// in path order (directories and files interleaved by name), the order
/// the catalog visits files in.
fn embed_files() {
    let root = Path::new("recipes");
    let mut files = Vec::new();
    walk(root, root, &mut files);
    let visit: Vec<String> = files
        .iter()
        .map(|rel| rel.to_string_lossy().replace('\\', "/"))
        .filter(|p| p.ends_with(".yaml"))
        .collect();
    let mut sorted = visit.clone();
    sorted.sort();
    let mut out = String::from(
        "/// The embedded catalog's YAML files, sorted by path: path and text.\n\
         static EMBEDDED_FILES: &[(&str, &str)] = &[\n",
    );
    for p in &sorted {
        out.push_str(&format!(
            "    ({p:?}, include_str!(concat!(env!(\"CARGO_MANIFEST_DIR\"), {:?}))),\n",
            format!("/recipes/{p}")
        ));
    }
    out.push_str(
        "];\n\n/// Indices into `EMBEDDED_FILES`, depth-first in path order.\n\
         static EMBEDDED_VISIT: &[usize] = &[",
    );
    for p in &visit {
        let i = sorted.binary_search(p).unwrap();
        out.push_str(&format!("{i}, "));
    }
    out.push_str("];\n");
    let dest = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("catalog_files.rs");
    std::fs::write(dest, out).unwrap();
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-changed=recipes");
    println!("cargo:rerun-if-changed=src/model");
    println!("cargo:rerun-if-changed=src/yaml.rs");
    println!("cargo:rerun-if-changed=src/error.rs");
    let descriptors = protox::compile(["proto/aicr.proto"], ["proto"])?;
    // Small per-stream buffers: see src/codec.rs.
    tonic_prost_build::configure()
        .codec_path("crate::codec::CompactCodec")
        .compile_fds(descriptors)?;
    prebuild_catalog();
    prebuild_values();
    prebuild_digests();
    embed_files();
    Ok(())
}
