//! The API against its own OpenAPI document. Every operation the served document lists is fed generated
//! path and query parameters, headers and bodies (valid per the request schema, subtly wrong, of the wrong
//! shape, malformed, huge), and every answer must be one the document declares for that operation: no 5xx,
//! a declared status (or range), a declared content type, and a JSON body that validates against the
//! declared schema. Bad keys must get 401/403 problems whatever else is wrong with the request.
//!
//! Nothing here knows the routes: it reads them from `/api/v1/openapi.json`. The only knowledge of the
//! domain is realistic seed values (a campaign file, contacts, phone numbers) so that requests get past
//! validation too, not only into it.
//!
//! Reproduce a failure with the `PROPTEST_RNG_SEED` it prints; `PROPTEST_CASES` sets the cases per
//! operation (default 96).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Mutex;

use proptest::prelude::*;
use proptest::sample::select;
use proptest::strategy::{BoxedStrategy, Union};
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};
use reqwest::header::{HeaderName, HeaderValue};
use reqwest::Method;
use serde_json::{json, Map, Value};

use crate::helpers::{contact, delivery_campaign_json, Api};

const DEFAULT_CASES: u32 = 96;
/// Over axum's default 2 MiB body limit (the push route allows more and must parse it).
const HUGE: usize = 3 * 1024 * 1024;

// ---------------------------------------------------------------------------------------------------------
// The world the requests run against.

/// Keys of every kind, and ids and numbers that exist, so generated requests can hit real rows.
struct World {
    admin: String,
    /// A key with no scope at all: authenticated, allowed nothing.
    unscoped: String,
    revoked: String,
    ids: Vec<i64>,
    phones: Vec<String>,
    /// Known-good bodies by request schema name (`CampaignFile`, …).
    seeds: HashMap<String, Vec<Value>>,
}

impl World {
    async fn seed(api: &Api) -> Self {
        // `DELETE /keys/{id}` is fuzzed with the world's ids (1…14): those are throwaway keys, so the fuzz
        // never revokes the keys it runs with.
        for _ in 0..20 {
            api.key(&[]).await;
        }
        let admin = api.admin().await;
        // The admin is an operator too, so the operator routes are exercised past their refusal.
        let admin_id = api.store.api_keys_list().await.unwrap().into_iter().map(|k| k.id).max().unwrap();
        sqlx::query("INSERT INTO operators (api_key_id, identity) VALUES ($1, 'fuzz-admin')")
            .bind(admin_id)
            .execute(api.store.pool())
            .await
            .unwrap();
        let unscoped = api.key(&[]).await;
        let revoked = api.admin().await;
        let revoked_id = api.store.api_keys_list().await.unwrap().into_iter().map(|k| k.id).max().unwrap();
        assert!(api.store.api_keys_revoke(revoked_id).await.unwrap());

        let mut ids = Vec::new();
        for _ in 0..2 {
            ids.push(api.delivery_campaign(&admin).await);
        }
        let push = json!({"contacts": (0..12).map(contact).collect::<Vec<_>>()});
        let r = api
            .req(Method::POST, &format!("/api/v1/campaigns/{}/contacts", ids[0]), &admin)
            .json(&push)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let report: Value = r.json().await.unwrap();
        ids.extend(report["contacts"].as_array().unwrap().iter().map(|c| c["id"].as_i64().unwrap()));
        let phones: Vec<String> =
            push["contacts"].as_array().unwrap().iter().map(|c| c["phone"].as_str().unwrap().to_string()).collect();
        let r = api.req(Method::PUT, &format!("/api/v1/dnc/{}", phones[0]), &admin).json(&json!({})).send().await;
        assert_eq!(r.unwrap().status(), 200);

        let file = delivery_campaign_json();
        let live = |k: &str| json!({ k: file[k].clone() });
        let seeds = HashMap::from([
            ("CampaignFile".to_string(), vec![file.clone()]),
            (
                "CampaignPatch".to_string(),
                vec![live("window"), live("cps"), live("retry"), live("max_attempts"), json!({"cps": 2.5})],
            ),
            (
                "ContactsPush".to_string(),
                vec![
                    json!({"contacts": (100..103).map(contact).collect::<Vec<_>>()}),
                    json!({"contacts": [contact(0)]}),
                    json!({"contacts": []}),
                ],
            ),
            ("DncAdd".to_string(), vec![json!({}), json!({"reason": "asked", "campaign_id": ids[0]})]),
        ]);
        Self { admin, unscoped, revoked, ids, phones, seeds }
    }
}

// ---------------------------------------------------------------------------------------------------------
// The document.

struct Operation {
    method: Method,
    path: String,
    op: Value,
}

impl Operation {
    fn name(&self) -> String {
        format!("{} {}", self.method, self.path)
    }

    fn params(&self, location: &str) -> Vec<&Value> {
        self.op["parameters"].as_array().into_iter().flatten().filter(|p| p["in"] == location).collect()
    }
}

