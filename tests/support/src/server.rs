//! The HTTP face of the fake: maps apiserver paths and verbs onto discovery,
//! the store and the review endpoints, streams watches, and applies the
//! test's knobs (request log, latency, denials) to every request.

use crate::discovery;
use crate::fake_cluster::{FakeCluster, RecordedRequest, USER};
use crate::patch::{self, PatchKind};
use crate::resources::{Class, ResourceType};
use crate::selectors::{FieldSelector, LabelSelector};
use crate::status::{self, Access, ApiError};
use crate::store::{
    Change, ChangeKind, DeleteOptions, Part, Propagation, Writer, check_url_name, present,
};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;
use tokio::time::Instant;

/// The apiserver's cap on request bodies.
const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

pub(crate) fn router(cluster: FakeCluster) -> Router {
    Router::new()
        .fallback(handle)
        .with_state(cluster)
        // Oversized bodies get the apiserver's Status answer, not axum's.
        .layer(DefaultBodyLimit::disable())
}

async fn handle(
    State(cluster): State<FakeCluster>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header_text = |name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let content_type = header_text(header::CONTENT_TYPE);
    cluster.record_request(RecordedRequest {
        method: method.to_string(),
        path: uri.path().to_string(),
        query: uri.query().unwrap_or_default().to_string(),
        content_type: (!content_type.is_empty()).then(|| content_type.clone()),
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let latency = cluster.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let call = Call {
        query: form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect(),
        cluster,
        method,
        accept: header_text(header::ACCEPT),
        host: header_text(header::HOST),
        content_type,
        body,
    };
    call.serve(uri.path())
        .unwrap_or_else(|e| error_response(&e))
}

fn json_response(code: StatusCode, body: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn error_response(error: &ApiError) -> Response {
    let code = StatusCode::from_u16(error.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(code, &error.to_status())
}

enum Route {
    Document(Document),
    Resource(ResourcePath),
}

/// What the server computes rather than stores; read-only.
enum Document {
    Health,
    Version,
    CoreVersions,
    Groups,
    Group(String),
    GroupVersion(String, String),
}

struct ResourcePath {
    group: String,
    version: String,
    namespace: Option<String>,
    plural: String,
    name: Option<String>,
    subresource: Option<String>,
}

fn route(path: &str) -> Option<Route> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let document = match segments.as_slice() {
        ["healthz" | "readyz" | "livez"] => Document::Health,
        ["version"] => Document::Version,
        ["api"] => Document::CoreVersions,
        ["apis"] => Document::Groups,
        ["apis", group] => Document::Group(group.to_string()),
        ["api", version] => Document::GroupVersion(String::new(), version.to_string()),
        ["apis", group, version] => Document::GroupVersion(group.to_string(), version.to_string()),
        ["api", version, rest @ ..] => {
            return Some(Route::Resource(resource_path("", version, rest)?));
        }
        ["apis", group, version, rest @ ..] => {
            return Some(Route::Resource(resource_path(group, version, rest)?));
        }
        _ => return None,
    };
    Some(Route::Document(document))
}

/// Splits `[namespaces/{ns}/]{plural}[/{name}[/{subresource}]]`, keeping
/// `namespaces/{name}/status` as the namespace's own subresource.
fn resource_path(group: &str, version: &str, rest: &[&str]) -> Option<ResourcePath> {
    let namespace_subresource =
        group.is_empty() && matches!(rest, ["namespaces", _, "status" | "finalize"]);
    let (namespace, rest) = match rest {
        ["namespaces", ns, tail @ ..] if !tail.is_empty() && !namespace_subresource => {
            (Some(ns.to_string()), tail)
        }
        _ => (None, rest),
    };
    let (plural, name, subresource) = match rest {
        [plural] => (plural, None, None),
        [plural, name] => (plural, Some(name), None),
        [plural, name, sub] => (plural, Some(name), Some(sub)),
        _ => return None,
    };
    Some(ResourcePath {
        group: group.into(),
        version: version.into(),
        namespace,
        plural: plural.to_string(),
        name: name.map(|n| n.to_string()),
        subresource: subresource.map(|s| s.to_string()),
    })
}

/// One request being answered.
struct Call {
    cluster: FakeCluster,
    method: Method,
    query: HashMap<String, String>,
    accept: String,
    content_type: String,
    host: String,
    body: Bytes,
}

/// The object a request names.
struct Target<'a> {
    rt: &'a ResourceType,
    namespace: &'a str,
    name: &'a str,
    subresource: Option<&'a str>,
}

impl Target<'_> {
    fn part(&self) -> Part {
        if self.subresource == Some("status") {
            Part::Status
        } else {
            Part::Main
        }
    }
}

impl Call {
    fn param(&self, key: &str) -> Option<&str> {
        self.query.get(key).map(String::as_str)
    }

    fn dry_run(&self) -> bool {
        self.param("dryRun") == Some("All")
    }

    fn metadata_only(&self) -> bool {
        self.accept.contains("as=PartialObjectMetadata")
    }

    fn serve(&self, path: &str) -> Result<Response, ApiError> {
        if self.body.len() > MAX_BODY_BYTES {
            return Err(ApiError::too_large(MAX_BODY_BYTES));
        }
        match route(path).ok_or_else(ApiError::unknown_path)? {
            Route::Resource(resource) => self.serve_resource(&resource),
            Route::Document(_) if self.method != Method::GET => Err(ApiError::method_not_allowed()),
            Route::Document(document) => self.serve_document(document),
        }
    }

    fn serve_document(&self, document: Document) -> Result<Response, ApiError> {
        let catalogue = self.cluster.catalogue();
        let aggregated = discovery::wants_aggregated(&self.accept);
        let body = match document {
            Document::Health => return Ok("ok".into_response()),
            Document::Version => discovery::version_info(&self.cluster.git_version()),
            Document::CoreVersions | Document::Groups if aggregated => {
                let core = matches!(document, Document::CoreVersions);
                let body = discovery::aggregated(&catalogue, core);
                let content_type = [(header::CONTENT_TYPE, discovery::AGGREGATED_CONTENT_TYPE)];
                return Ok((StatusCode::OK, content_type, body.to_string()).into_response());
            }
            Document::CoreVersions => discovery::core_versions(&self.host),
            Document::Groups => discovery::group_list(&catalogue),
            Document::Group(group) => {
                discovery::group(&catalogue, &group).ok_or_else(ApiError::unknown_path)?
            }
            Document::GroupVersion(group, version) => {
                discovery::resource_list(&catalogue, &group, &version)
                    .ok_or_else(ApiError::unknown_path)?
            }
        };
        Ok(json_response(StatusCode::OK, &body))
    }

    fn serve_resource(&self, path: &ResourcePath) -> Result<Response, ApiError> {
        let rt = self
            .cluster
            .catalogue()
            .by_path(&path.group, &path.version, &path.plural)
            .cloned()
            .ok_or_else(ApiError::unknown_path)?;
        let namespace = path.namespace.as_deref();
        let name = path.name.as_deref();
        let subresource = path.subresource.as_deref();
        let misplaced = (namespace.is_some() && !rt.namespaced)
            || (rt.namespaced && namespace.is_none() && name.is_some());
        if misplaced || subresource.is_some_and(|s| !rt.subresources.contains(&s)) {
            return Err(ApiError::unknown_path());
        }
        let verb = self.verb(&rt, name.is_some(), subresource)?;
        let access = Access {
            namespace,
            name,
            subresource,
            ..Access::to(verb, &rt)
        };
        if self.cluster.is_denied(&access) {
            return Err(ApiError::forbidden(&access, USER));
        }
        let target = Target {
            rt: &rt,
            namespace: namespace.unwrap_or_default(),
            name: name.unwrap_or_default(),
            subresource,
        };
        match verb {
            "get" if subresource == Some("log") => self.pod_log(&target),
            "get" => self.get(&target),
            "list" => self.list(&rt, namespace),
            "watch" => self.watch(&rt, namespace),
            "create" => self.create(&target),
            "update" => self.update(&target),
            "patch" => self.patch(&target),
            "delete" => self.delete(&target),
            _ => self.delete_collection(&rt, namespace),
        }
    }

    fn verb(
        &self,
        rt: &ResourceType,
        named: bool,
        subresource: Option<&str>,
    ) -> Result<&'static str, ApiError> {
        let watch = matches!(self.param("watch"), Some("true" | "1"));
        let verb = match (&self.method, named) {
            (&Method::GET, true) => "get",
            (&Method::GET, false) if watch => "watch",
            (&Method::GET, false) => "list",
            (&Method::POST, false) => "create",
            (&Method::PUT, true) => "update",
            (&Method::PATCH, true) => "patch",
            (&Method::DELETE, true) => "delete",
            (&Method::DELETE, false) => "deletecollection",
            _ => return Err(ApiError::method_not_allowed()),
        };
        let allowed = match (rt.class, subresource) {
            (Class::Review, _) => verb == "create",
            (_, Some("log")) => verb == "get",
            (_, Some(_)) => matches!(verb, "get" | "update" | "patch"),
            (_, None) => true,
        };
        if allowed {
            Ok(verb)
        } else {
            Err(ApiError::method_not_allowed())
        }
    }

    fn shaped(&self, object: Value) -> Value {
        if self.metadata_only() {
            partial_metadata(&object)
        } else {
            object
        }
    }

    fn selectors(&self, rt: &ResourceType) -> Result<(LabelSelector, FieldSelector), ApiError> {
        let labels = LabelSelector::parse(self.param("labelSelector").unwrap_or_default());
        let fields = FieldSelector::parse(
            self.param("fieldSelector").unwrap_or_default(),
            rt.field_labels,
        );
        Ok((
            labels.map_err(ApiError::bad_request)?,
            fields.map_err(ApiError::bad_request)?,
        ))
    }

    fn get(&self, target: &Target<'_>) -> Result<Response, ApiError> {
        let object = self
            .cluster
            .store()
            .get(target.rt, target.namespace, target.name)
            .ok_or_else(|| ApiError::not_found(target.rt, target.name))?;
        Ok(json_response(StatusCode::OK, &self.shaped(object)))
    }

    fn pod_log(&self, target: &Target<'_>) -> Result<Response, ApiError> {
        if self
            .cluster
            .store()
            .get(target.rt, target.namespace, target.name)
            .is_none()
        {
            return Err(ApiError::not_found(target.rt, target.name));
        }
        let log = self.cluster.pod_log(target.namespace, target.name);
        let lines: Vec<&str> = log.split_inclusive('\n').collect();
        let tail = self
            .param("tailLines")
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(lines.len());
        let text = lines[lines.len().saturating_sub(tail)..].concat();
        Ok((StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], text).into_response())
    }

    /// A list document; built-in types omit `apiVersion`/`kind` on items as
    /// the real apiserver does, custom resources keep them.
    fn list_document(&self, rt: &ResourceType, items: Vec<Value>, metadata: Value) -> Value {
        let items: Vec<Value> = items
            .into_iter()
            .map(|mut item| {
                if self.metadata_only() {
                    self.shaped(item)
                } else {
                    if rt.class == Class::BuiltIn
                        && let Some(fields) = item.as_object_mut()
                    {
                        fields.remove("apiVersion");
                        fields.remove("kind");
                    }
                    item
                }
            })
            .collect();
        let (api_version, kind) = if self.metadata_only() {
            (
                "meta.k8s.io/v1".to_string(),
                "PartialObjectMetadataList".to_string(),
            )
        } else {
            (rt.api_version(), format!("{}List", rt.kind))
        };
        json!({"apiVersion": api_version, "kind": kind, "metadata": metadata, "items": items})
    }

    fn list(&self, rt: &ResourceType, namespace: Option<&str>) -> Result<Response, ApiError> {
        let (labels, fields) = self.selectors(rt)?;
        let after = continue_key(self.param("continue"))?;
        let limit = self
            .param("limit")
            .and_then(|l| l.parse::<usize>().ok())
            .filter(|l| *l > 0);
        let (Page { items, more }, rv) = {
            let store = self.cluster.store();
            let selected = store
                .stored_after(rt, namespace, after.as_ref())
                .filter(|o| labels.matches(o) && fields.matches(o));
            (paginate(rt, selected, limit), store.last_rv())
        };
        let mut metadata = json!({"resourceVersion": rv.to_string()});
        if let Some((token, remaining)) = more {
            metadata["continue"] = token.into();
            metadata["remainingItemCount"] = remaining.into();
        }
        Ok(json_response(
            StatusCode::OK,
            &self.list_document(rt, items, metadata),
        ))
    }

    fn create(&self, target: &Target<'_>) -> Result<Response, ApiError> {
        let body = patch::decode_object(&self.body)?;
        if target.rt.class == Class::Review {
            return Ok(json_response(
                StatusCode::CREATED,
                &self.review(target.rt, body),
            ));
        }
        let dry_run = self.dry_run();
        let created = self.cluster.write(|store| {
            store.create(target.rt, target.namespace, body, Writer::Client, dry_run)
        })?;
        Ok(json_response(StatusCode::CREATED, &created))
    }

    fn update(&self, target: &Target<'_>) -> Result<Response, ApiError> {
        let body = patch::decode_object(&self.body)?;
        let dry_run = self.dry_run();
        let updated = self.cluster.write(|store| {
            store.update(
                target.rt,
                target.namespace,
                target.name,
                body,
                target.part(),
                dry_run,
            )
        })?;
        Ok(json_response(StatusCode::OK, &updated))
    }

    fn patch(&self, target: &Target<'_>) -> Result<Response, ApiError> {
        let kind = PatchKind::from_content_type(&self.content_type, target.rt)?;
        let dry_run = self.dry_run();
        let (code, object) = self.cluster.write(|store| {
            let (rt, namespace, name) = (target.rt, target.namespace, target.name);
            match store.get(rt, namespace, name) {
                Some(current) => {
                    let patched = patch::apply(kind, &current, &self.body)?;
                    let updated =
                        store.update(rt, namespace, name, patched, target.part(), dry_run)?;
                    Ok((StatusCode::OK, updated))
                }
                None if kind == PatchKind::Apply && target.part() == Part::Main => {
                    let mut object = patch::decode_object(&self.body)?;
                    check_url_name(&object, name)?;
                    object["metadata"]["name"] = name.into();
                    if let Some(metadata) = object["metadata"].as_object_mut() {
                        metadata.remove("resourceVersion");
                    }
                    let created = store.create(rt, namespace, object, Writer::Client, dry_run)?;
                    Ok((StatusCode::CREATED, created))
                }
                None => Err(ApiError::not_found(rt, name)),
            }
        })?;
        Ok(json_response(code, &object))
    }

    /// DeleteOptions come as a body (kube sends them so) or query parameters.
    fn delete_options(&self) -> Result<DeleteOptions, ApiError> {
        let body = if self.body.iter().all(u8::is_ascii_whitespace) {
            json!({})
        } else {
            patch::decode_object(&self.body)?
        };
        let policy = body["propagationPolicy"]
            .as_str()
            .or_else(|| self.param("propagationPolicy"));
        let propagation = match policy {
            None if body["orphanDependents"] == true => Some(Propagation::Orphan),
            None => None,
            Some("Orphan") => Some(Propagation::Orphan),
            Some("Background") => Some(Propagation::Background),
            Some("Foreground") => Some(Propagation::Foreground),
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "propagationPolicy: Unsupported value: \"{other}\": supported values: \"Foreground\", \"Background\", \"Orphan\""
                )));
            }
        };
        let precondition = |field: &str| body["preconditions"][field].as_str().map(str::to_string);
        Ok(DeleteOptions {
            propagation,
            uid: precondition("uid"),
            resource_version: precondition("resourceVersion"),
            dry_run: self.dry_run()
                || body["dryRun"]
                    .as_array()
                    .is_some_and(|d| d.iter().any(|v| v == "All")),
        })
    }

    /// 202 with the object while finalizers hold it; once gone, custom
    /// resources and pods answer with the object, other built-ins with a
    /// `Success` Status, as the apiserver's registries do.
    fn delete(&self, target: &Target<'_>) -> Result<Response, ApiError> {
        let options = self.delete_options()?;
        let (rt, name) = (target.rt, target.name);
        let object = self
            .cluster
            .write(|store| store.delete(rt, target.namespace, name, &options))?;
        let pending = object["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty());
        let returns_object =
            rt.class == Class::Custom || (rt.group.is_empty() && rt.plural == "pods");
        Ok(if pending {
            json_response(StatusCode::ACCEPTED, &object)
        } else if returns_object {
            json_response(StatusCode::OK, &object)
        } else {
            let uid = object["metadata"]["uid"].as_str().unwrap_or_default();
            json_response(StatusCode::OK, &status::deleted(rt, name, uid))
        })
    }

    fn delete_collection(
        &self,
        rt: &ResourceType,
        namespace: Option<&str>,
    ) -> Result<Response, ApiError> {
        let (labels, fields) = self.selectors(rt)?;
        let options = self.delete_options()?;
        let deleted = self.cluster.write(|store| {
            let targets: Vec<(String, String)> = store
                .list(rt, namespace)
                .iter()
                .filter(|o| labels.matches(o) && fields.matches(o))
                .map(object_key)
                .collect();
            targets
                .iter()
                .filter_map(|(ns, name)| store.delete(rt, ns, name, &options).ok())
                .collect::<Vec<_>>()
        });
        let rv = self.cluster.store().last_rv();
        let document = self.list_document(rt, deleted, json!({"resourceVersion": rv.to_string()}));
        Ok(json_response(StatusCode::OK, &document))
    }

    fn review(&self, rt: &ResourceType, mut review: Value) -> Value {
        review["apiVersion"] = rt.api_version().into();
        review["kind"] = rt.kind.clone().into();
        let spec = &review["spec"];
        let status = if rt.kind == "TokenReview" {
            let mut status = self
                .cluster
                .token_review_status(spec["token"].as_str().unwrap_or_default());
            if status["authenticated"] == true && spec["audiences"].is_array() {
                status["audiences"] = spec["audiences"].clone();
            }
            status
        } else {
            let attributes = &spec["resourceAttributes"];
            let text = |field: &str| attributes[field].as_str().unwrap_or_default();
            let (group, plural) = (text("group"), text("resource"));
            let catalogue = self.cluster.catalogue();
            let kind = catalogue
                .types
                .iter()
                .find(|t| t.group == group && t.plural == plural)
                .map_or("", |t| t.kind.as_str());
            let access = Access {
                verb: text("verb"),
                group,
                plural,
                kind,
                subresource: Some(text("subresource")).filter(|s| !s.is_empty()),
                namespace: Some(text("namespace")).filter(|s| !s.is_empty()),
                name: Some(text("name")).filter(|s| !s.is_empty()),
            };
            let allowed = attributes.is_null() || !self.cluster.is_denied(&access);
            json!({"allowed": allowed})
        };
        review["status"] = status;
        review
    }

    /// Starts a watch: current objects as ADDED when no resourceVersion is
    /// given (or `sendInitialEvents` asks, followed by the end-of-initial-
    /// events bookmark), else a replay of changes after that version; then
    /// live changes until `timeoutSeconds` or server shutdown.
    fn watch(&self, rt: &ResourceType, namespace: Option<&str>) -> Result<Response, ApiError> {
        let (labels, fields) = self.selectors(rt)?;
        let filter = WatchFilter {
            rt: rt.clone(),
            namespace: namespace.map(str::to_string),
            labels,
            fields,
            metadata_only: self.metadata_only(),
        };
        let mut changes = self.cluster.subscribe();
        changes.borrow_and_update();
        let send_initial = self.param("sendInitialEvents") == Some("true");
        let resume_from = self
            .param("resourceVersion")
            .filter(|v| !v.is_empty() && *v != "0" && !send_initial);
        let mut pending = String::new();
        let cursor = {
            let store = self.cluster.store();
            match resume_from {
                Some(rv) => {
                    let rv: u64 = rv.parse().map_err(|_| {
                        ApiError::bad_request(format!("invalid resource version: {rv}"))
                    })?;
                    let oldest = store.oldest_watchable();
                    if rv < oldest {
                        let error =
                            ApiError::expired(format!("too old resource version: {rv} ({oldest})"));
                        let line = event_line("ERROR", error.to_status());
                        return Ok(json_response_text(line));
                    }
                    rv
                }
                None => {
                    for object in store.list(rt, namespace) {
                        if filter.selects(&object) {
                            pending.push_str(&filter.line("ADDED", object));
                        }
                    }
                    store.last_rv()
                }
            }
        };
        if send_initial {
            let bookmark = json!({
                "apiVersion": rt.api_version(),
                "kind": rt.kind,
                "metadata": {
                    "resourceVersion": cursor.to_string(),
                    "annotations": {"k8s.io/initial-events-end": "true"},
                },
            });
            pending.push_str(&event_line("BOOKMARK", bookmark));
        }
        let deadline = self
            .param("timeoutSeconds")
            .and_then(|s| s.parse().ok())
            .map(|s| Instant::now() + Duration::from_secs(s));
        let watch = Watch {
            cluster: self.cluster.clone(),
            filter,
            cursor,
            changes,
            pending,
            deadline,
        };
        let stream = futures::stream::unfold(watch, Watch::next_chunk);
        Ok((
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            Body::from_stream(stream),
        )
            .into_response())
    }
}

