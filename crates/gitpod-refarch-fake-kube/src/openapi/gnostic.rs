//! The OpenAPI v2 document as the protobuf kubectl asks `/openapi/v2` for
//! (`application/com.github.proto-openapi.spec.v2@v1.0+protobuf`): gnostic's
//! `openapi.v2.Document` (`openapiv2/OpenAPIv2.proto` in google/gnostic). Only the
//! messages and fields a Kubernetes client reads are declared (the document's
//! version, info and definitions; a schema's fields); the field numbers are
//! gnostic's, so a client decoding with gnostic's generated code reads them.

use prost::Message;
use serde_json::{Map, Value};

/// `openapi.v2.Document`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct Document {
    #[prost(string, tag = "1")]
    pub(crate) swagger: String,
    #[prost(message, optional, tag = "2")]
    pub(crate) info: Option<Info>,
    #[prost(message, optional, tag = "8")]
    pub(crate) paths: Option<Paths>,
    #[prost(message, optional, tag = "9")]
    pub(crate) definitions: Option<Definitions>,
}

/// `openapi.v2.Info`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct Info {
    #[prost(string, tag = "1")]
    pub(crate) title: String,
    #[prost(string, tag = "2")]
    pub(crate) version: String,
}

/// `openapi.v2.Paths`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct Paths {
    #[prost(message, repeated, tag = "1")]
    pub(crate) vendor_extension: Vec<NamedAny>,
    #[prost(message, repeated, tag = "2")]
    pub(crate) path: Vec<NamedPathItem>,
}

/// `openapi.v2.NamedPathItem`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct NamedPathItem {
    #[prost(string, tag = "1")]
    pub(crate) name: String,
    #[prost(message, optional, tag = "2")]
    pub(crate) value: Option<PathItem>,
}

/// `openapi.v2.PathItem` (no `$ref`, `options`, `head`).
#[derive(Clone, PartialEq, Message)]
pub(crate) struct PathItem {
    #[prost(message, optional, tag = "2")]
    pub(crate) get: Option<Operation>,
    #[prost(message, optional, tag = "3")]
    pub(crate) put: Option<Operation>,
    #[prost(message, optional, tag = "4")]
    pub(crate) post: Option<Operation>,
    #[prost(message, optional, tag = "5")]
    pub(crate) delete: Option<Operation>,
    #[prost(message, optional, tag = "8")]
    pub(crate) patch: Option<Operation>,
    #[prost(message, repeated, tag = "9")]
    pub(crate) parameters: Vec<ParametersItem>,
}

/// `openapi.v2.Operation` (no `responses`, `security`, `external_docs`).
#[derive(Clone, PartialEq, Message)]
pub(crate) struct Operation {
    #[prost(string, repeated, tag = "1")]
    pub(crate) tags: Vec<String>,
    #[prost(string, tag = "3")]
    pub(crate) description: String,
    #[prost(string, tag = "5")]
    pub(crate) operation_id: String,
    #[prost(string, repeated, tag = "6")]
    pub(crate) produces: Vec<String>,
    #[prost(string, repeated, tag = "7")]
    pub(crate) consumes: Vec<String>,
    #[prost(message, repeated, tag = "8")]
    pub(crate) parameters: Vec<ParametersItem>,
    #[prost(message, repeated, tag = "13")]
    pub(crate) vendor_extension: Vec<NamedAny>,
}

/// `openapi.v2.ParametersItem` (a oneof: only `parameter = 1` is used).
#[derive(Clone, PartialEq, Message)]
pub(crate) struct ParametersItem {
    #[prost(message, optional, tag = "1")]
    pub(crate) parameter: Option<Parameter>,
}

/// `openapi.v2.Parameter` (a oneof of `body_parameter = 1` and
/// `non_body_parameter = 2`).
#[derive(Clone, PartialEq, Message)]
pub(crate) struct Parameter {
    #[prost(message, optional, tag = "1")]
    pub(crate) body_parameter: Option<BodyParameter>,
    #[prost(message, optional, tag = "2")]
    pub(crate) non_body_parameter: Option<NonBodyParameter>,
}

