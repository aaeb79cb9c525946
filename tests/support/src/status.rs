//! Failures as the apiserver reports them: a `Status` object whose message,
//! reason, details and code follow the real server's wording, because product
//! code matches on reasons and tests compare messages.

use crate::resources::{ResourceType, qualify};
use serde_json::{Map, Value, json};

/// A failed request, rendered as a `Status` body by [`ApiError::to_status`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ApiError {
    pub code: u16,
    reason: Option<&'static str>,
    message: String,
    details: Map<String, Value>,
}

impl ApiError {
    fn new(code: u16, reason: Option<&'static str>, message: String) -> Self {
        ApiError {
            code,
            reason,
            message,
            details: Map::new(),
        }
    }

    /// Details name the object by plural resource (or by kind for `Invalid`),
    /// leaving out what is empty, as the apiserver's `omitempty` fields do.
    fn about(mut self, name: &str, group: &str, kind: &str) -> Self {
        for (key, value) in [("name", name), ("group", group), ("kind", kind)] {
            if !value.is_empty() {
                self.details.insert(key.into(), value.into());
            }
        }
        self
    }

    fn about_resource(self, rt: &ResourceType, name: &str) -> Self {
        self.about(name, &rt.group, &rt.plural)
    }

    pub fn not_found(rt: &ResourceType, name: &str) -> Self {
        let message = format!("{} \"{name}\" not found", rt.qualified_resource());
        Self::new(404, Some("NotFound"), message).about_resource(rt, name)
    }

    pub fn namespace_not_found(namespace: &str) -> Self {
        let message = format!("namespaces \"{namespace}\" not found");
        Self::new(404, Some("NotFound"), message).about(namespace, "", "namespaces")
    }

    /// A path that names no served group, version or resource.
    pub fn unknown_path() -> Self {
        let message = "the server could not find the requested resource".to_string();
        Self::new(404, Some("NotFound"), message)
    }

    pub fn already_exists(rt: &ResourceType, name: &str) -> Self {
        let message = format!("{} \"{name}\" already exists", rt.qualified_resource());
        Self::new(409, Some("AlreadyExists"), message).about_resource(rt, name)
    }

    pub fn conflict(rt: &ResourceType, name: &str, why: &str) -> Self {
        let message = format!(
            "Operation cannot be fulfilled on {} \"{name}\": {why}",
            rt.qualified_resource()
        );
        Self::new(409, Some("Conflict"), message).about_resource(rt, name)
    }

    pub fn stale(rt: &ResourceType, name: &str) -> Self {
        Self::conflict(
            rt,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    pub fn forbidden(access: &Access<'_>, user: &str) -> Self {
        let qualified = qualify(access.plural, access.group);
        let subject = match access.name {
            Some(name) => format!("{qualified} \"{name}\""),
            None => qualified,
        };
        let resource = match access.subresource {
            Some(sub) => format!("{}/{sub}", access.plural),
            None => access.plural.to_string(),
        };
        let scope = match access.namespace {
            Some(ns) => format!("in the namespace \"{ns}\""),
            None => "at the cluster scope".to_string(),
        };
        let message = format!(
            "{subject} is forbidden: User \"{user}\" cannot {} resource \"{resource}\" in API group \"{}\" {scope}",
            access.verb, access.group
        );
        Self::new(403, Some("Forbidden"), message).about(
            access.name.unwrap_or(""),
            access.group,
            access.plural,
        )
    }

    /// A validation failure of one field; `detail` starts with the error type
    /// (`Required value: …`, `Invalid value: …`) as field errors print.
    pub fn invalid(
        rt: &ResourceType,
        name: &str,
        field: &str,
        cause: &'static str,
        detail: &str,
    ) -> Self {
        let message = format!(
            "{} \"{name}\" is invalid: {field}: {detail}",
            rt.qualified_kind()
        );
        let mut error = Self::new(422, Some("Invalid"), message).about(name, &rt.group, &rt.kind);
        error.details.insert(
            "causes".into(),
            json!([{"reason": cause, "message": detail, "field": field}]),
        );
        error
    }

    /// A patch document that could not be applied (the apiserver answers 422
    /// with the patch library's text).
    pub fn unprocessable(message: String) -> Self {
        Self::new(422, Some("Invalid"), message)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, Some("BadRequest"), message.into())
    }

    pub fn method_not_allowed() -> Self {
        let message = "the server does not allow this method on the requested resource".into();
        Self::new(405, Some("MethodNotAllowed"), message)
    }

    pub fn unsupported_media_type(accepted: &[&str]) -> Self {
        let message = format!(
            "the body of the request was in an unknown format - accepted media types include: {}",
            accepted.join(", ")
        );
        Self::new(415, Some("UnsupportedMediaType"), message)
    }

    pub fn expired(message: String) -> Self {
        Self::new(410, Some("Expired"), message)
    }

    pub fn too_large(limit: usize) -> Self {
        let message = format!("Request entity too large: limit is {limit}");
        Self::new(413, Some("RequestEntityTooLarge"), message)
    }

    /// Errors the apiserver passes through from storage carry no reason.
    pub fn internal(message: &str) -> Self {
        Self::new(500, None, message.into())
    }

    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "details": self.details,
            "code": self.code,
        });
        if let Some(reason) = self.reason {
            status["reason"] = reason.into();
        }
        status
    }
}

/// What a request asks to do, in the terms authorization speaks. Kept as
/// plain names because access reviews may ask about resources the server
/// does not serve (the agent's pre-flight asks for `jobs` in group "").
#[derive(Debug, Clone, Copy)]
pub(crate) struct Access<'a> {
    pub verb: &'a str,
    pub group: &'a str,
    pub plural: &'a str,
    pub kind: &'a str,
    pub subresource: Option<&'a str>,
    pub namespace: Option<&'a str>,
    pub name: Option<&'a str>,
}

impl<'a> Access<'a> {
    pub fn to(verb: &'a str, rt: &'a ResourceType) -> Self {
        Access {
            verb,
            group: &rt.group,
            plural: &rt.plural,
            kind: &rt.kind,
            subresource: None,
            namespace: None,
            name: None,
        }
    }
}

/// The body of a delete that removed the object at once.
pub(crate) fn deleted(rt: &ResourceType, name: &str, uid: &str) -> Value {
    let mut details = ApiError::new(200, None, String::new())
        .about(name, &rt.group, &rt.plural)
        .details;
    details.insert("uid".into(), uid.into());
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::Catalogue;

    #[test]
    fn messages_follow_apiserver_wording() {
        let catalogue = Catalogue::new(std::iter::empty());
        let cm = catalogue.by_name("configmaps").unwrap();
        let job = catalogue.by_name("jobs").unwrap();
        assert_eq!(
            ApiError::not_found(cm, "x").to_status()["message"],
            r#"configmaps "x" not found"#
        );
        assert_eq!(
            ApiError::already_exists(job, "j").to_status()["message"],
            r#"jobs.batch "j" already exists"#
        );
        let access = Access {
            namespace: Some("ns"),
            ..Access::to("list", job)
        };
        let status = ApiError::forbidden(&access, "u").to_status();
        assert_eq!(
            status["message"],
            r#"jobs.batch is forbidden: User "u" cannot list resource "jobs" in API group "batch" in the namespace "ns""#
        );
        assert_eq!(status["details"], json!({"group": "batch", "kind": "jobs"}));
    }
}
