//! The part of JSON Schema (draft 2020-12) that catalog entries write their values in, and the
//! validator that checks a deployment's values against it, field by field.
//!
//! The subset is what the catalog needs, and no more:
//!
//! - `type`: one of `object`, `string`, `integer`, `boolean`, `array`;
//! - objects: `properties`, `required`, and `additionalProperties: false`, which every object
//!   must state, so that a misspelt key is refused rather than ignored;
//! - strings: `minLength`, `maxLength` (in characters), `pattern` (unanchored, as in JSON
//!   Schema; the `regex` crate's syntax, which agrees with ECMA-262 on the anchors, classes,
//!   groups and repetitions the schemas use, and matches in linear time, so no value can make
//!   a pattern take long) and `format: "email"` (checked as account addresses are,
//!   [`Email::parse`]);
//! - integers: `minimum`, `maximum`; a whole number written `2.0` is an integer, as JSON Schema
//!   says, and is stored as `2`;
//! - arrays: `items`, `minItems`, `maxItems`;
//! - any schema: `enum`, `const`, `allOf`, `if` with `then`;
//! - annotations: `$schema` (the root's, naming draft 2020-12), `$comment`, `title`,
//!   `description`, `default`, `examples`, `writeOnly`;
//! - Fleetplane's own: `x-fleetplane-secret` (always with `writeOnly`) marks a value that a
//!   deployment seals and never returns; `x-fleetplane-message` is the sentence every problem
//!   found under that schema reports, instead of the generic one (a schema below it may set its
//!   own).
//!
//! A schema that uses anything else, or uses a keyword where it cannot apply, is refused when
//! it is loaded, so that no schema can say something this validator would silently ignore (the
//! catalog's tests load every entry). Secrets and defaults belong to the tree of `properties`
//! from the root; `items`, `allOf`, `if` and `then` may not declare them, since nothing there
//! is filled in or sealed.
//!
//! Defaults are applied before anything is checked: a missing property with a `default` gets
//! it, and a missing object property becomes `{}` with its own defaults inside, so that a rule
//! about a nested field (`required`, `if`/`then`) names that field.
//!
//! Each problem has a stable code, reported under `values.<key>.<key>...` (array items by
//! index), at most one per field:
//!
//! | code | the value |
//! |---|---|
//! | `wrong_type` | is not of the schema's `type` (`values` itself must be an object) |
//! | `required` | is missing, and has no default |
//! | `unknown_field` | is under a key the schema does not list |
//! | `invalid_choice` | is not one of `enum`, or not the `const` |
//! | `too_short`, `too_long` | has fewer than `minLength` or more than `maxLength` characters |
//! | `invalid` | does not match `pattern`, or is not an email address |
//! | `not_canonical` | is an email address with a plainer Unicode form ([`Email::parse`]) |
//! | `range` | is below `minimum` or above `maximum` |
//! | `count` | has fewer than `minItems` or more than `maxItems` items |

use std::fmt;

use regex::Regex;
use serde::{
    Deserialize, Deserializer,
    de::{Error as _, MapAccess, Visitor},
};
use serde_json::{Map, Value, value::RawValue};

use crate::{
    domain::{Email, Invalid},
    error::FieldErrors,
};

/// The dialect every catalog schema names in `$schema`.
pub const DIALECT: &str = "https://json-schema.org/draft/2020-12/schema";

/// The field a deployment's values are reported under.
const ROOT: &str = "values";

/// A schema the catalog cannot use, and where in it the problem is.
#[derive(Debug, thiserror::Error)]
#[error("{at}: {reason}")]
pub struct SchemaError {
    at: String,
    reason: String,
}

impl SchemaError {
    fn new(at: &str, reason: impl Into<String>) -> Self {
        Self { at: at.to_owned(), reason: reason.into() }
    }
}

/// A schema as written: the keywords of the subset, and nothing else.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    #[serde(rename = "$schema")]
    dialect: Option<String>,
    #[serde(rename = "$comment")]
    _comment: Option<String>,
    #[serde(rename = "title")]
    _title: Option<String>,
    #[serde(rename = "description")]
    _description: Option<String>,
    #[serde(rename = "type")]
    kind: Option<Kind>,
    properties: Option<Ordered>,
    required: Option<Vec<String>>,
    #[serde(rename = "additionalProperties")]
    additional_properties: Option<bool>,
    items: Option<Box<Raw>>,
    #[serde(rename = "minItems")]
    min_items: Option<usize>,
    #[serde(rename = "maxItems")]
    max_items: Option<usize>,
    #[serde(rename = "minLength")]
    min_length: Option<usize>,
    #[serde(rename = "maxLength")]
    max_length: Option<usize>,
    pattern: Option<String>,
    format: Option<Format>,
    #[serde(rename = "enum")]
    choices: Option<Vec<Value>>,
    #[serde(rename = "const")]
    constant: Option<Value>,
    minimum: Option<i64>,
    maximum: Option<i64>,
    #[serde(rename = "allOf")]
    all_of: Option<Vec<Raw>>,
    #[serde(rename = "if")]
    condition: Option<Box<Raw>>,
    then: Option<Box<Raw>>,
    default: Option<Value>,
    examples: Option<Vec<Value>>,
    #[serde(rename = "writeOnly", default)]
    write_only: bool,
    #[serde(rename = "x-fleetplane-secret", default)]
    secret: bool,
    #[serde(rename = "x-fleetplane-message")]
    message: Option<String>,
}