/// `openapi.v2.BodyParameter`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct BodyParameter {
    #[prost(string, tag = "1")]
    pub(crate) description: String,
    #[prost(string, tag = "2")]
    pub(crate) name: String,
    #[prost(string, tag = "3")]
    pub(crate) r#in: String,
    #[prost(bool, tag = "4")]
    pub(crate) required: bool,
    #[prost(message, optional, tag = "5")]
    pub(crate) schema: Option<Schema>,
}

/// `openapi.v2.NonBodyParameter` (a oneof: query = 3, path = 4 are used).
#[derive(Clone, PartialEq, Message)]
pub(crate) struct NonBodyParameter {
    #[prost(message, optional, tag = "3")]
    pub(crate) query_parameter_sub_schema: Option<QueryParameterSubSchema>,
    #[prost(message, optional, tag = "4")]
    pub(crate) path_parameter_sub_schema: Option<PathParameterSubSchema>,
}

/// `openapi.v2.QueryParameterSubSchema` (the fields a Kubernetes document uses).
#[derive(Clone, PartialEq, Message)]
pub(crate) struct QueryParameterSubSchema {
    #[prost(bool, tag = "1")]
    pub(crate) required: bool,
    #[prost(string, tag = "2")]
    pub(crate) r#in: String,
    #[prost(string, tag = "3")]
    pub(crate) description: String,
    #[prost(string, tag = "4")]
    pub(crate) name: String,
    #[prost(string, tag = "6")]
    pub(crate) r#type: String,
    #[prost(bool, tag = "20")]
    pub(crate) unique_items: bool,
}

/// `openapi.v2.PathParameterSubSchema` (the fields a Kubernetes document uses).
#[derive(Clone, PartialEq, Message)]
pub(crate) struct PathParameterSubSchema {
    #[prost(bool, tag = "1")]
    pub(crate) required: bool,
    #[prost(string, tag = "2")]
    pub(crate) r#in: String,
    #[prost(string, tag = "3")]
    pub(crate) description: String,
    #[prost(string, tag = "4")]
    pub(crate) name: String,
    #[prost(string, tag = "5")]
    pub(crate) r#type: String,
    #[prost(bool, tag = "19")]
    pub(crate) unique_items: bool,
}

/// `openapi.v2.Definitions`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct Definitions {
    #[prost(message, repeated, tag = "1")]
    pub(crate) additional_properties: Vec<NamedSchema>,
}

/// `openapi.v2.NamedSchema`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct NamedSchema {
    #[prost(string, tag = "1")]
    pub(crate) name: String,
    #[prost(message, optional, tag = "2")]
    pub(crate) value: Option<Schema>,
}

/// `openapi.v2.Any`: only its `yaml` (field 2; field 1 is a `google.protobuf.Any`).
#[derive(Clone, PartialEq, Message)]
pub(crate) struct Any {
    #[prost(string, tag = "2")]
    pub(crate) yaml: String,
}

/// `openapi.v2.NamedAny`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct NamedAny {
    #[prost(string, tag = "1")]
    pub(crate) name: String,
    #[prost(message, optional, tag = "2")]
    pub(crate) value: Option<Any>,
}

/// `openapi.v2.AdditionalPropertiesItem` (a oneof of `schema = 1` and `boolean = 2`:
/// exactly one of the two is set).
#[derive(Clone, PartialEq, Message)]
pub(crate) struct AdditionalPropertiesItem {
    #[prost(message, optional, boxed, tag = "1")]
    pub(crate) schema: Option<Box<Schema>>,
    #[prost(bool, optional, tag = "2")]
    pub(crate) boolean: Option<bool>,
}

/// `openapi.v2.TypeItem`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct TypeItem {
    #[prost(string, repeated, tag = "1")]
    pub(crate) value: Vec<String>,
}

/// `openapi.v2.ItemsItem`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct ItemsItem {
    #[prost(message, repeated, tag = "1")]
    pub(crate) schema: Vec<Schema>,
}

/// `openapi.v2.Properties`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct Properties {
    #[prost(message, repeated, tag = "1")]
    pub(crate) additional_properties: Vec<NamedSchema>,
}