/// What metadata-only clients (`as=PartialObjectMetadata`) receive.
fn partial_metadata(object: &Value) -> Value {
    json!({
        "apiVersion": "meta.k8s.io/v1",
        "kind": "PartialObjectMetadata",
        "metadata": object["metadata"],
    })
}

fn json_response_text(text: String) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        text,
    )
        .into_response()
}

fn object_key(object: &Value) -> (String, String) {
    let metadata = &object["metadata"];
    let text = |field: &str| metadata[field].as_str().unwrap_or_default().to_string();
    (text("namespace"), text("name"))
}

/// One page of a list, and where the next starts.
struct Page {
    items: Vec<Value>,
    /// The `continue` token and how many items remain after this page.
    more: Option<(String, usize)>,
}

/// The key a `continue` token names. Tokens are opaque to clients; here
/// they hold the last key served.
fn continue_key(token: Option<&str>) -> Result<Option<(String, String)>, ApiError> {
    match token.filter(|t| !t.is_empty()) {
        Some(token) => serde_json::from_str(token)
            .map(Some)
            .map_err(|_| ApiError::bad_request(format!("continue key is not valid: {token}"))),
        None => Ok(None),
    }
}

/// The first `limit` of `items` (every one without a limit), and a
/// token for the rest.
fn paginate<'a>(
    rt: &ResourceType,
    items: impl Iterator<Item = &'a Value>,
    limit: Option<usize>,
) -> Page {
    let mut page = Vec::new();
    let mut remaining = 0;
    for o in items {
        if limit.is_some_and(|l| page.len() >= l) {
            remaining += 1;
        } else {
            page.push(present(rt, o));
        }
    }
    let more = (remaining > 0).then(|| {
        let last = page.last().map(object_key).unwrap_or_default();
        let token = serde_json::to_string(&last).expect("a pair of strings serializes");
        (token, remaining)
    });
    Page { items: page, more }
}