fn operations(doc: &Value) -> Vec<Operation> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            let Ok(method) = method.to_ascii_uppercase().parse::<Method>() else { continue };
            if !["GET", "PUT", "POST", "DELETE", "PATCH"].contains(&method.as_str()) {
                continue;
            }
            out.push(Operation { method, path: path.clone(), op: op.clone() });
        }
    }
    out
}

/// Follows `$ref`s (`#/…` only: the document is self-contained).
fn resolve<'a>(root: &'a Value, mut s: &'a Value) -> &'a Value {
    while let Some(r) = s.get("$ref").and_then(Value::as_str) {
        s = root.pointer(r.strip_prefix('#').expect("local ref")).unwrap_or_else(|| panic!("dangling {r}"));
    }
    s
}

/// Response body validators, one per schema location, built on first use. The schema is wrapped with the
/// document's components so its `#/components/schemas/…` refs resolve (OpenAPI 3.1 is JSON Schema 2020-12).
struct Validators {
    components: Value,
    built: Mutex<HashMap<String, std::sync::Arc<jsonschema::Validator>>>,
}

impl Validators {
    fn validate(&self, schema: &Value, instance: &Value) -> Result<(), String> {
        let key = schema.to_string();
        let v = {
            let mut built = self.built.lock().unwrap();
            built
                .entry(key)
                .or_insert_with(|| {
                    let wrapper = json!({
                        "$schema": "https://json-schema.org/draft/2020-12/schema",
                        "components": self.components,
                        "allOf": [schema],
                    });
                    std::sync::Arc::new(
                        jsonschema::options()
                            .with_draft(jsonschema::Draft::Draft202012)
                            .should_validate_formats(true)
                            .build(&wrapper)
                            .unwrap_or_else(|e| panic!("the document's schema {schema} does not compile: {e}")),
                    )
                })
                .clone()
        };
        let errors: Vec<String> = v.iter_errors(instance).map(|e| format!("{} at {}", e, e.instance_path)).collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// What is sent.

#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect {
    /// A live key with every scope: the handler decides.
    Allowed,
    Unauthorized,
    Forbidden,
}

#[derive(Clone)]
struct Case {
    /// `{name}` → an already percent-encoded path segment.
    path: Vec<(String, String)>,
    /// An already encoded query string (may be empty).
    query: String,
    authorization: Option<Vec<u8>>,
    expect: Expect,
    headers: Vec<(String, Vec<u8>)>,
    body: Option<Vec<u8>>,
}

impl Case {
    fn url(&self, op: &Operation) -> String {
        let mut path = op.path.clone();
        for (name, seg) in &self.path {
            path = path.replace(&format!("{{{name}}}"), seg);
        }
        if self.query.is_empty() {
            path
        } else {
            format!("{path}?{}", self.query)
        }
    }

    /// A request whose route cannot match (an empty segment) is the fallback's 404, before any auth.
    fn may_miss_route(&self) -> bool {
        self.path.iter().any(|(_, s)| s.is_empty())
    }
}

/// Shown on failure (and while shrinking): bodies cut short, bytes escaped.
impl fmt::Debug for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |b: &[u8]| {
            let s = String::from_utf8_lossy(&b[..b.len().min(400)]).into_owned();
            if b.len() > 400 {
                format!("{s:?}… ({} bytes)", b.len())
            } else {
                format!("{s:?}")
            }
        };
        f.debug_struct("Case")
            .field("path", &self.path)
            .field("query", &self.query)
            .field("authorization", &self.authorization.as_deref().map(show))
            .field("expect", &self.expect)
            .field("headers", &self.headers.iter().map(|(k, v)| (k, show(v))).collect::<Vec<_>>())
            .field("body", &self.body.as_deref().map(show))
            .finish()
    }
}

/// Percent-encodes everything but unreserved characters, so the segment stays one segment.
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Strings that tend to break things: NUL and control characters, unicode, very long, injection-ish.
fn nasty_string() -> BoxedStrategy<String> {
    prop_oneof![
        4 => "[a-zA-Z0-9 _.-]{0,12}",
        2 => "\\PC{0,24}",
        1 => any::<String>(),
        1 => Just("\u{0}".to_string()),
        1 => "[a-z]{0,4}".prop_map(|s| format!("{s}\u{0}{s}")),
        1 => Just("日本語のテキスト🎌".to_string()),
        1 => Just("' OR 1=1; --".to_string()),
        1 => Just("=cmd|' /C calc'!A0".to_string()),
        1 => (1usize..5000).prop_map(|n| "x".repeat(n)),
        1 => Just(String::new()),
        1 => Just(" ".to_string()),
    ]
    .boxed()
}

/// Any JSON at all (the wrong shape, mostly).
fn any_json() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter("JSON numbers are finite", |f| f.is_finite()).prop_map(Value::from),
        nasty_string().prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z_]{1,10}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
    .boxed()
}