/// `openapi.v2.Schema` (all but `xml` and `external_docs`).
#[derive(Clone, PartialEq, Message)]
pub(crate) struct Schema {
    #[prost(string, tag = "1")]
    pub(crate) r#ref: String,
    #[prost(string, tag = "2")]
    pub(crate) format: String,
    #[prost(string, tag = "3")]
    pub(crate) title: String,
    #[prost(string, tag = "4")]
    pub(crate) description: String,
    #[prost(message, optional, tag = "5")]
    pub(crate) default: Option<Any>,
    #[prost(double, tag = "6")]
    pub(crate) multiple_of: f64,
    #[prost(double, tag = "7")]
    pub(crate) maximum: f64,
    #[prost(bool, tag = "8")]
    pub(crate) exclusive_maximum: bool,
    #[prost(double, tag = "9")]
    pub(crate) minimum: f64,
    #[prost(bool, tag = "10")]
    pub(crate) exclusive_minimum: bool,
    #[prost(int64, tag = "11")]
    pub(crate) max_length: i64,
    #[prost(int64, tag = "12")]
    pub(crate) min_length: i64,
    #[prost(string, tag = "13")]
    pub(crate) pattern: String,
    #[prost(int64, tag = "14")]
    pub(crate) max_items: i64,
    #[prost(int64, tag = "15")]
    pub(crate) min_items: i64,
    #[prost(bool, tag = "16")]
    pub(crate) unique_items: bool,
    #[prost(int64, tag = "17")]
    pub(crate) max_properties: i64,
    #[prost(int64, tag = "18")]
    pub(crate) min_properties: i64,
    #[prost(string, repeated, tag = "19")]
    pub(crate) required: Vec<String>,
    #[prost(message, repeated, tag = "20")]
    pub(crate) r#enum: Vec<Any>,
    #[prost(message, optional, boxed, tag = "21")]
    pub(crate) additional_properties: Option<Box<AdditionalPropertiesItem>>,
    #[prost(message, optional, tag = "22")]
    pub(crate) r#type: Option<TypeItem>,
    #[prost(message, optional, tag = "23")]
    pub(crate) items: Option<ItemsItem>,
    #[prost(message, repeated, tag = "24")]
    pub(crate) all_of: Vec<Schema>,
    #[prost(message, optional, tag = "25")]
    pub(crate) properties: Option<Properties>,
    #[prost(string, tag = "26")]
    pub(crate) discriminator: String,
    #[prost(bool, tag = "27")]
    pub(crate) read_only: bool,
    #[prost(message, optional, tag = "30")]
    pub(crate) example: Option<Any>,
    #[prost(message, repeated, tag = "31")]
    pub(crate) vendor_extension: Vec<NamedAny>,
}

/// A JSON value as gnostic carries values it does not model: YAML text.
fn any(v: &Value) -> Any {
    Any {
        yaml: serde_yaml_ng::to_string(v).unwrap_or_default(),
    }
}

fn string(o: &Map<String, Value>, k: &str) -> String {
    o.get(k)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn float(o: &Map<String, Value>, k: &str) -> f64 {
    o.get(k).and_then(Value::as_f64).unwrap_or_default()
}

fn int(o: &Map<String, Value>, k: &str) -> i64 {
    o.get(k).and_then(Value::as_i64).unwrap_or_default()
}

fn boolean(o: &Map<String, Value>, k: &str) -> bool {
    o.get(k).and_then(Value::as_bool).unwrap_or_default()
}

/// One JSON schema (OpenAPI v2 shape) as gnostic's `Schema`.
pub(crate) fn schema(v: &Value) -> Schema {
    let empty = Map::new();
    let o = v.as_object().unwrap_or(&empty);
    let named = |m: &Map<String, Value>| -> Vec<NamedSchema> {
        m.iter()
            .map(|(name, s)| NamedSchema {
                name: name.clone(),
                value: Some(schema(s)),
            })
            .collect()
    };
    Schema {
        r#ref: string(o, "$ref"),
        format: string(o, "format"),
        title: string(o, "title"),
        description: string(o, "description"),
        default: o.get("default").map(any),
        multiple_of: float(o, "multipleOf"),
        maximum: float(o, "maximum"),
        exclusive_maximum: boolean(o, "exclusiveMaximum"),
        minimum: float(o, "minimum"),
        exclusive_minimum: boolean(o, "exclusiveMinimum"),
        max_length: int(o, "maxLength"),
        min_length: int(o, "minLength"),
        pattern: string(o, "pattern"),
        max_items: int(o, "maxItems"),
        min_items: int(o, "minItems"),
        unique_items: boolean(o, "uniqueItems"),
        max_properties: int(o, "maxProperties"),
        min_properties: int(o, "minProperties"),
        required: o
            .get("required")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
        r#enum: o
            .get("enum")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(any).collect())
            .unwrap_or_default(),
        additional_properties: match o.get("additionalProperties") {
            Some(Value::Bool(b)) => Some(Box::new(AdditionalPropertiesItem {
                schema: None,
                boolean: Some(*b),
            })),
            Some(s @ Value::Object(_)) => Some(Box::new(AdditionalPropertiesItem {
                schema: Some(Box::new(schema(s))),
                boolean: None,
            })),
            _ => None,
        },
        r#type: match o.get("type") {
            Some(Value::String(t)) => Some(TypeItem {
                value: vec![t.clone()],
            }),
            Some(Value::Array(ts)) => Some(TypeItem {
                value: ts
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect(),
            }),
            _ => None,
        },
        items: match o.get("items") {
            Some(Value::Array(a)) => Some(ItemsItem {
                schema: a.iter().map(schema).collect(),
            }),
            Some(s @ Value::Object(_)) => Some(ItemsItem {
                schema: vec![schema(s)],
            }),
            _ => None,
        },
        all_of: o
            .get("allOf")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(schema).collect())
            .unwrap_or_default(),
        properties: o
            .get("properties")
            .and_then(Value::as_object)
            .map(|m| Properties {
                additional_properties: named(m),
            }),
        discriminator: string(o, "discriminator"),
        read_only: boolean(o, "readOnly"),
        example: o.get("example").map(any),
        vendor_extension: extensions(o),
    }
}