/// `properties` in the order written: serde_json's own maps sort their keys, and the order is
/// the order problems are reported in.
struct Ordered(Vec<(String, Raw)>);

impl<'de> Deserialize<'de> for Ordered {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Entries;
        impl<'de> Visitor<'de> for Entries {
            type Value = Ordered;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of schemas")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Ordered, A::Error> {
                let mut entries: Vec<(String, Raw)> = Vec::new();
                while let Some((key, schema)) = map.next_entry::<String, Raw>()? {
                    if entries.iter().any(|(seen, _)| *seen == key) {
                        return Err(A::Error::custom(format!("the property `{key}` is listed twice")));
                    }
                    entries.push((key, schema));
                }
                Ok(Ordered(entries))
            }
        }
        deserializer.deserialize_map(Entries)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Kind {
    Object,
    String,
    Integer,
    Boolean,
    Array,
}

impl Kind {
    fn admits(self, value: &Value) -> bool {
        match self {
            Kind::Object => value.is_object(),
            Kind::String => value.is_string(),
            Kind::Integer => value.is_i64() || value.is_u64(),
            Kind::Boolean => value.is_boolean(),
            Kind::Array => value.is_array(),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Object => "object",
            Kind::String => "string",
            Kind::Integer => "integer",
            Kind::Boolean => "boolean",
            Kind::Array => "array",
        }
    }

    fn expected(self) -> &'static str {
        match self {
            Kind::Object => "Use an object of settings.",
            Kind::String => "Use text.",
            Kind::Integer => "Use a whole number.",
            Kind::Boolean => "Use true or false.",
            Kind::Array => "Use a list.",
        }
    }
}

#[derive(Clone, Copy, Debug, Deserialize)]
enum Format {
    #[serde(rename = "email")]
    Email,
}

/// One schema of the subset, compiled: patterns built, keywords checked against its type.
#[derive(Debug)]
struct Schema {
    kind: Option<Kind>,
    properties: Vec<(String, Schema)>,
    required: Vec<String>,
    closed: bool,
    items: Option<Box<Schema>>,
    min_items: Option<usize>,
    max_items: Option<usize>,
    min_length: Option<usize>,
    max_length: Option<usize>,
    pattern: Option<Regex>,
    email: bool,
    choices: Option<Vec<Value>>,
    constant: Option<Value>,
    minimum: Option<i64>,
    maximum: Option<i64>,
    all_of: Vec<Schema>,
    condition: Option<Box<(Schema, Schema)>>,
    default: Option<Value>,
    secret: bool,
    message: Option<String>,
}

/// Where a schema sits: in the tree of `properties` from the root (whose defaults are applied
/// and whose secrets are sealed), or in an `items`, `allOf`, `if` or `then` below it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    Root,
    Property,
    Elsewhere,
}