/// Values of a JSON Schema (the subset utoipa writes), valid by its types, not by the domain's rules.
fn from_schema(root: &Value, schema: &Value, depth: u32) -> BoxedStrategy<Value> {
    let s = resolve(root, schema);
    if depth > 10 {
        return Just(Value::Null).boxed();
    }
    if let Some(c) = s.get("const") {
        return Just(c.clone()).boxed();
    }
    if let Some(e) = s.get("enum").and_then(Value::as_array) {
        return select(e.clone()).boxed();
    }
    for k in ["oneOf", "anyOf"] {
        if let Some(alts) = s.get(k).and_then(Value::as_array) {
            return Union::new(alts.iter().map(|a| from_schema(root, a, depth + 1))).boxed();
        }
    }
    if let Some(all) = s.get("allOf").and_then(Value::as_array) {
        let parts: Vec<_> = all.iter().map(|a| from_schema(root, a, depth + 1)).collect();
        return parts
            .prop_map(|vs| {
                let mut merged = Map::new();
                for v in vs {
                    if let Value::Object(m) = v {
                        merged.extend(m);
                    }
                }
                Value::Object(merged)
            })
            .boxed();
    }
    let types: Vec<String> = match s.get("type") {
        Some(Value::String(t)) => vec![t.clone()],
        Some(Value::Array(ts)) => ts.iter().filter_map(|t| t.as_str().map(str::to_string)).collect(),
        _ if s.get("properties").is_some() => vec!["object".into()],
        _ => return any_json(),
    };
    let min = s.get("minimum").and_then(Value::as_f64);
    Union::new(types.iter().map(|t| -> BoxedStrategy<Value> {
        match t.as_str() {
            "null" => Just(Value::Null).boxed(),
            "boolean" => any::<bool>().prop_map(Value::from).boxed(),
            "integer" => prop_oneof![4 => 0i64..10, 2 => 0i64..100_000, 1 => any::<i64>()]
                .prop_map(move |n| {
                    Value::from(if min.is_some_and(|m| (n as f64) < m) { n.unsigned_abs() as i64 } else { n })
                })
                .prop_map(|v| if v.as_i64().is_some() { v } else { Value::from(0) })
                .boxed(),
            "number" => prop_oneof![4 => 0.0f64..20.0, 1 => -1e6f64..1e6, 1 => Just(1e300)]
                .prop_map(move |n| Value::from(if min.is_some_and(|m| n < m) { n.abs() } else { n }))
                .boxed(),
            "string" => match s.get("format").and_then(Value::as_str) {
                Some("date-time") => Just(Value::from("2027-01-01T09:00:00Z")).boxed(),
                Some("date") => Just(Value::from("2027-01-01")).boxed(),
                _ => prop_oneof![
                    3 => nasty_string(),
                    1 => Just("+818012345678".to_string()),
                    1 => Just("09:00".to_string()),
                    1 => Just("Asia/Tokyo".to_string()),
                ]
                .prop_map(Value::from)
                .boxed(),
            },
            "array" => {
                let items = s.get("items").cloned().unwrap_or(json!({}));
                let n = if depth > 5 { 0..1 } else { 0..4 };
                proptest::collection::vec(from_schema(root, &items, depth + 1), n).prop_map(Value::Array).boxed()
            }
            _ => object_from_schema(root, s, depth),
        }
    }))
    .boxed()
}