fn event_line(kind: &str, object: Value) -> String {
    let mut line = json!({"type": kind, "object": object}).to_string();
    line.push('\n');
    line
}

/// Which changes a watch reports, and how.
struct WatchFilter {
    rt: ResourceType,
    namespace: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
    metadata_only: bool,
}

impl WatchFilter {
    fn selects(&self, object: &Value) -> bool {
        self.namespace
            .as_ref()
            .is_none_or(|ns| object["metadata"]["namespace"] == ns.as_str())
            && self.labels.matches(object)
            && self.fields.matches(object)
    }

    fn line(&self, kind: &str, object: Value) -> String {
        let object = if self.metadata_only {
            partial_metadata(&object)
        } else {
            object
        };
        event_line(kind, object)
    }

    /// A modification that moves an object into or out of the selection is
    /// reported as ADDED or DELETED, as the apiserver's watch cache does.
    fn event(&self, change: &Change) -> Option<String> {
        if change.key != self.rt.storage_key() {
            return None;
        }
        let now = self.selects(&change.object);
        let before = change.previous.as_ref().is_some_and(|p| self.selects(p));
        let kind = match (change.kind, before, now) {
            (ChangeKind::Added, _, true) => "ADDED",
            (ChangeKind::Deleted, _, true) => "DELETED",
            (ChangeKind::Modified, true, true) => "MODIFIED",
            (ChangeKind::Modified, false, true) => "ADDED",
            (ChangeKind::Modified, true, false) => "DELETED",
            _ => return None,
        };
        Some(self.line(kind, present(&self.rt, &change.object)))
    }
}