/// Refuses what the subset does not support, and keywords where they cannot apply.
fn refuse_misuse(raw: &Raw, at: &str, place: Place) -> Result<(), SchemaError> {
    let fail = |reason: String| Err(SchemaError::new(at, reason));
    match (place, raw.dialect.as_deref()) {
        (Place::Root, Some(DIALECT)) | (Place::Property | Place::Elsewhere, None) => {}
        (Place::Root, _) => return fail(format!("the root must say `\"$schema\": \"{DIALECT}\"`")),
        (_, Some(_)) => return fail("`$schema` belongs to the root only".to_owned()),
    }
    if place == Place::Root && raw.kind != Some(Kind::Object) {
        return fail("the values are an object: the root must say `\"type\": \"object\"`".to_owned());
    }
    let kind = raw.kind;
    let keywords_of = |of: Kind, present: &[(&str, bool)]| -> Result<(), SchemaError> {
        match (kind, present.iter().find(|(_, set)| *set)) {
            (Some(kind), Some((keyword, _))) if kind != of => Err(SchemaError::new(
                at,
                format!("`{keyword}` applies to {} schemas, not to {} ones", of.name(), kind.name()),
            )),
            _ => Ok(()),
        }
    };
    keywords_of(
        Kind::Object,
        &[
            ("properties", raw.properties.is_some()),
            ("required", raw.required.is_some()),
            ("additionalProperties", raw.additional_properties.is_some()),
        ],
    )?;
    keywords_of(
        Kind::String,
        &[
            ("minLength", raw.min_length.is_some()),
            ("maxLength", raw.max_length.is_some()),
            ("pattern", raw.pattern.is_some()),
            ("format", raw.format.is_some()),
        ],
    )?;
    keywords_of(Kind::Integer, &[("minimum", raw.minimum.is_some()), ("maximum", raw.maximum.is_some())])?;
    keywords_of(
        Kind::Array,
        &[("items", raw.items.is_some()), ("minItems", raw.min_items.is_some()), ("maxItems", raw.max_items.is_some())],
    )?;
    // (`additionalProperties` on a schema of another type was refused just above.)
    match raw.additional_properties {
        Some(true) => return fail("only `\"additionalProperties\": false` is supported".to_owned()),
        Some(false) if kind.is_none() => {
            return fail("`additionalProperties` needs `\"type\": \"object\"`".to_owned());
        }
        None if kind == Some(Kind::Object) => {
            return fail("an object must say `\"additionalProperties\": false`".to_owned());
        }
        _ => {}
    }
    if kind == Some(Kind::Array) && raw.items.is_none() {
        return fail("a list must say what its `items` are".to_owned());
    }
    if raw.write_only != raw.secret {
        return fail("a secret says both `\"writeOnly\": true` and `\"x-fleetplane-secret\": true`".to_owned());
    }
    if raw.secret && kind != Some(Kind::String) {
        return fail("only text can be a secret".to_owned());
    }
    if raw.secret && (raw.default.is_some() || raw.examples.is_some()) {
        return fail("a secret has no default and no examples: they would be the same everywhere".to_owned());
    }
    let in_tree = place != Place::Elsewhere;
    if !in_tree && (raw.secret || raw.default.is_some()) {
        return fail("secrets and defaults belong to the tree of `properties` from the root".to_owned());
    }
    if raw.condition.is_some() != raw.then.is_some() {
        return fail("`if` and `then` go together".to_owned());
    }
    for (low, high, what) in [(raw.min_length, raw.max_length, "minLength"), (raw.min_items, raw.max_items, "minItems")]
    {
        if let (Some(low), Some(high)) = (low, high)
            && low > high
        {
            return fail(format!("`{what}` is above its maximum"));
        }
    }
    if let (Some(low), Some(high)) = (raw.minimum, raw.maximum)
        && low > high
    {
        return fail("`minimum` is above `maximum`".to_owned());
    }
    Ok(())
}

fn compile(raw: Raw, at: &str, place: Place) -> Result<Schema, SchemaError> {
    refuse_misuse(&raw, at, place)?;
    let fail = |reason: String| Err(SchemaError::new(at, reason));
    let kind = raw.kind;
    let in_tree = place != Place::Elsewhere;
    let child = if in_tree { Place::Property } else { Place::Elsewhere };
    let mut properties = Vec::new();
    for (key, property) in raw.properties.map(|p| p.0).unwrap_or_default() {
        let schema = compile(property, &format!("{at}/properties/{key}"), child)?;
        properties.push((key, schema));
    }
    let required = raw.required.unwrap_or_default();
    if kind == Some(Kind::Object)
        && let Some(missing) = required.iter().find(|name| !properties.iter().any(|(key, _)| key == *name))
    {
        return fail(format!("`{missing}` is required but not among the properties"));
    }
    let items = match raw.items {
        Some(items) => Some(Box::new(compile(*items, &format!("{at}/items"), Place::Elsewhere)?)),
        None => None,
    };
    let pattern = match raw.pattern {
        Some(pattern) => {
            Some(Regex::new(&pattern).map_err(|e| SchemaError::new(at, format!("the pattern `{pattern}`: {e}")))?)
        }
        None => None,
    };
    let mut all_of = Vec::new();
    for (index, rule) in raw.all_of.unwrap_or_default().into_iter().enumerate() {
        all_of.push(compile(rule, &format!("{at}/allOf/{index}"), Place::Elsewhere)?);
    }
    let condition = match (raw.condition, raw.then) {
        (Some(condition), Some(then)) => Some(Box::new((
            compile(*condition, &format!("{at}/if"), Place::Elsewhere)?,
            compile(*then, &format!("{at}/then"), Place::Elsewhere)?,
        ))),
        _ => None,
    };
    let schema = Schema {
        kind,
        properties,
        required,
        closed: raw.additional_properties == Some(false),
        items,
        min_items: raw.min_items,
        max_items: raw.max_items,
        min_length: raw.min_length,
        max_length: raw.max_length,
        pattern,
        email: matches!(raw.format, Some(Format::Email)),
        choices: raw.choices,
        constant: raw.constant,
        minimum: raw.minimum,
        maximum: raw.maximum,
        all_of,
        condition,
        default: raw.default,
        secret: raw.secret,
        message: raw.message,
    };
    for (what, value) in
        schema.default.iter().map(|d| ("default", d)).chain(raw.examples.iter().flatten().map(|e| ("example", e)))
    {
        if !schema.admits(value) {
            return fail(format!("the {what} {value} does not satisfy its own schema"));
        }
    }
    Ok(schema)
}