fn strings(o: &Map<String, Value>, k: &str) -> Vec<String> {
    o.get(k)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn extensions(o: &Map<String, Value>) -> Vec<NamedAny> {
    o.iter()
        .filter(|(k, _)| k.starts_with("x-"))
        .map(|(k, v)| NamedAny {
            name: k.clone(),
            value: Some(any(v)),
        })
        .collect()
}

/// One parameter (JSON, OpenAPI v2 shape).
fn parameter(v: &Value) -> ParametersItem {
    let empty = Map::new();
    let o = v.as_object().unwrap_or(&empty);
    let p = match o.get("in").and_then(Value::as_str) {
        Some("body") => Parameter {
            body_parameter: Some(BodyParameter {
                description: string(o, "description"),
                name: string(o, "name"),
                r#in: "body".into(),
                required: boolean(o, "required"),
                schema: o.get("schema").map(schema),
            }),
            non_body_parameter: None,
        },
        Some("path") => Parameter {
            body_parameter: None,
            non_body_parameter: Some(NonBodyParameter {
                query_parameter_sub_schema: None,
                path_parameter_sub_schema: Some(PathParameterSubSchema {
                    required: boolean(o, "required"),
                    r#in: "path".into(),
                    description: string(o, "description"),
                    name: string(o, "name"),
                    r#type: string(o, "type"),
                    unique_items: boolean(o, "uniqueItems"),
                }),
            }),
        },
        _ => Parameter {
            body_parameter: None,
            non_body_parameter: Some(NonBodyParameter {
                query_parameter_sub_schema: Some(QueryParameterSubSchema {
                    required: boolean(o, "required"),
                    r#in: "query".into(),
                    description: string(o, "description"),
                    name: string(o, "name"),
                    r#type: string(o, "type"),
                    unique_items: boolean(o, "uniqueItems"),
                }),
                path_parameter_sub_schema: None,
            }),
        },
    };
    ParametersItem { parameter: Some(p) }
}

fn parameters(o: &Map<String, Value>) -> Vec<ParametersItem> {
    o.get("parameters")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(parameter).collect())
        .unwrap_or_default()
}

/// One operation (JSON, OpenAPI v2 shape).
fn operation(v: Option<&Value>) -> Option<Operation> {
    let o = v?.as_object()?;
    Some(Operation {
        tags: strings(o, "tags"),
        description: string(o, "description"),
        operation_id: string(o, "operationId"),
        produces: strings(o, "produces"),
        consumes: strings(o, "consumes"),
        parameters: parameters(o),
        vendor_extension: extensions(o),
    })
}

