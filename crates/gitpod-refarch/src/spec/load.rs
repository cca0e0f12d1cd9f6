//! Reading a spec document safely: a size cap, a byte order mark, a linear nesting
//! check before the parser sees the text, duplicate keys refused at any depth, and the
//! merge over the cloud's defaults that keeps a tagged choice whole.
//!
//! Everything here is linear in the input's size and bounded in memory: a document over
//! [`MAX_SPEC_BYTES`] is refused after reading one byte more than the limit, and one
//! nested deeper than [`MAX_NESTING`] is refused by a single scan before parsing (the
//! YAML parser's own recursion limit fires only after quadratic work).

use std::cell::RefCell;
use std::fmt;
use std::io::Read;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::problem::{Problem, ValidationErrors};

/// The largest spec document read, in bytes (1 MiB). A real spec is a few KiB.
pub const MAX_SPEC_BYTES: usize = 1 << 20;

/// The most values (scalars, mappings, sequences) a document may hold once YAML
/// aliases are expanded. A spec has a few hundred; aliases can expand exponentially.
pub const MAX_VALUES: usize = 10_000;

/// The deepest nesting of mappings and sequences accepted. The spec itself is at most
/// six levels deep (`nodePools.services.taints[0].key`).
pub const MAX_NESTING: usize = 32;

/// Unclosed brackets anywhere in the text, quoted or not (a looser bound than
/// [`MAX_NESTING`], which the scan applies to the brackets it takes for structure).
const MAX_RAW_BRACKETS: usize = 256;

/// The document format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    Yaml,
    Json,
}

fn problem(path: impl Into<String>, message: impl Into<String>) -> ValidationErrors {
    ValidationErrors::one(Problem::new(path, message))
}

/// Read at most [`MAX_SPEC_BYTES`] + 1 bytes of `reader`: more is refused unread.
pub(super) fn read_limited(reader: impl Read, name: &str) -> Result<String, ValidationErrors> {
    let mut bytes = Vec::new();
    reader
        .take(MAX_SPEC_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| problem("", format!("cannot read {name}: {e}")))?;
    if bytes.len() > MAX_SPEC_BYTES {
        return Err(too_large());
    }
    String::from_utf8(bytes).map_err(|e| {
        problem(
            "",
            format!(
                "{name} is not UTF-8 text (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            ),
        )
    })
}

fn too_large() -> ValidationErrors {
    problem(
        "",
        format!("the spec is larger than {MAX_SPEC_BYTES} bytes (1 MiB); a spec is a few KiB"),
    )
}

/// Parse `text` into a JSON value: size, BOM, nesting and duplicate keys checked.
pub(super) fn parse(text: &str, format: Format) -> Result<Value, ValidationErrors> {
    if text.len() > MAX_SPEC_BYTES {
        return Err(too_large());
    }
    // Editors on Windows start UTF-8 files with a byte order mark.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if let Some(line) = nesting_too_deep(text, format) {
        return Err(problem(
            "",
            format!("nested deeper than {MAX_NESTING} levels (line {line}); a spec is at most 6"),
        ));
    }
    let found = RefCell::new(None);
    let values = std::cell::Cell::new(0usize);
    let seed = ValueSeed {
        path: String::new(),
        depth: 0,
        found: &found,
        values: &values,
    };
    let result = match format {
        Format::Yaml => seed
            .deserialize(serde_yaml_ng::Deserializer::from_str(text))
            .map_err(|e| {
                let location = e.location();
                let e = e.to_string();
                if !e.contains("line ") {
                    // Some parser errors do not say where; the location is still known.
                    if let Some(l) = location {
                        return format!(
                            "not valid YAML: {e} at line {} column {}",
                            l.line(),
                            l.column()
                        );
                    }
                }
                if e.contains("more than one document") {
                    "not valid YAML: more than one document (a `---` line, or text after the \
                     spec's mapping); a spec is one YAML mapping"
                        .to_string()
                } else {
                    format!("not valid YAML: {e}")
                }
            }),
        Format::Json => {
            let mut de = serde_json::Deserializer::from_str(text);
            seed.deserialize(&mut de)
                .and_then(|v| de.end().map(|()| v))
                .map_err(|e| format!("not valid JSON: {e}"))
        }
    };
    match (result, found.into_inner()) {
        (Ok(v), None) => Ok(v),
        // A problem recorded with its path beats the parser's generic message.
        (_, Some(p)) => Err(ValidationErrors::one(p)),
        (Err(e), None) => Err(problem("", e)),
    }
}