/// A whole number, however it is written: `2`, `2.0`, `2e0`.
fn whole(number: &serde_json::Number) -> Option<i64> {
    const EXACT: f64 = 9_007_199_254_740_992.0;
    number.as_i64().or_else(|| {
        // Within ±2^53 a float holds whole numbers exactly, so the conversion loses nothing.
        number.as_f64().filter(|f| f.fract() == 0.0 && f.abs() <= EXACT).map(|f| f as i64)
    })
}

/// How a value is named in a message: text in backticks, anything else as JSON.
fn shown(value: &Value) -> String {
    match value {
        Value::String(text) => format!("`{text}`"),
        other => format!("`{other}`"),
    }
}

/// A JSON pointer (RFC 6901) token for `key`.
fn pointer_token(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// The key a JSON pointer token names.
fn pointer_key(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

/// What was found wrong: a field path and why.
type Found = Vec<(String, Invalid)>;

fn report(found: &mut Found, at: String, code: &'static str, text: String, message: Option<&str>) {
    found.push((at, Invalid::new(code, message.map_or(text, str::to_owned))));
}

impl Schema {
    /// Applies defaults under `value` and writes whole numbers as integers.
    fn prepare(&self, value: &mut Value) {
        let whole = match value {
            Value::Number(number) if self.kind == Some(Kind::Integer) => whole(number),
            _ => None,
        };
        if let Some(whole) = whole {
            *value = Value::from(whole);
        }
        match value {
            Value::Object(map) if self.kind == Some(Kind::Object) => self.prepare_object(map),
            Value::Array(items) => {
                if let Some(schema) = &self.items {
                    items.iter_mut().for_each(|item| schema.prepare(item));
                }
            }
            _ => {}
        }
    }

    /// Fills in the object's missing properties: their defaults, or `{}` for an object with
    /// its own defaults inside.
    fn prepare_object(&self, map: &mut Map<String, Value>) {
        for (key, schema) in &self.properties {
            if let Some(present) = map.get_mut(key) {
                schema.prepare(present);
            } else if let Some(default) = &schema.default {
                map.insert(key.clone(), default.clone());
            } else if schema.kind == Some(Kind::Object) {
                let mut inner = Map::new();
                schema.prepare_object(&mut inner);
                map.insert(key.clone(), Value::Object(inner));
            }
        }
    }

    /// Whether `value` satisfies the schema (as it is: no defaults are applied).
    fn admits(&self, value: &Value) -> bool {
        let mut found = Found::new();
        self.check(value, ROOT, &mut found, None);
        found.is_empty()
    }

    /// Records what is wrong with `value`, which sits at field `at`.
    fn check(&self, value: &Value, at: &str, found: &mut Found, message: Option<&str>) {
        let message = self.message.as_deref().or(message);
        if let Some(kind) = self.kind
            && !kind.admits(value)
        {
            return report(found, at.to_owned(), "wrong_type", kind.expected().to_owned(), message);
        }
        if let Some(constant) = &self.constant
            && value != constant
        {
            return report(found, at.to_owned(), "invalid_choice", format!("Use {}.", shown(constant)), message);
        }
        if let Some(choices) = &self.choices
            && !choices.contains(value)
        {
            let list = choices.iter().map(shown).collect::<Vec<_>>().join(", ");
            return report(found, at.to_owned(), "invalid_choice", format!("Use one of {list}."), message);
        }
        let own = match value {
            Value::String(text) => self.check_text(text),
            Value::Number(number) => self.check_number(number),
            Value::Array(items) => self.check_count(items.len()),
            _ => None,
        };
        if let Some((code, text)) = own {
            return report(found, at.to_owned(), code, text, message);
        }
        match value {
            Value::Array(items) => {
                if let Some(schema) = &self.items {
                    for (index, item) in items.iter().enumerate() {
                        schema.check(item, &format!("{at}.{index}"), found, message);
                    }
                }
            }
            Value::Object(map) => self.check_object(map, at, found, message),
            _ => {}
        }
        for rule in &self.all_of {
            rule.check(value, at, found, message);
        }
        if let Some(rule) = &self.condition
            && rule.0.admits(value)
        {
            rule.1.check(value, at, found, message);
        }
    }

    fn check_text(&self, text: &str) -> Option<(&'static str, String)> {
        let length = text.chars().count();
        if let Some(min) = self.min_length
            && length < min
        {
            let text = if min == 1 { "Enter a value.".to_owned() } else { format!("Use at least {min} characters.") };
            return Some(("too_short", text));
        }
        if let Some(max) = self.max_length
            && length > max
        {
            return Some(("too_long", format!("Use at most {max} characters.")));
        }
        if let Some(pattern) = &self.pattern
            && !pattern.is_match(text)
        {
            return Some(("invalid", "This is not in the expected form.".to_owned()));
        }
        if self.email {
            match Email::parse(text) {
                Err(invalid) => return Some((invalid.code, invalid.message)),
                // The value goes to the chart as given, so it must be the address exactly.
                Ok(email) if email.as_str() != text => {
                    return Some(("invalid", "Leave no spaces around the address.".to_owned()));
                }
                Ok(_) => {}
            }
        }
        None
    }

    fn check_number(&self, number: &serde_json::Number) -> Option<(&'static str, String)> {
        let value = number.as_f64()?;
        let below = self.minimum.is_some_and(|min| value < min as f64);
        let above = self.maximum.is_some_and(|max| value > max as f64);
        if !(below || above) {
            return None;
        }
        let text = match (self.minimum, self.maximum) {
            (Some(min), Some(max)) => format!("Use a number from {min} to {max}."),
            (Some(min), None) => format!("Use {min} or more."),
            (None, Some(max)) => format!("Use {max} or less."),
            (None, None) => return None,
        };
        Some(("range", text))
    }

    fn check_count(&self, count: usize) -> Option<(&'static str, String)> {
        let few = self.min_items.is_some_and(|min| count < min);
        let many = self.max_items.is_some_and(|max| count > max);
        if !(few || many) {
            return None;
        }
        let text = match (self.min_items, self.max_items) {
            (Some(min), Some(max)) => format!("Give {min} to {max} items."),
            (Some(min), None) => format!("Give at least {min}."),
            (None, Some(max)) => format!("Give at most {max}."),
            (None, None) => return None,
        };
        Some(("count", text))
    }

    fn check_object(&self, map: &Map<String, Value>, at: &str, found: &mut Found, message: Option<&str>) {
        for name in &self.required {
            if !map.contains_key(name) {
                report(found, format!("{at}.{name}"), "required", "This setting is required.".to_owned(), message);
            }
        }
        for (key, schema) in &self.properties {
            if let Some(value) = map.get(key) {
                schema.check(value, &format!("{at}.{key}"), found, message);
            }
        }
        if self.closed {
            for key in map.keys().filter(|key| !self.properties.iter().any(|(known, _)| known == *key)) {
                let text = format!("There is no setting `{key}` here.");
                report(found, format!("{at}.{key}"), "unknown_field", text, message);
            }
        }
    }

    /// The pointers of the secrets declared under this schema, which sits at `pointer`.
    fn secrets(&self, pointer: &str, out: &mut Vec<String>) {
        if self.secret {
            out.push(pointer.to_owned());
        }
        for (key, schema) in &self.properties {
            schema.secrets(&format!("{pointer}/{}", pointer_token(key)), out);
        }
    }

    /// The property schema `pointer` names under this one.
    fn declares(&self, pointer: &str) -> Option<&Schema> {
        let Some(rest) = pointer.strip_prefix('/') else { return pointer.is_empty().then_some(self) };
        let (token, tail) = rest.split_once('/').map_or((rest, ""), |(token, tail)| (token, tail));
        let key = pointer_key(token);
        let (_, schema) = self.properties.iter().find(|(known, _)| *known == key)?;
        if tail.is_empty() { Some(schema) } else { schema.declares(&format!("/{tail}")) }
    }
}

/// An entry's values schema: the text as written, compiled, with the defaults and secrets it
/// declares.
#[derive(Debug)]
pub struct ValuesSchema {
    json: Box<RawValue>,
    schema: Schema,
    defaults: Map<String, Value>,
    secrets: Vec<String>,
}

impl ValuesSchema {
    /// Reads a schema written in the subset this module supports.
    pub fn load(text: &str) -> Result<Self, SchemaError> {
        let not_json = |e: serde_json::Error| SchemaError::new("#", e.to_string());
        let json = RawValue::from_string(text.to_owned()).map_err(not_json)?;
        let raw: Raw = serde_json::from_str(json.get()).map_err(not_json)?;
        let schema = compile(raw, "#", Place::Root)?;
        let mut defaults = Map::new();
        schema.prepare_object(&mut defaults);
        let mut secrets = Vec::new();
        schema.secrets("", &mut secrets);
        Ok(Self { json, schema, defaults, secrets })
    }

    /// The schema as written, for clients: its properties in their order.
    pub fn json(&self) -> &RawValue {
        &self.json
    }

    /// What a deployment that sets nothing gets.
    pub fn defaults(&self) -> &Map<String, Value> {
        &self.defaults
    }

    /// The JSON pointers of the secret values the schema declares.
    pub fn secrets(&self) -> &[String] {
        &self.secrets
    }

    /// Whether `pointer` names a property of the schema, and if so, whether it is a secret.
    pub fn declares(&self, pointer: &str) -> Option<bool> {
        self.schema.declares(pointer).map(|schema| schema.secret)
    }

    /// Checks `values` (none given: every default), recording each problem in `errors` under
    /// `values.<path>`. The values with their defaults when nothing is wrong.
    pub fn validate(&self, values: Option<&Value>, errors: &mut FieldErrors) -> Option<ValidatedValues> {
        let mut values = match values {
            None => Map::new(),
            Some(Value::Object(values)) => values.clone(),
            Some(_) => {
                errors.add(ROOT, Invalid::new("wrong_type", Kind::Object.expected()));
                return None;
            }
        };
        self.schema.prepare_object(&mut values);
        let values = Value::Object(values);
        let mut found = Found::new();
        self.schema.check(&values, ROOT, &mut found, None);
        if !found.is_empty() {
            // One problem per field: the first found (a field's own before its rules').
            let mut reported: Vec<String> = Vec::new();
            for (field, invalid) in found {
                if !reported.contains(&field) {
                    errors.add(&field, invalid);
                    reported.push(field);
                }
            }
            return None;
        }
        let secrets = self.secrets.iter().filter(|pointer| values.pointer(pointer).is_some()).cloned().collect();
        Some(ValidatedValues { values, secrets })
    }
}

/// A deployment's values, valid for its entry, with the defaults filled in. The secret values
/// are inside: seal them ([`ValidatedValues::secrets`]) and store the rest
/// ([`ValidatedValues::without_secrets`]); `Debug` shows no secret.
#[derive(Clone, PartialEq)]
pub struct ValidatedValues {
    /// An object: the values of an object schema.
    values: Value,
    secrets: Vec<String>,
}

impl ValidatedValues {
    /// Every value, the secrets included, in the chart's own keys: what `helm --values` takes.
    /// Only the run that installs the chart should hold this.
    pub fn helm_values(&self) -> &Value {
        &self.values
    }

    /// The secret values that were given, by JSON pointer: what to seal.
    pub fn secrets(&self) -> impl Iterator<Item = (&str, &str)> {
        self.secrets.iter().filter_map(|pointer| Some((pointer.as_str(), self.values.pointer(pointer)?.as_str()?)))
    }

    /// The values without their secrets: what may be stored in clear and shown.
    pub fn without_secrets(&self) -> Value {
        let mut values = self.values.clone();
        for pointer in &self.secrets {
            let Some((parent, token)) = pointer.rsplit_once('/') else { continue };
            if let Some(Value::Object(map)) = values.pointer_mut(parent) {
                map.remove(&pointer_key(token));
            }
        }
        values
    }
}

impl fmt::Debug for ValidatedValues {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ValidatedValues")
            .field("values", &self.without_secrets())
            .field("secrets", &self.secrets.iter().map(|pointer| (pointer, "[redacted]")).collect::<Vec<_>>())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::error::AppError;

    fn load(schema: Value) -> Result<ValuesSchema, SchemaError> {
        ValuesSchema::load(&schema.to_string())
    }

    /// A root schema with these properties (and rules, if any).
    fn root(properties: Value, rules: Value) -> Value {
        let mut root = json!({
            "$schema": DIALECT, "type": "object", "additionalProperties": false, "properties": properties,
        });
        if !rules.is_null() {
            root["allOf"] = rules;
        }
        root
    }

    /// The problems `values` has, as `(field, code, message)`; the validated values if none.
    fn check(schema: &ValuesSchema, values: Value) -> Result<ValidatedValues, Vec<(String, String, String)>> {
        let mut errors = FieldErrors::new();
        let validated = schema.validate(Some(&values), &mut errors);
        match errors.finish() {
            Ok(()) => Ok(validated.expect("no problem, so values")),
            Err(AppError::Client { errors, .. }) => {
                assert!(validated.is_none());
                Err(errors.into_iter().map(|e| (e.field, e.code, e.message)).collect())
            }
            Err(other) => panic!("{other:?}"),
        }
    }

    fn refused(schema: Value) -> String {
        load(schema).expect_err("refused").to_string()
    }

    #[test]
    fn a_schema_outside_the_subset_is_refused_when_it_is_loaded() {
        let string = json!({ "type": "string" });
        let cases = [
            (json!({ "type": "object", "additionalProperties": false }), "$schema"),
            (json!({ "$schema": "http://json-schema.org/draft-07/schema#", "type": "object" }), "$schema"),
            (json!({ "$schema": DIALECT, "type": "string" }), "type"),
            (root(json!({ "a": { "type": "string", "oneOf": [] } }), Value::Null), "oneOf"),
            (root(json!({ "a": { "type": "object" } }), Value::Null), "additionalProperties"),
            (root(json!({ "a": { "type": "object", "additionalProperties": true } }), Value::Null), "only"),
            (root(json!({ "a": { "type": "object", "additionalProperties": string } }), Value::Null), "boolean"),
            (root(json!({ "a": { "additionalProperties": false } }), Value::Null), "needs"),
            (root(json!({ "a": { "type": "integer", "minLength": 1 } }), Value::Null), "minLength"),
            (root(json!({ "a": { "type": "string", "minimum": 1 } }), Value::Null), "minimum"),
            (root(json!({ "a": { "type": "array" } }), Value::Null), "items"),
            (root(json!({ "a": { "type": "string", "writeOnly": true } }), Value::Null), "secret"),
            (
                root(
                    json!({ "a": { "type": "integer", "writeOnly": true, "x-fleetplane-secret": true } }),
                    Value::Null,
                ),
                "text",
            ),
            (
                root(
                    json!({ "a": { "type": "string", "writeOnly": true, "x-fleetplane-secret": true, "default": "x" } }),
                    Value::Null,
                ),
                "default",
            ),
            (root(json!({}), json!([{ "then": { "required": ["a"] } }])), "`if` and `then`"),
            (root(json!({}), json!([{ "if": {}, "then": { "properties": { "a": { "default": 1 } } } }])), "tree"),
            (root(json!({ "a": { "type": "string", "pattern": "(" } }), Value::Null), "pattern"),
            (root(json!({ "a": { "type": "string", "maxLength": 2, "default": "abc" } }), Value::Null), "default"),
            (root(json!({ "a": { "type": "integer", "examples": ["one"] } }), Value::Null), "example"),
            (root(json!({ "a": { "type": "integer", "minimum": 5, "maximum": 1 } }), Value::Null), "minimum"),
            (
                json!({ "$schema": DIALECT, "type": "object", "additionalProperties": false, "required": ["b"] }),
                "`b` is required",
            ),
        ];
        for (schema, named) in cases {
            let reason = refused(schema.clone());
            assert!(reason.contains(named), "{schema}: {reason}");
        }
        assert!(ValuesSchema::load("{\"properties\": {\"a\": {}, \"a\": {}}}").is_err(), "a key twice");
    }

    #[test]
    fn defaults_fill_what_is_missing_nested_objects_included() {
        let schema = load(root(
            json!({
                "count": { "type": "integer", "default": 1 },
                "given": { "type": "string", "default": "x" },
                "outer": {
                    "type": "object", "additionalProperties": false,
                    "properties": {
                        "inner": {
                            "type": "object", "additionalProperties": false,
                            "properties": { "size": { "type": "string", "default": "10Gi" } },
                        },
                        "free": { "type": "string" },
                    },
                },
            }),
            Value::Null,
        ))
        .expect("schema");
        let defaults = json!({ "count": 1, "given": "x", "outer": { "inner": { "size": "10Gi" } } });
        assert_eq!(Value::Object(schema.defaults().clone()), defaults);
        let validated = check(&schema, json!({ "given": "mine", "outer": { "free": "f" } })).expect("valid");
        assert_eq!(
            *validated.helm_values(),
            json!({ "count": 1, "given": "mine", "outer": { "free": "f", "inner": { "size": "10Gi" } } })
        );
        let mut errors = FieldErrors::new();
        let none = schema.validate(None, &mut errors).expect("no values at all: the defaults");
        assert_eq!(*none.helm_values(), defaults);
    }

    #[test]
    fn whole_numbers_count_as_integers_however_written() {
        let schema = load(root(json!({ "n": { "type": "integer", "minimum": 0 } }), Value::Null)).expect("schema");
        for written in ["3", "3.0", "3e0", "0.3e1"] {
            let values: Value = serde_json::from_str(&format!("{{\"n\": {written}}}")).expect("json");
            assert_eq!(*check(&schema, values).expect(written).helm_values(), json!({ "n": 3 }), "{written}");
        }
        for bad in ["3.5", "1e300", "\"3\"", "true"] {
            let values: Value = serde_json::from_str(&format!("{{\"n\": {bad}}}")).expect("json");
            let problems = check(&schema, values).expect_err(bad);
            assert_eq!(problems[0].0, "values.n");
            assert_eq!(problems[0].1, "wrong_type", "{bad}");
        }
    }

    #[test]
    fn a_pattern_searches_as_json_schema_says_unless_anchored() {
        let schema = load(root(
            json!({ "loose": { "type": "string", "pattern": "b" }, "tight": { "type": "string", "pattern": "^b$" } }),
            Value::Null,
        ))
        .expect("schema");
        assert!(check(&schema, json!({ "loose": "abc", "tight": "b" })).is_ok());
        let problems = check(&schema, json!({ "tight": "abc" })).expect_err("anchored");
        assert_eq!((problems[0].0.as_str(), problems[0].1.as_str()), ("values.tight", "invalid"));
    }

    #[test]
    fn a_message_replaces_the_generic_sentences_below_it_and_the_code_stays() {
        let schema = load(root(
            json!({
                "size": { "type": "string", "pattern": "^[0-9]+Gi$", "x-fleetplane-message": "Write a size like 10Gi." },
                "plain": { "type": "string", "pattern": "^[0-9]+Gi$" },
                "on": { "type": "boolean", "default": false },
                "name": { "type": "string" },
            }),
            json!([{
                "if": { "properties": { "on": { "const": true } } },
                "then": { "x-fleetplane-message": "Switched on, it needs a name.", "required": ["name"] },
            }]),
        ))
        .expect("schema");
        let problems = check(&schema, json!({ "size": "ten", "plain": "ten", "on": true })).expect_err("bad");
        // (`json!` sorts the properties; a schema file keeps its own order.)
        assert_eq!(
            problems,
            [
                ("values.plain".to_owned(), "invalid".to_owned(), "This is not in the expected form.".to_owned()),
                ("values.size".to_owned(), "invalid".to_owned(), "Write a size like 10Gi.".to_owned()),
                ("values.name".to_owned(), "required".to_owned(), "Switched on, it needs a name.".to_owned()),
            ]
        );
        assert!(check(&schema, json!({ "on": false })).is_ok(), "the rule holds only when its condition does");
    }

    #[test]
    fn each_field_reports_one_problem_its_own_first() {
        let schema = load(root(
            json!({ "name": { "type": "string", "minLength": 3 } }),
            json!([{ "if": {}, "then": { "properties": { "name": { "pattern": "^x" } } } }]),
        ))
        .expect("schema");
        let problems = check(&schema, json!({ "name": "ab" })).expect_err("too short, and no x");
        assert_eq!(problems.len(), 1);
        assert_eq!((problems[0].0.as_str(), problems[0].1.as_str()), ("values.name", "too_short"));
        let problems = check(&schema, json!({ "name": "abc" })).expect_err("no x");
        assert_eq!((problems[0].0.as_str(), problems[0].1.as_str()), ("values.name", "invalid"));
    }

    #[test]
    fn secrets_are_found_by_pointer_kept_out_of_the_stored_values_and_of_debug() {
        let schema = load(root(
            json!({
                "a/b": {
                    "type": "object", "additionalProperties": false,
                    "properties": {
                        "pass~word": { "type": "string", "writeOnly": true, "x-fleetplane-secret": true },
                        "user": { "type": "string", "default": "admin" },
                    },
                },
                "token": { "type": "string", "writeOnly": true, "x-fleetplane-secret": true },
            }),
            Value::Null,
        ))
        .expect("schema");
        assert_eq!(schema.secrets(), ["/a~1b/pass~0word", "/token"]);
        assert_eq!(schema.declares("/a~1b/pass~0word"), Some(true));
        assert_eq!(schema.declares("/a~1b/user"), Some(false));
        assert_eq!(schema.declares("/a~1b/nothing"), None);

        let validated = check(&schema, json!({ "a/b": { "pass~word": "hunter2-hunter2" } })).expect("valid");
        assert_eq!(validated.secrets().collect::<Vec<_>>(), [("/a~1b/pass~0word", "hunter2-hunter2")]);
        assert_eq!(validated.without_secrets(), json!({ "a/b": { "user": "admin" } }));
        assert_eq!(validated.helm_values()["a/b"]["pass~word"], "hunter2-hunter2");
        let debug = format!("{validated:?}");
        assert!(!debug.contains("hunter2") && debug.contains("[redacted]"), "{debug}");
    }
}
