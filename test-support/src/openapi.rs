//! The subset of OpenAPI 3.0 schemas our document uses, checked strictly: `$ref`, `type`,
//! `nullable`, `properties`, `required`, `additionalProperties`, `items`, `enum`, `oneOf`.
//! Unknown keywords (`description`, `format`, `default`) are ignored.

use serde_json::Value;

/// Why a document could not be loaded.
#[derive(Debug)]
pub enum DocumentError {
    /// The file cannot be read.
    Read(std::path::PathBuf, std::io::Error),
    /// It is not YAML of a document.
    Yaml(serde_norway::Error),
}

impl std::fmt::Display for DocumentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Read(path, e) => write!(f, "{}: {e}", path.display()),
            Self::Yaml(e) => write!(f, "not an OpenAPI document: {e}"),
        }
    }
}

impl std::error::Error for DocumentError {}

/// An OpenAPI document.
#[derive(Debug, Clone)]
pub struct Document {
    root: Value,
}

/// Why an answer does not match the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// Where in the answer (`/services/0/healthy`).
    pub at: String,
    /// What is wrong.
    pub problem: String,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "at {}: {}", self.at, self.problem)
    }
}

impl std::error::Error for Mismatch {}

fn mismatch(at: &str, problem: impl Into<String>) -> Mismatch {
    Mismatch {
        at: if at.is_empty() {
            "/".to_owned()
        } else {
            at.to_owned()
        },
        problem: problem.into(),
    }
}

impl Document {
    /// Parses the YAML text of a document.
    ///
    /// # Errors
    /// [`DocumentError::Yaml`].
    pub fn from_yaml(text: &str) -> Result<Self, DocumentError> {
        let root: Value = serde_norway::from_str(text).map_err(DocumentError::Yaml)?;
        Ok(Self { root })
    }

    /// Reads `docs/admin-api.yaml` of the workspace (`manifest_dir` is the calling crate's
    /// `CARGO_MANIFEST_DIR`).
    ///
    /// # Errors
    /// [`DocumentError`].
    pub fn admin_api(manifest_dir: &str) -> Result<Self, DocumentError> {
        let path = std::path::Path::new(manifest_dir).join("../docs/admin-api.yaml");
        let text = std::fs::read_to_string(&path).map_err(|e| DocumentError::Read(path, e))?;
        Self::from_yaml(&text)
    }

    /// The schema of a named component (`#/components/schemas/NAME`).
    pub fn component(&self, name: &str) -> Option<&Value> {
        self.root.pointer(&format!("/components/schemas/{name}"))
    }

    /// The schema of the JSON answer to `method path` with `status` (`path` may hold
    /// values where the document has `{name}`; a query string is ignored); `default` when the
    /// status has no entry of its own.
    ///
    /// # Errors
    /// No such path, method or response, or no JSON schema for it.
    pub fn response_schema(
        &self,
        method: &str,
        path: &str,
        status: u16,
    ) -> Result<&Value, Mismatch> {
        let path = path.split('?').next().unwrap_or(path);
        let paths = self
            .root
            .get("paths")
            .and_then(Value::as_object)
            .ok_or_else(|| mismatch("", "the document has no paths"))?;
        let (_, item) = paths
            .iter()
            .find(|(template, _)| matches_template(template, path))
            .ok_or_else(|| mismatch("", format!("{path} is not in the document")))?;
        let op = item
            .get(method.to_ascii_lowercase())
            .ok_or_else(|| mismatch("", format!("{method} {path} is not in the document")))?;
        let responses = op
            .get("responses")
            .ok_or_else(|| mismatch("", format!("{method} {path} has no responses")))?;
        let response = responses
            .get(status.to_string())
            .or_else(|| responses.get("default"))
            .ok_or_else(|| {
                mismatch(
                    "",
                    format!("{method} {path} does not document status {status}"),
                )
            })?;
        let response = self.resolve(response)?;
        response
            .pointer("/content/application~1json/schema")
            .ok_or_else(|| mismatch("", format!("{method} {path} {status} has no JSON schema")))
    }

    /// Checks `body`, the answer to `method path` with `status`, against the document.
    ///
    /// # Errors
    /// The first [`Mismatch`].
    pub fn check(
        &self,
        method: &str,
        path: &str,
        status: u16,
        body: &Value,
    ) -> Result<(), Mismatch> {
        let schema = self.response_schema(method, path, status)?;
        self.validate(schema, body, "")
    }