/// The line where flow nesting (`[`/`{`) first exceeds [`MAX_NESTING`], if it does.
///
/// One pass; brackets inside quoted scalars and YAML comments do not count. The scan is
/// conservative only in the safe direction: text it mistakes for a bracket can only make
/// it refuse a document nested more than 32 levels, which no spec is.
fn nesting_too_deep(text: &str, format: Format) -> Option<usize> {
    #[derive(PartialEq)]
    enum State {
        Plain,
        Double,
        Single,
        Comment,
    }
    let yaml = format == Format::Yaml;
    let b = text.as_bytes(); // every byte that matters here is ASCII
    let mut state = State::Plain;
    let mut flow = 0usize;
    let mut raw = 0usize;
    let mut line = 1usize;
    let mut prev = b'\n';
    let mut escaped = false;
    // YAML block nesting: the indentation of each open level (`- ` counts as indentation).
    let mut levels: Vec<usize> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if yaml && prev == b'\n' && flow == 0 && state == State::Plain {
            let mut indent = 0;
            while i < b.len() && (b[i] == b' ' || (b[i] == b'-' && b.get(i + 1) == Some(&b' '))) {
                if b[i] == b'-' {
                    // `- ` opens a sequence level of its own.
                    while levels.last().is_some_and(|&l| l >= indent) {
                        levels.pop();
                    }
                    levels.push(indent);
                    if levels.len() > MAX_NESTING {
                        return Some(line);
                    }
                    indent += 1;
                }
                indent += 1;
                i += 1;
            }
            if i < b.len() && !matches!(b[i], b'\n' | b'\r' | b'#') {
                while levels.last().is_some_and(|&l| l >= indent) {
                    levels.pop();
                }
                levels.push(indent);
                if levels.len() > MAX_NESTING {
                    return Some(line);
                }
            }
            prev = b' ';
            if i >= b.len() {
                break;
            }
        }
        let c = b[i];
        // Every bracket, quoted or not: text the scan takes for a quoted scalar that
        // the parser does not can hide no more than this from it.
        match c {
            b'[' | b'{' => {
                raw += 1;
                if raw > MAX_RAW_BRACKETS {
                    return Some(line);
                }
            }
            b']' | b'}' => raw = raw.saturating_sub(1),
            _ => {}
        }
        match state {
            State::Comment => {
                if c == b'\n' {
                    state = State::Plain;
                }
            }
            State::Double => {
                if escaped {
                    escaped = false;
                } else if c == b'\\' {
                    escaped = true;
                } else if c == b'"' {
                    state = State::Plain;
                }
            }
            State::Single => {
                if c == b'\'' {
                    state = State::Plain;
                }
            }
            State::Plain => {
                let starts_scalar = prev.is_ascii_whitespace() || b"[{,".contains(&prev);
                match c {
                    b'"' if starts_scalar || !yaml => state = State::Double,
                    b'\'' if yaml && starts_scalar => state = State::Single,
                    b'#' if yaml && prev.is_ascii_whitespace() => state = State::Comment,
                    b'[' | b'{' => {
                        flow += 1;
                        if flow + levels.len() > MAX_NESTING {
                            return Some(line);
                        }
                    }
                    b']' | b'}' => flow = flow.saturating_sub(1),
                    _ => {}
                }
            }
        }
        if c == b'\n' {
            line += 1;
        }
        prev = c;
        i += 1;
    }
    None
}