/// One path item (JSON, OpenAPI v2 shape).
fn path_item(v: &Value) -> PathItem {
    let empty = Map::new();
    let o = v.as_object().unwrap_or(&empty);
    PathItem {
        get: operation(o.get("get")),
        put: operation(o.get("put")),
        post: operation(o.get("post")),
        delete: operation(o.get("delete")),
        patch: operation(o.get("patch")),
        parameters: parameters(o),
    }
}

/// The protobuf encoding of an OpenAPI v2 document (JSON).
pub(crate) fn encode(doc: &Value) -> Vec<u8> {
    let info = doc.get("info");
    let field = |v: Option<&Value>, k: &str| {
        v.and_then(|v| v.get(k))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let document = Document {
        swagger: field(Some(doc), "swagger"),
        info: Some(Info {
            title: field(info, "title"),
            version: field(info, "version"),
        }),
        paths: Some(Paths {
            vendor_extension: Vec::new(),
            path: doc
                .get("paths")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(name, item)| NamedPathItem {
                            name: name.clone(),
                            value: Some(path_item(item)),
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }),
        definitions: doc
            .get("definitions")
            .and_then(Value::as_object)
            .map(|m| Definitions {
                additional_properties: m
                    .iter()
                    .map(|(name, s)| NamedSchema {
                        name: name.clone(),
                        value: Some(schema(s)),
                    })
                    .collect(),
            }),
    };
    document.encode_to_vec()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_the_fields_kubectl_reads() {
        let doc = json!({
            "swagger": "2.0",
            "info": {"title": "Kubernetes", "version": "v1.34.0"},
            "definitions": {
                "io.example.v1.Thing": {
                    "type": "object",
                    "required": ["spec"],
                    "properties": {
                        "metadata": {"$ref": "#/definitions/meta", "description": "m"},
                        "spec": {
                            "type": "object",
                            "additionalProperties": {"type": "string"},
                        },
                        "list": {"type": "array", "items": {"type": "integer", "format": "int32"}},
                        "free": {"type": "object", "additionalProperties": true},
                    },
                    "x-kubernetes-group-version-kind": [{"group": "example.io", "kind": "Thing", "version": "v1"}],
                }
            }
        });
        let bytes = encode(&doc);
        let back = Document::decode(bytes.as_slice()).unwrap();
        assert_eq!(back.swagger, "2.0");
        assert_eq!(back.info.unwrap().version, "v1.34.0");
        let defs = back.definitions.unwrap().additional_properties;
        assert_eq!(defs.len(), 1);
        assert_eq!(defs[0].name, "io.example.v1.Thing");
        let thing = defs[0].value.clone().unwrap();
        assert_eq!(thing.r#type.unwrap().value, vec!["object"]);
        assert_eq!(thing.required, vec!["spec"]);
        let props = thing.properties.unwrap().additional_properties;
        let prop = |n: &str| {
            props
                .iter()
                .find(|p| p.name == n)
                .unwrap()
                .value
                .clone()
                .unwrap()
        };
        assert_eq!(prop("metadata").r#ref, "#/definitions/meta");
        let spec_ap = prop("spec").additional_properties.unwrap();
        assert_eq!(
            spec_ap.schema.unwrap().r#type.unwrap().value,
            vec!["string"]
        );
        assert_eq!(
            prop("list").items.unwrap().schema[0].format,
            "int32".to_string()
        );
        assert_eq!(
            prop("free").additional_properties.unwrap().boolean,
            Some(true)
        );
        let gvk = &thing.vendor_extension[0];
        assert_eq!(gvk.name, "x-kubernetes-group-version-kind");
        let yaml: Value = serde_yaml_ng::from_str(&gvk.value.clone().unwrap().yaml).unwrap();
        assert_eq!(yaml[0]["kind"], "Thing");
    }

    #[test]
    fn field_numbers_are_gnostics() {
        // Document.swagger = 1 (string): tag 0x0a; Document.definitions = 9: tag 0x4a.
        let bytes = encode(&json!({"swagger": "2.0", "definitions": {}}));
        assert_eq!(&bytes[..5], &[0x0a, 3, b'2', b'.', b'0']);
        assert!(bytes.windows(2).any(|w| w == [0x4a, 0]));
        // Schema.type = 22 (message): tag (22 << 3) | 2 = 178 = 0xb2 0x01.
        let s = schema(&json!({"type": "object"})).encode_to_vec();
        assert_eq!(&s[..2], &[0xb2, 0x01]);
    }
}