struct Watch {
    cluster: FakeCluster,
    filter: WatchFilter,
    cursor: u64,
    changes: tokio::sync::watch::Receiver<u64>,
    pending: String,
    deadline: Option<Instant>,
}

impl Watch {
    fn collect(&mut self) -> String {
        let store = self.cluster.store();
        let mut chunk = String::new();
        for change in store.changes_after(self.cursor) {
            self.cursor = change.rv;
            if let Some(line) = self.filter.event(change) {
                chunk.push_str(&line);
            }
        }
        chunk
    }

    /// The next batch of event lines; `None` ends the response.
    async fn next_chunk(mut self) -> Option<(Result<String, Infallible>, Self)> {
        if !self.pending.is_empty() {
            let chunk = std::mem::take(&mut self.pending);
            return Some((Ok(chunk), self));
        }
        loop {
            // Marking the version seen before reading means a write landing
            // in between still wakes the wait below.
            self.changes.borrow_and_update();
            let chunk = self.collect();
            if !chunk.is_empty() {
                return Some((Ok(chunk), self));
            }
            let woke = match self.deadline {
                Some(deadline) => tokio::time::timeout_at(deadline, self.changes.changed())
                    .await
                    .is_ok_and(|r| r.is_ok()),
                None => self.changes.changed().await.is_ok(),
            };
            if !woke {
                return None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_into_routes() {
        let Some(Route::Resource(p)) = route("/apis/batch/v1/namespaces/ns/jobs/j/status") else {
            panic!("a namespaced subresource path")
        };
        assert_eq!(
            (p.group.as_str(), p.namespace.as_deref(), p.plural.as_str()),
            ("batch", Some("ns"), "jobs")
        );
        assert_eq!(
            (p.name.as_deref(), p.subresource.as_deref()),
            (Some("j"), Some("status"))
        );
        let Some(Route::Resource(p)) = route("/api/v1/namespaces/ns/status") else {
            panic!("a namespace's own status")
        };
        assert_eq!(
            (p.plural.as_str(), p.name.as_deref()),
            ("namespaces", Some("ns"))
        );
        assert!(matches!(
            route("/api/v1/namespaces"),
            Some(Route::Resource(_))
        ));
        assert!(matches!(
            route("/apis/nvidia.com"),
            Some(Route::Document(Document::Group(_)))
        ));
        assert!(route("/api/v1/a/b/c/d").is_none());
    }

    #[test]
    fn pages_follow_continue_tokens() {
        let mut store = crate::store::Store::new();
        let nodes = store.catalogue().by_name("nodes").unwrap().clone();
        for n in ["c", "a", "b"] {
            store
                .create(
                    &nodes,
                    "",
                    json!({"metadata": {"name": n}}),
                    Writer::Test,
                    false,
                )
                .unwrap();
        }
        let page = |token: Option<&str>| {
            let after = continue_key(token).unwrap();
            paginate(
                &nodes,
                store.stored_after(&nodes, None, after.as_ref()),
                Some(2),
            )
        };
        let first = page(None);
        let (token, remaining) = first.more.unwrap();
        let names = |p: &[Value]| -> Vec<String> {
            p.iter()
                .map(|o| o["metadata"]["name"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(
            (names(&first.items), remaining),
            (vec!["a".into(), "b".into()], 1)
        );
        assert_eq!(
            first.items[0]["kind"], "Node",
            "served as the API presents it"
        );
        let rest = page(Some(&token));
        assert_eq!(names(&rest.items), ["c"]);
        assert!(rest.more.is_none());
        assert!(continue_key(Some("not a key")).is_err());
    }
}