/// Deserializes any document into a [`Value`], refusing duplicate keys and deep
/// nesting with the path where they occur (recorded in `found`).
struct ValueSeed<'a> {
    path: String,
    depth: usize,
    found: &'a RefCell<Option<Problem>>,
    values: &'a std::cell::Cell<usize>,
}

impl<'a> ValueSeed<'a> {
    fn child(&self, segment: fmt::Arguments<'_>) -> ValueSeed<'a> {
        ValueSeed {
            path: format!("{}{segment}", self.path),
            depth: self.depth + 1,
            found: self.found,
            values: self.values,
        }
    }

    fn fail<E: de::Error>(&self, path: &str, message: String) -> E {
        let mut found = self.found.borrow_mut();
        if found.is_none() {
            *found = Some(Problem::new(path, message.clone()));
        }
        E::custom(message)
    }
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        if self.depth > MAX_NESTING {
            let path = self.path.clone();
            return Err(self.fail(&path, format!("nested deeper than {MAX_NESTING} levels")));
        }
        self.values.set(self.values.get() + 1);
        if self.values.get() > MAX_VALUES {
            let path = self.path.clone();
            return Err(self.fail(
                &path,
                format!(
                    "more than {MAX_VALUES} values (YAML aliases expanding?); a spec has a few hundred"
                ),
            ));
        }
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a YAML or JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(self.child(format_args!("[{}]", out.len())))? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let dot = if self.path.is_empty() { "" } else { "." };
            let child = self.child(format_args!("{dot}{key}"));
            if out.contains_key(&key) {
                let path = child.path.clone();
                return Err(self.fail(
                    &path,
                    format!("duplicate key '{key}': it is given twice in the same mapping"),
                ));
            }
            let v = map.next_value_seed(child)?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

/// The spec's tagged choices: an object at this path names one variant, and a variant
/// other than the default's replaces the default's object whole (its fields do not
/// mix). `None`: externally tagged (`{ipv4: ...}`): the user's value always replaces.
/// `Some(tag)`: internally tagged by the field `tag`.
///
/// Every enum of the spec is listed here or is a plain string (`cloud`,
/// `registry.mode`), which replaces anyway; `tagged_choices_cover_the_spec` in the
/// tests checks that no other object field of the spec changes shape by variant.
pub(super) const TAGGED_CHOICES: &[(&str, Option<&str>)] = &[
    ("certificates", Some("issuer")),
    ("dns.recordsTarget", None),
    ("database", Some("provider")),
    ("dns", Some("provider")),
    ("storage", Some("provider")),
    ("registry", Some("provider")),
    // Secret sources (`{env: ...}` | `{file: ...}`) inside the self-managed variants.
    ("database.adminPassword", None),
    ("dns.tsigSecret", None),
    ("storage.accessKeyId", None),
    ("storage.secretAccessKey", None),
    ("registry.password", None),
];

/// Deep-merge `over` into `base`: objects merge key by key, anything else replaces, and
/// a tagged choice naming another variant replaces the default's whole.
pub(super) fn merge(base: &mut Value, over: Value) {
    merge_at(base, over, "");
}

fn merge_at(base: &mut Value, over: Value, path: &str) {
    if let Some((_, tag)) = TAGGED_CHOICES.iter().find(|(p, _)| *p == path) {
        let same_variant = match tag {
            None => false,
            Some(tag) => match over.get(tag) {
                None => true, // no tag: the default's variant, completed field by field
                Some(t) => base.get(tag) == Some(t),
            },
        };
        if !same_variant {
            *base = over;
            return;
        }
    }
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                let child = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match b.get_mut(&k) {
                    Some(existing) if existing.is_object() && v.is_object() => {
                        merge_at(existing, v, &child)
                    }
                    Some(existing)
                        if TAGGED_CHOICES.iter().any(|(p, _)| *p == child) && v.is_object() =>
                    {
                        merge_at(existing, v, &child)
                    }
                    _ => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{
        CertificateSettings, Cloud, DatabaseTlsMode, RecordsTarget, ReferenceArchitecture,
        SecretSource, SelfManagedDatabaseSettings, SelfManagedDnsSettings,
        SelfManagedRegistrySettings, SelfManagedStorageSettings,
    };
    use std::collections::BTreeMap;

    fn object_paths(v: &Value, path: &str, out: &mut BTreeMap<String, Vec<String>>) {
        if let Value::Object(m) = v {
            out.insert(path.to_string(), m.keys().cloned().collect());
            for (k, child) in m {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                object_paths(child, &p, out);
            }
        }
    }

    /// Every object of the spec whose set of fields changes with a variant is listed in
    /// TAGGED_CHOICES (so the merge keeps it whole).
    #[test]
    fn tagged_choices_cover_the_spec() {
        let mut variants = Vec::new();
        for cloud in [Cloud::Gcp, Cloud::Aws, Cloud::Azure] {
            for certs in [
                CertificateSettings::Acme {
                    email: "a@example.com".into(),
                    server: "https://x.example.com".into(),
                },
                CertificateSettings::bring_your_own("tls"),
                CertificateSettings::bring_your_own_files("tls", "a.pem", "b.pem"),
            ] {
                for target in [
                    None,
                    Some(RecordsTarget::Ipv4("203.0.113.1".into())),
                    Some(RecordsTarget::Hostname("lb.example.com".into())),
                ] {
                    let mut s = ReferenceArchitecture::defaults(cloud);
                    s.certificates = certs.clone();
                    s.dns.set_records_target(target.clone());
                    variants.push(serde_json::to_value(&s).unwrap());
                    // The self-managed parts, with each kind of secret source.
                    for source in [SecretSource::env("A_VAR"), SecretSource::file("a.key")] {
                        let mut s = s.clone();
                        s.database = SelfManagedDatabaseSettings::new("db", "root", source.clone())
                            .tls(DatabaseTlsMode::VerifyCa, Some("ca.pem".into()))
                            .into();
                        let mut dns = SelfManagedDnsSettings::new(
                            "example.com",
                            "192.0.2.53:53",
                            "k.",
                            source.clone(),
                        );
                        dns.records_target = target.clone();
                        s.dns = dns.into();
                        s.storage = SelfManagedStorageSettings::new(
                            "https://s3.example.com",
                            "gitpod",
                            source.clone(),
                            source.clone(),
                        )
                        .into();
                        s.registry =
                            SelfManagedRegistrySettings::new("r.example.com/g", "u", source).into();
                        variants.push(serde_json::to_value(&s).unwrap());
                    }
                }
            }
        }
        let maps: Vec<BTreeMap<String, Vec<String>>> = variants
            .iter()
            .map(|v| {
                let mut m = BTreeMap::new();
                object_paths(v, "", &mut m);
                m
            })
            .collect();
        let mut changing = std::collections::BTreeSet::new();
        for a in &maps {
            for b in &maps {
                for (path, keys) in a {
                    if let Some(other) = b.get(path) {
                        if other != keys && !path.is_empty() {
                            changing.insert(path.clone());
                        }
                    }
                }
            }
        }
        for path in &changing {
            let tagged = TAGGED_CHOICES.iter().any(|(p, _)| p == path);
            assert!(tagged, "'{path}' changes shape by variant");
        }
        assert!(changing.contains("certificates"), "{changing:?}");
        assert!(changing.contains("dns.recordsTarget"), "{changing:?}");
        for part in ["database", "dns", "storage", "registry"] {
            assert!(changing.contains(part), "{changing:?}");
        }
        assert!(changing.contains("database.adminPassword"), "{changing:?}");
    }

    fn yaml(text: &str) -> std::result::Result<ReferenceArchitecture, ValidationErrors> {
        ReferenceArchitecture::from_yaml(text)
    }

    #[test]
    fn a_different_variant_replaces_the_default_whole() {
        let s =
            yaml("cloud: gcp\ncertificates: {issuer: bringYourOwn, secretName: tls}\n").unwrap();
        assert_eq!(s.certificates, CertificateSettings::bring_your_own("tls"));
        // The same variant (or none named) merges field by field.
        let s = yaml("cloud: gcp\ncertificates: {email: ops@example.com}\n").unwrap();
        assert_eq!(
            s.certificates,
            CertificateSettings::Acme {
                email: "ops@example.com".into(),
                server: crate::spec::LETS_ENCRYPT_PRODUCTION.into()
            }
        );
        let s = yaml("cloud: gcp\ncertificates: {issuer: acme, email: ops@example.com}\n").unwrap();
        assert!(
            matches!(s.certificates, CertificateSettings::Acme { ref server, .. } if server == crate::spec::LETS_ENCRYPT_PRODUCTION)
        );
        let s = yaml("cloud: aws\ndns: {recordsTarget: {hostname: lb.example.com}}\n").unwrap();
        assert_eq!(
            s.dns.records_target(),
            Some(&RecordsTarget::Hostname("lb.example.com".into()))
        );
        // Fields of another variant are still refused.
        let e = yaml(
            "cloud: gcp\ncertificates: {issuer: bringYourOwn, secretName: t, email: a@b.cd}\n",
        )
        .unwrap_err();
        assert!(e.problems()[0].message.contains("email"), "{e}");
    }

    #[test]
    fn duplicate_keys_are_refused_with_their_path() {
        let e = yaml("cloud: gcp\ndomain: a.example.com\ndomain: b.example.com\n").unwrap_err();
        assert!(e.has_path("domain"), "{e}");
        let e = yaml("cloud: gcp\nnodePools:\n  services:\n    maxNodes: 3\n    maxNodes: 4\n")
            .unwrap_err();
        assert!(e.has_path("nodePools.services.maxNodes"), "{e}");
        let e = ReferenceArchitecture::from_json(
            r#"{"cloud":"aws","database":{"backups":{"enabled":true,"enabled":false}}}"#,
        )
        .unwrap_err();
        assert!(e.has_path("database.backups.enabled"), "{e}");
        assert!(e.to_string().contains("duplicate key"), "{e}");
    }

    #[test]
    fn a_byte_order_mark_is_accepted() {
        let s = yaml("\u{feff}cloud: aws\nname: gp\n").unwrap();
        assert_eq!(s.name, "gp");
        let s = ReferenceArchitecture::from_json("\u{feff}{\"cloud\":\"aws\"}").unwrap();
        assert_eq!(s.cloud, Cloud::Aws);
    }

    #[test]
    fn size_and_nesting_are_bounded() {
        let big = format!("cloud: aws\nname: gp\n#{}\n", "x".repeat(MAX_SPEC_BYTES));
        let e = yaml(&big).unwrap_err();
        assert!(e.to_string().contains("larger than"), "{e}");
        // A reader longer than the limit is refused after limit + 1 bytes.
        let e =
            ReferenceArchitecture::from_reader(std::io::repeat(b' '), "zeros", false).unwrap_err();
        assert!(e.to_string().contains("larger than"), "{e}");
        for deep in [
            format!(
                "cloud: aws\nlabels: {}{}\n",
                "[".repeat(40_000),
                "]".repeat(40_000)
            ),
            format!(
                "{}\"cloud\": \"aws\"{}",
                "{\"a\":".repeat(40_000),
                "}".repeat(40_000)
            ),
            format!("cloud: aws\nlabels:\n{}x\n", "- ".repeat(40_000)),
            (0..200)
                .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
                .collect::<String>(),
        ] {
            let e = yaml(&deep).unwrap_err();
            assert!(e.to_string().contains("nested deeper"), "{e}");
        }
        // Brackets in quotes and comments do not count.
        let s = yaml(&format!(
            "cloud: aws\nname: gp # {}\nlabels: {{a: \"{}\"}}\n",
            "[".repeat(100),
            "{".repeat(100)
        ))
        .unwrap();
        assert_eq!(s.labels.get("a").map(String::len), Some(100));
    }
}