fn object_from_schema(root: &Value, s: &Value, depth: u32) -> BoxedStrategy<Value> {
    let required: Vec<&str> = s["required"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    let props: Vec<BoxedStrategy<Option<(String, Value)>>> = s["properties"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| required.contains(&k.as_str()) || depth <= 5)
        .map(|(k, v)| {
            let is_required = required.contains(&k.as_str());
            let k = k.clone();
            let value = from_schema(root, v, depth + 1).prop_map(move |v| (k.clone(), v));
            if is_required {
                value.prop_map(Some).boxed()
            } else {
                proptest::option::of(value).boxed()
            }
        })
        .collect();
    let extra = match s.get("additionalProperties") {
        Some(ap @ Value::Object(_)) if depth <= 5 => {
            proptest::collection::btree_map("[a-z0-9_]{1,8}", from_schema(root, ap, depth + 1), 0..3).boxed()
        }
        _ => Just(BTreeMap::new()).boxed(),
    };
    (props, extra)
        .prop_map(|(props, extra)| {
            let mut m: Map<String, Value> = extra.into_iter().collect();
            m.extend(props.into_iter().flatten());
            Value::Object(m)
        })
        .boxed()
}

/// Every node of a JSON value, as JSON Pointers, in document order.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    out.push(at.clone());
    match v {
        Value::Object(m) => {
            m.iter().for_each(|(k, c)| pointers(c, format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")), out))
        }
        Value::Array(a) => a.iter().enumerate().for_each(|(i, c)| pointers(c, format!("{at}/{i}"), out)),
        _ => {}
    }
}

/// A valid value with one thing wrong: a node replaced by something of another shape, removed, wrapped,
/// made huge or deep, or an unknown property added.
fn mutated(valid: BoxedStrategy<Value>) -> BoxedStrategy<Value> {
    (valid, any::<usize>(), 0u8..6, any_json())
        .prop_map(|(mut v, pick, how, junk)| {
            let mut all = Vec::new();
            pointers(&v, String::new(), &mut all);
            let at = &all[pick % all.len()];
            let node = v.pointer_mut(at).expect("a pointer just listed");
            match how {
                0 => *node = junk,
                1 => *node = Value::Array(vec![node.take()]),
                2 => *node = Value::String("y".repeat(200_000)),
                3 => *node = deep(200),
                4 => match node {
                    Value::Object(m) => {
                        m.insert("unknown_field".into(), junk);
                    }
                    _ => *node = json!({"unknown_field": junk}),
                },
                _ => {
                    // Remove it from its parent (the root becomes null).
                    match at.rsplit_once('/') {
                        Some((parent, key)) => match v.pointer_mut(parent) {
                            Some(Value::Object(m)) => {
                                m.remove(&key.replace("~1", "/").replace("~0", "~"));
                            }
                            Some(Value::Array(a)) => {
                                a.remove(key.parse::<usize>().unwrap());
                            }
                            _ => {}
                        },
                        None => v = Value::Null,
                    }
                }
            }
            v
        })
        .boxed()
}

fn deep(n: usize) -> Value {
    (0..n).fold(json!(1), |v, i| if i % 2 == 0 { json!([v]) } else { json!({ "a": v }) })
}

fn json_content_type() -> BoxedStrategy<Vec<u8>> {
    select(vec!["application/json", "application/json; charset=utf-8", "Application/JSON"])
        .prop_map(|s| s.as_bytes().to_vec())
        .boxed()
}

/// Content types that are wrong for anything the API takes (or garbled bytes).
fn wrong_content_type() -> BoxedStrategy<Option<Vec<u8>>> {
    prop_oneof![
        Just(None),
        select(vec![
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/xml",
            "application/json-patch+json",
            "application/jsonx",
            "",
            ";",
            "*/*",
        ])
        .prop_map(|s| Some(s.as_bytes().to_vec())),
        header_bytes().prop_map(Some),
    ]
    .boxed()
}

/// Bytes a header value may carry on the wire (visible ASCII, space, tab, obs-text).
fn header_bytes() -> BoxedStrategy<Vec<u8>> {
    proptest::collection::vec(prop_oneof![8 => 0x20u8..0x7f, 1 => Just(b'\t'), 2 => 0x80u8..=0xff], 0..40).boxed()
}

fn csv_body(world: &World) -> BoxedStrategy<Vec<u8>> {
    let phones = world.phones.clone();
    let row = (
        prop_oneof![3 => select(phones), 1 => select(vec![String::new(), "080-1234-5678".into(), "+1".into()])],
        nasty_string(),
        nasty_string(),
    )
        .prop_map(|(p, x, n)| {
            let q = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
            format!("{},{},{},{}\n", q(&p), q(&x), q(&n), q(&n))
        });
    prop_oneof![
        4 => proptest::collection::vec(row, 0..5)
            .prop_map(|rows| format!("phone,external_id,name,parcel\n{}", rows.concat()).into_bytes()),
        1 => Just(b"phone,external_id,name\n+818012345678,P-1001,Taro\n".to_vec()),
        1 => Just(b"phone,phone,phone\n\"unterminated\n".to_vec()),
        1 => Just(b"\xff\xfe\x00p\x00h\x00o\x00n\x00e".to_vec()),
        1 => nasty_string().prop_map(String::into_bytes),
    ]
    .boxed()
}

/// `(Content-Type, body)`.
type Payload = (Option<Vec<u8>>, Option<Vec<u8>>);
/// A header's name and raw value.
type RawHeader = (String, Vec<u8>);

/// Bodies for an operation: valid per its request schema (or a seed), one thing wrong, the wrong shape,
/// deep, huge, empty, not JSON, or under the wrong content type.
fn body_strategy(doc: &Value, op: &Operation, world: &World) -> BoxedStrategy<Payload> {
    let junk_bytes = proptest::collection::vec(any::<u8>(), 0..200);
    let Some(content) = op.op["requestBody"]["content"].as_object() else {
        // No body is declared: whatever is sent must be ignored or refused, never crash anything.
        return prop_oneof![
            8 => Just((None, None)),
            1 => (wrong_content_type(), junk_bytes).prop_map(|(ct, b)| (ct, Some(b))),
            1 => (json_content_type(), any_json()).prop_map(|(ct, v)| (Some(ct), Some(v.to_string().into_bytes()))),
        ]
        .boxed();
    };
    let mut options: Vec<(u32, BoxedStrategy<Payload>)> = Vec::new();
    for (media, m) in content {
        if media.contains("json") {
            let schema = m.get("schema").cloned().unwrap_or(json!({}));
            let name = schema.get("$ref").and_then(Value::as_str).map(|r| r.rsplit('/').next().unwrap().to_string());
            let seeds = name.and_then(|n| world.seeds.get(&n).cloned()).unwrap_or_default();
            let generated = from_schema(doc, &schema, 0);
            let valid =
                if seeds.is_empty() { generated } else { prop_oneof![1 => generated, 1 => select(seeds)].boxed() };
            let as_json = |s: BoxedStrategy<Value>| {
                (json_content_type(), s).prop_map(|(ct, v)| (Some(ct), Some(serde_json::to_vec(&v).unwrap()))).boxed()
            };
            options.extend([
                (6, as_json(valid.clone())),
                (5, as_json(mutated(valid.clone()))),
                (2, as_json(any_json())),
                (
                    1,
                    // Written as text: a `Value` this deep would overflow this side's stack first.
                    (json_content_type(), Just(format!("{}1{}", "[{\"a\":".repeat(5_000), "}]".repeat(5_000))))
                        .prop_map(|(ct, b)| (Some(ct), Some(b.into_bytes())))
                        .boxed(),
                ),
                (1, (json_content_type(), junk_bytes.clone()).prop_map(|(ct, b)| (Some(ct), Some(b))).boxed()),
                (1, (json_content_type(), Just(Vec::new())).prop_map(|(ct, b)| (Some(ct), Some(b))).boxed()),
                (1, json_content_type().prop_map(|ct| (Some(ct), None)).boxed()),
                (
                    1,
                    (json_content_type(), Just(format!("{{\"x\":\"{}\"}}", "z".repeat(HUGE)).into_bytes()))
                        .prop_map(|(ct, b)| (Some(ct), Some(b)))
                        .boxed(),
                ),
                (
                    2,
                    (wrong_content_type(), valid)
                        .prop_map(|(ct, v)| (ct, Some(serde_json::to_vec(&v).unwrap())))
                        .boxed(),
                ),
            ]);
        } else {
            let media = media.clone();
            options.push((4, csv_body(world).prop_map(move |b| (Some(media.clone().into_bytes()), Some(b))).boxed()));
        }
    }
    Union::new_weighted(options).boxed()
}

/// A path segment for a declared path parameter: ids that exist, other numbers, and junk.
fn path_segment(doc: &Value, param: &Value, world: &World) -> BoxedStrategy<String> {
    let junk = prop_oneof![
        nasty_string().prop_map(|s| encode(&s)),
        select(vec!["%00", "%FF", "%ZZ", "%", "%2F", "%E3%81", "a%20b", "%C0%AF", "%2B", "", "-", "~"])
            .prop_map(str::to_string),
    ]
    // `.` and `..` are dot segments: the client resolves them and the request goes elsewhere.
    .prop_filter("not a dot segment", |s| !matches!(s.to_ascii_lowercase().as_str(), "%2e" | "%2e%2e"));
    let schema = resolve(doc, &param["schema"]);
    match schema["type"].as_str() {
        Some("integer") => prop_oneof![
            6 => select(world.ids.clone()).prop_map(|i| i.to_string()),
            2 => any::<i64>().prop_map(|i| i.to_string()),
            1 => (-3i64..3).prop_map(|i| i.to_string()),
            1 => select(vec!["9223372036854775808", "-9223372036854775809", "99999999999999999999999", "1.5",
                "0x10", "1e3", "%2B1", "%201", "01", "-0"]).prop_map(str::to_string),
            2 => junk,
        ]
        .boxed(),
        _ if param["name"] == "phone" => prop_oneof![
            4 => select(world.phones.clone()),
            2 => select(world.phones.clone()).prop_map(|p| p.replace('+', "%2B")),
            2 => (0u64..100_000_000).prop_map(|n| format!("+8190{n:08}")),
            1 => select(vec!["0312345678", "+81", "+1", "+999999999999999999999", "%2B%2B81", "81-90-1234-5678"])
                .prop_map(str::to_string),
            3 => junk,
        ]
        .boxed(),
        _ => prop_oneof![2 => from_schema(doc, schema, 0).prop_map(|v| encode(&text(&v))), 1 => junk].boxed(),
    }
}

/// A value as it would appear in a query string or header.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

/// The query string: each declared parameter absent, of its type, or of the wrong one; sometimes an unknown
/// or repeated parameter or raw junk.
fn query_strategy(doc: &Value, op: &Operation) -> BoxedStrategy<String> {
    let params: Vec<BoxedStrategy<Option<String>>> = op
        .params("query")
        .into_iter()
        .map(|p| {
            let name = p["name"].as_str().unwrap().to_string();
            let value = prop_oneof![
                3 => from_schema(doc, &p["schema"], 0).prop_map(|v| text(&v)),
                1 => nasty_string(),
                1 => select(vec!["-1", "0", "1001", "1.5", "true", "yes", "", "9223372036854775808", "null"])
                    .prop_map(str::to_string),
            ];
            proptest::option::weighted(0.6, value.prop_map(move |v| format!("{name}={}", encode(&v)))).boxed()
        })
        .collect();
    let extra = prop_oneof![
        6 => Just(Vec::<String>::new()),
        1 => Just(vec!["unknown_param=1".to_string()]),
        1 => select(vec!["%FF=%FF", "&&&", "=", "a=%", "limit=1&limit=2", "cursor", "format=csv&format=ndjson"])
            .prop_map(|s| vec![s.to_string()]),
    ];
    (params, extra)
        .prop_map(|(params, extra)| params.into_iter().flatten().chain(extra).collect::<Vec<_>>().join("&"))
        .boxed()
}

/// `Authorization` and what it must lead to.
fn auth_strategy(world: &World) -> BoxedStrategy<(Option<Vec<u8>>, Expect)> {
    let admin = world.admin.clone();
    let bearer = |k: &str| Some(format!("Bearer {k}").into_bytes());
    prop_oneof![
        16 => select(vec![bearer(&admin), Some(format!("bearer   {admin} ").into_bytes())])
            .prop_map(|h| (h, Expect::Allowed)),
        1 => Just((None, Expect::Unauthorized)),
        1 => select(vec![
            Some(b"Bearer".to_vec()),
            Some(b"Bearer ".to_vec()),
            Some(b"Basic Zm9vOmJhcg==".to_vec()),
            Some(admin.clone().into_bytes()),
            Some(format!("Token {admin}").into_bytes()),
            bearer(&format!("{admin}x")),
            bearer("dk_not-a-key-anyone-was-given"),
            bearer(&world.revoked),
        ])
        .prop_map(|h| (h, Expect::Unauthorized)),
        1 => header_bytes().prop_map(|mut b| {
            // Garbled, but never accidentally a live key.
            b.insert(0, b'?');
            (Some(b), Expect::Unauthorized)
        }),
        1 => Just((bearer(&world.unscoped), Expect::Forbidden)),
    ]
    .boxed()
}

/// Declared header parameters (`Idempotency-Key`) and a stray `Accept`.
fn headers_strategy(doc: &Value, op: &Operation) -> BoxedStrategy<Vec<(String, Vec<u8>)>> {
    let mut parts: Vec<BoxedStrategy<Option<RawHeader>>> = op
        .params("header")
        .into_iter()
        .map(|p| {
            let name = p["name"].as_str().unwrap().to_string();
            let value = prop_oneof![
                3 => "[A-Za-z0-9-]{1,40}".prop_map(String::into_bytes),
                1 => from_schema(doc, &p["schema"], 0).prop_map(|v| text(&v).into_bytes())
                    .prop_filter("a header value", |b| HeaderValue::from_bytes(b).is_ok()),
                1 => header_bytes(),
                1 => Just("k".repeat(300).into_bytes()),
                1 => Just(b"two words".to_vec()),
            ];
            proptest::option::weighted(0.5, value.prop_map(move |v| (name.clone(), v))).boxed()
        })
        .collect();
    parts.push(
        proptest::option::weighted(
            0.1,
            select(vec!["text/csv", "application/xml", "*/*", "garbage"])
                .prop_map(|a| ("Accept".to_string(), a.as_bytes().to_vec())),
        )
        .boxed(),
    );
    parts.prop_map(|v| v.into_iter().flatten().collect()).boxed()
}

fn case_strategy(doc: &Value, op: &Operation, world: &World) -> BoxedStrategy<Case> {
    let path: Vec<BoxedStrategy<(String, String)>> = op
        .params("path")
        .into_iter()
        .map(|p| {
            let name = p["name"].as_str().unwrap().to_string();
            path_segment(doc, p, world).prop_map(move |s| (name.clone(), s)).boxed()
        })
        .collect();
    (path, query_strategy(doc, op), auth_strategy(world), headers_strategy(doc, op), body_strategy(doc, op, world))
        .prop_map(|(path, query, (authorization, expect), mut headers, (ct, body))| {
            if let Some(ct) = ct {
                headers.push(("Content-Type".into(), ct));
            }
            Case { path, query, authorization, expect, headers, body }
        })
        .boxed()
}

// ---------------------------------------------------------------------------------------------------------
// What comes back.

struct Checker<'a> {
    api: &'a Api,
    /// A connection per request: a server that answers before reading a body closes that connection, and
    /// a pooled client can race it with the next request (hyper's IncompleteMessage) — not the API's doing.
    http: reqwest::Client,
    doc: &'a Value,
    validators: Validators,
    /// Per operation: status → count.
    tally: Mutex<BTreeMap<String, BTreeMap<u16, u32>>>,
}

impl Checker<'_> {
    async fn exercise(&self, op: &Operation, case: &Case) -> Result<(), String> {
        let url = format!("{}{}", self.api.base, case.url(op));
        let mut req = self.http.request(op.method.clone(), &url);
        if let Some(a) = &case.authorization {
            req = req.header(reqwest::header::AUTHORIZATION, HeaderValue::from_bytes(a).expect("header bytes"));
        }
        for (k, v) in &case.headers {
            req = req.header(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_bytes(v).unwrap());
        }
        if let Some(b) = &case.body {
            req = req.body(b.clone());
        }
        let res = req.send().await.map_err(|e| format!("{} {url}: no response: {e:?}", op.method))?;
        let status = res.status().as_u16();
        *self.tally.lock().unwrap().entry(op.name()).or_default().entry(status).or_default() += 1;
        let headers = res.headers().clone();
        let body = res.bytes().await.map_err(|e| format!("reading the body: {e}"))?;
        let fail = |why: String| {
            Err(format!(
                "{} {url} → {status} {:?}: {why}\nbody: {}",
                op.method,
                headers.get("content-type"),
                String::from_utf8_lossy(&body[..body.len().min(2000)])
            ))
        };

        if status >= 500 {
            return fail("a server error".into());
        }
        match case.expect {
            Expect::Unauthorized if status != 401 && !(status == 404 && case.may_miss_route()) => {
                return fail("a request without a live key must be 401".into())
            }
            Expect::Forbidden if status != 403 && !(status == 404 && case.may_miss_route()) => {
                return fail("a key without the route's scope must be 403".into())
            }
            Expect::Allowed if status == 401 || status == 403 => return fail("a live admin key was refused".into()),
            _ => {}
        }

        let responses = &op.op["responses"];
        let range = format!("{}XX", status / 100);
        let Some(declared) = [status.to_string(), range.clone(), range.to_lowercase(), "default".into()]
            .iter()
            .find_map(|k| responses.get(k))
        else {
            return fail(format!(
                "status not declared (declared: {:?})",
                responses.as_object().map(|m| m.keys().collect::<Vec<_>>())
            ));
        };
        let declared = resolve(self.doc, declared);
        for (name, h) in declared["headers"].as_object().into_iter().flatten() {
            if h["required"] == true && !headers.contains_key(name.as_str()) {
                return fail(format!("required header {name} missing"));
            }
        }
        let Some(content) = declared["content"].as_object().filter(|c| !c.is_empty()) else {
            if !body.is_empty() {
                return fail("a body where the document declares none".into());
            }
            return Ok(());
        };
        let Some(ctype) = headers.get("content-type").and_then(|v| v.to_str().ok()) else {
            return fail("no Content-Type".into());
        };
        let media = ctype.split(';').next().unwrap().trim().to_ascii_lowercase();
        let Some((_, m)) = content.iter().find(|(k, _)| k.eq_ignore_ascii_case(&media)) else {
            return fail(format!("content type not declared (declared: {:?})", content.keys().collect::<Vec<_>>()));
        };
        if status >= 400 && media != "application/problem+json" {
            return fail("an error that is not a problem".into());
        }
        // Streamed CSV / NDJSON: the content type is the contract.
        if !(media == "application/json" || media.ends_with("+json")) {
            return Ok(());
        }
        let value: Value = match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => return fail(format!("not JSON: {e}")),
        };
        if let Some(schema) = m.get("schema") {
            if let Err(e) = self.validators.validate(schema, &value) {
                return fail(format!("does not validate against {schema}: {e}"));
            }
        }
        if media == "application/problem+json" && value["status"] != status {
            return fail("the problem's status is not the response's".into());
        }
        Ok(())
    }
}