    /// Checks `value` against `schema`.
    ///
    /// # Errors
    /// The first [`Mismatch`].
    pub fn validate(&self, schema: &Value, value: &Value, at: &str) -> Result<(), Mismatch> {
        let schema = self.resolve(schema)?;
        if value.is_null() {
            return if schema.get("nullable").and_then(Value::as_bool) == Some(true) {
                Ok(())
            } else {
                Err(mismatch(at, "null where the document does not allow it"))
            };
        }
        if let Some(options) = schema.get("oneOf").and_then(Value::as_array) {
            let matching = options
                .iter()
                .filter(|o| self.validate(o, value, at).is_ok())
                .count();
            if matching != 1 {
                return Err(mismatch(
                    at,
                    format!("{value} matches {matching} of the oneOf schemas, not one"),
                ));
            }
        }
        if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
            && !allowed.contains(value)
        {
            return Err(mismatch(at, format!("{value} is not one of {allowed:?}")));
        }
        match schema.get("type").and_then(Value::as_str) {
            None => Ok(()),
            Some("string") => expect(value.is_string(), at, "a string", value),
            Some("boolean") => expect(value.is_boolean(), at, "a boolean", value),
            Some("integer") => expect(value.is_i64() || value.is_u64(), at, "an integer", value),
            Some("number") => expect(value.is_number(), at, "a number", value),
            Some("array") => {
                let items = value
                    .as_array()
                    .ok_or_else(|| mismatch(at, format!("{value} is not an array")))?;
                if let Some(item_schema) = schema.get("items") {
                    for (i, item) in items.iter().enumerate() {
                        self.validate(item_schema, item, &format!("{at}/{i}"))?;
                    }
                }
                Ok(())
            }
            Some("object") => self.validate_object(schema, value, at),
            Some(other) => Err(mismatch(
                at,
                format!("the document has an unknown type {other:?}"),
            )),
        }
    }

    fn validate_object(&self, schema: &Value, value: &Value, at: &str) -> Result<(), Mismatch> {
        let object = value
            .as_object()
            .ok_or_else(|| mismatch(at, format!("{value} is not an object")))?;
        for name in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !object.contains_key(name) {
                return Err(mismatch(at, format!("required field {name:?} is missing")));
            }
        }
        let properties = schema.get("properties").and_then(Value::as_object);
        for (name, v) in object {
            let here = format!("{at}/{name}");
            match properties.and_then(|p| p.get(name)) {
                Some(s) => self.validate(s, v, &here)?,
                None => match schema.get("additionalProperties") {
                    Some(Value::Bool(false)) => {
                        return Err(mismatch(&here, "a field the document does not have"));
                    }
                    Some(Value::Bool(true)) | None => {}
                    Some(s) => self.validate(s, v, &here)?,
                },
            }
        }
        Ok(())
    }

    fn resolve<'a>(&'a self, schema: &'a Value) -> Result<&'a Value, Mismatch> {
        match schema.get("$ref").and_then(Value::as_str) {
            Some(r) => {
                let pointer = r
                    .strip_prefix('#')
                    .ok_or_else(|| mismatch("", format!("external $ref {r} is not supported")))?;
                let target = self
                    .root
                    .pointer(pointer)
                    .ok_or_else(|| mismatch("", format!("$ref {r} points nowhere")))?;
                self.resolve(target)
            }
            None => Ok(schema),
        }
    }
}

fn expect(ok: bool, at: &str, what: &str, value: &Value) -> Result<(), Mismatch> {
    if ok {
        Ok(())
    } else {
        Err(mismatch(at, format!("{value} is not {what}")))
    }
}

/// `/v1/certs/{name}/rotate` matches `/v1/certs/grafana/rotate`.
fn matches_template(template: &str, path: &str) -> bool {
    let (t, p): (Vec<&str>, Vec<&str>) = (template.split('/').collect(), path.split('/').collect());
    t.len() == p.len()
        && t.iter()
            .zip(&p)
            .all(|(t, p)| (t.starts_with('{') && t.ends_with('}') && !p.is_empty()) || t == p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strict_objects_nullable_refs_and_one_of() {
        let doc = Document::from_yaml(
            r##"
paths:
  /v1/x/{name}:
    post:
      responses:
        "200": { content: { application/json: { schema: { $ref: "#/components/schemas/X" } } } }
components:
  schemas:
    X:
      type: object
      additionalProperties: false
      required: [a, b]
      properties:
        a: { type: integer, nullable: true }
        b: { oneOf: [ { type: array, items: { type: string } }, { type: string, enum: [NO] } ] }
"##,
        )
        .unwrap();
        let ok = |v: Value| doc.check("POST", "/v1/x/n", 200, &v);
        ok(json!({"a": 1, "b": ["x"]})).unwrap();
        ok(json!({"a": null, "b": "NO"})).unwrap();
        assert_eq!(
            ok(json!({"a": 1})).unwrap_err().problem,
            "required field \"b\" is missing"
        );
        assert_eq!(ok(json!({"a": 1, "b": "YES"})).unwrap_err().at, "/b");
        assert_eq!(ok(json!({"a": 1, "b": [], "c": 2})).unwrap_err().at, "/c");
        assert_eq!(ok(json!({"a": "1", "b": []})).unwrap_err().at, "/a");
        assert!(
            doc.check("GET", "/v1/x/n", 200, &json!({}))
                .unwrap_err()
                .problem
                .contains("not in the document")
        );
        assert!(
            doc.check("POST", "/v1/x/n", 500, &json!({}))
                .unwrap_err()
                .problem
                .contains("500")
        );
    }
}