async fn document(api: &Api) -> Value {
    let r = api.http.get(format!("{}/api/v1/openapi.json", api.base)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// The runner's configuration (`PROPTEST_*` respected) and the seed, random unless `PROPTEST_RNG_SEED` fixes it.
fn config() -> (Config, u64) {
    let mut config = Config { failure_persistence: None, ..Config::default() };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = DEFAULT_CASES;
    }
    let seed = match config.rng_seed {
        RngSeed::Fixed(s) => s,
        RngSeed::Random => {
            use std::hash::{BuildHasher, Hasher};
            std::collections::hash_map::RandomState::new().build_hasher().finish()
        }
    };
    (config, seed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_answers_as_its_document_declares_under_fuzz() {
    // No rate limit in the way: the fuzz is about what the handlers answer.
    let api = Api::start_with_rate(1_000_000, 1_000_000).await;
    let world = World::seed(&api).await;
    let doc = document(&api).await;
    let ops = operations(&doc);
    assert!(ops.len() >= 10, "the document lists the API's operations: {}", ops.len());
    let checker = Checker {
        api: &api,
        http: reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap(),
        doc: &doc,
        validators: Validators { components: doc["components"].clone(), built: Mutex::default() },
        tally: Mutex::default(),
    };
    let (config, seed) = config();
    println!("fuzz seed: PROPTEST_RNG_SEED={seed}");
    let handle = tokio::runtime::Handle::current();
    for (i, op) in ops.iter().enumerate() {
        // One seed per operation, so an operation's cases do not depend on how many the others drew.
        let config = Config { rng_seed: RngSeed::Fixed(seed.wrapping_add(i as u64)), ..config.clone() };
        let mut runner = TestRunner::new(config);
        let result = runner.run(&case_strategy(&doc, op, &world), |case| {
            tokio::task::block_in_place(|| handle.block_on(checker.exercise(op, &case))).map_err(TestCaseError::fail)
        });
        if let Err(e) = result {
            panic!("{}: {e}\n(reproduce with PROPTEST_RNG_SEED={seed})", op.name());
        }
    }

    let tally = checker.tally.into_inner().unwrap();
    for (op, statuses) in &tally {
        println!("{op}: {statuses:?}");
    }
    for op in &ops {
        let reached: u32 = tally
            .get(&op.name())
            .map(|s| s.iter().filter(|(st, _)| !matches!(st, 401 | 403)).map(|(_, n)| n).sum())
            .unwrap_or(0);
        assert!(reached > 0, "{} was never exercised past authentication", op.name());
    }
    let ok: u32 =
        tally.values().flat_map(|s| s.iter()).filter(|(st, _)| (200..300).contains(*st)).map(|(_, n)| n).sum();
    assert!(ok > 0, "no request succeeded at all: the fuzz only tested refusals");
}

/// Every operation, with every kind of bad key and a well-formed request otherwise: a 401 (or 403 without
/// the scope) problem that validates against the document, before anything else is looked at.
#[tokio::test]
async fn every_operation_refuses_bad_keys_with_documented_problems() {
    let api = Api::start().await;
    let world = World::seed(&api).await;
    let doc = document(&api).await;
    let checker = Checker {
        api: &api,
        http: reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap(),
        doc: &doc,
        validators: Validators { components: doc["components"].clone(), built: Mutex::default() },
        tally: Mutex::default(),
    };
    let mut refusals = 0;
    for op in operations(&doc) {
        let path: Vec<_> = op
            .params("path")
            .into_iter()
            .map(|p| {
                let name = p["name"].as_str().unwrap().to_string();
                let v = if name == "phone" { world.phones[1].clone() } else { world.ids[0].to_string() };
                (name, v)
            })
            .collect();
        let bodies = op.op["requestBody"]["content"]["application/json"].is_object().then(|| b"{}".to_vec());
        let bad: [(Option<String>, Expect); 6] = [
            (None, Expect::Unauthorized),
            (Some("Basic Zm9vOmJhcg==".into()), Expect::Unauthorized),
            (Some("Bearer".into()), Expect::Unauthorized),
            (Some("Bearer dk_not-a-key-anyone-was-given".into()), Expect::Unauthorized),
            (Some(format!("Bearer {}", world.revoked)), Expect::Unauthorized),
            (Some(format!("Bearer {}", world.unscoped)), Expect::Forbidden),
        ];
        for (authorization, expect) in bad {
            let case = Case {
                path: path.clone(),
                query: String::new(),
                authorization: authorization.map(String::into_bytes),
                expect,
                headers: bodies.iter().map(|_| ("Content-Type".to_string(), b"application/json".to_vec())).collect(),
                body: bodies.clone(),
            };
            if let Err(e) = checker.exercise(&op, &case).await {
                panic!("{}: {e}", op.name());
            }
            refusals += 1;
        }
    }
    let tally = checker.tally.into_inner().unwrap();
    assert!(tally.values().flat_map(|s| s.keys()).all(|s| matches!(s, 401 | 403)), "{tally:?}");
    assert_eq!(tally.values().flat_map(|s| s.values()).sum::<u32>(), refusals);
}

/// What the fuzz found, pinned: PostgreSQL cannot store U+0000, so a NUL anywhere in a body is the
/// client's mistake (422 naming where), never the store's 500.
#[tokio::test]
async fn nul_characters_are_refused_as_the_fields_they_are_in() {
    let api = Api::start().await;
    let key = api.admin().await;
    let id = api.delivery_campaign(&key).await;
    let mut file = delivery_campaign_json();
    file["name"] = json!("a\u{0}b");
    let mut nul_contact = contact(1);
    nul_contact["external_id"] = json!("P-\u{0}");
    let cases = [
        (Method::PUT, "/api/v1/dnc/+819012345678".to_string(), json!({"reason": "\u{0}"}), "/reason"),
        (Method::POST, "/api/v1/campaigns".to_string(), file, "/name"),
        (
            Method::POST,
            format!("/api/v1/campaigns/{id}/contacts"),
            json!({"contacts": [contact(0), nul_contact]}),
            "/contacts/1/external_id",
        ),
    ];
    for (method, path, body, pointer) in cases {
        let r = api.req(method, &path, &key).json(&body).send().await.unwrap();
        let p = crate::helpers::problem(r, 422).await;
        assert_eq!(p["errors"][0]["pointer"], pointer, "{p}");
    }
    let csv = "phone,external_id,name,parcel\n+819012340000,P-1,a,b\n+819012340001,P-\0,a,b\n";
    let r = api
        .req(Method::POST, &format!("/api/v1/campaigns/{id}/contacts"), &key)
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap();
    let p = crate::helpers::problem(r, 422).await;
    assert_eq!(p["errors"][0]["row"], 3, "{p}");
    assert_eq!(crate::helpers::table_counts(&api.store).await[1], 0, "no contact was pushed");
}
