//! The metadata endpoints: `EntityDefinitions(LogicalName='x')`, its `Attributes`, one attribute, and the casts to
//! `PicklistAttributeMetadata`, `StateAttributeMetadata` and `StatusAttributeMetadata` with their option sets.

use std::collections::HashMap;

use http::StatusCode;
use serde_json::{Map, Value};

use crate::api::{ApiResponse, Ctx, matching_paren};
use crate::dverror::{self, DvError};
use crate::metadata::{AttrDef, TableDef};
use crate::store::Db;

const CAST_PREFIX: &str = "Microsoft.Dynamics.CRM.";
/// Navigation properties of attribute metadata, only returned when expanded.
const ATTR_NAVIGATION: [&str; 2] = ["OptionSet", "GlobalOptionSet"];

/// One `$expand` item: a navigation property and its `$select`.
#[derive(Debug)]
struct Expand {
    name: String,
    select: Option<Vec<String>>,
}

fn parse_expand(text: &str) -> Result<Vec<Expand>, DvError> {
    let mut out = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let end = rest.find([',', '(']).unwrap_or(rest.len());
        let name = rest[..end].trim().to_owned();
        rest = &rest[end..];
        let mut select = None;
        if let Some(inner) = rest.strip_prefix('(') {
            let close =
                matching_paren(inner).ok_or_else(|| DvError::odata(format!("Syntax error in '$expand={text}'.")))?;
            for opt in inner[..close].split(';') {
                if let Some(s) = opt.trim().strip_prefix("$select=") {
                    select = Some(s.split(',').map(|c| c.trim().to_owned()).collect());
                }
            }
            rest = &inner[close + 1..];
        }
        rest = rest.trim_start_matches(',').trim_start();
        if name.is_empty() {
            return Err(DvError::odata(format!("Syntax error in '$expand={text}'.")));
        }
        out.push(Expand { name, select });
    }
    Ok(out)
}

fn select_list(q: &HashMap<String, String>) -> Option<Vec<String>> {
    q.get("$select").map(|s| {
        s.split(',')
            .map(|c| c.trim().to_owned())
            .filter(|c| !c.is_empty())
            .collect()
    })
}

/// Keeps only the selected properties (plus the type annotation and the metadata id, which Dataverse always sends).
fn apply_select(obj: &Map<String, Value>, select: Option<&[String]>) -> Map<String, Value> {
    match select {
        None => obj.clone(),
        Some(cols) => obj
            .iter()
            .filter(|(k, _)| k.starts_with('@') || *k == "MetadataId" || cols.iter().any(|c| c == *k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

fn parse_logical_name(key: &str) -> Option<String> {
    let key = key.trim();
    let value = key.strip_prefix("LogicalName=").unwrap_or(key).trim();
    let value = value.strip_prefix('\'')?.strip_suffix('\'')?;
    Some(value.replace("''", "'"))
}

/// Answers GET `EntityDefinitions...`; `rest` is the path after `EntityDefinitions`.
pub(crate) fn get(ctx: &Ctx<'_>, db: &Db, rest: &str, q: &HashMap<String, String>) -> Result<ApiResponse, DvError> {
    let select = select_list(q);
    let expand = q
        .get("$expand")
        .map(|e| parse_expand(e))
        .transpose()?
        .unwrap_or_default();
    if rest.is_empty() {
        return list_entities(ctx, db, q, select.as_deref());
    }
    let inner = rest.strip_prefix('(').ok_or_else(|| DvError::segment(rest))?;
    let close = matching_paren(inner).ok_or_else(|| DvError::segment(rest))?;
    let key = &inner[..close];
    let after = &inner[close + 1..];
    let table = find_table(db, key)?;
    let gone = db.dropped_for(&table.def.logical_name);
    let live: Vec<&AttrDef> = table.def.attrs.iter().filter(|a| !gone.contains(&a.name)).collect();
    let def = &table.def;
    let api = ctx.api;
    if after.is_empty() {
        let mut body = apply_select(&def.raw, select.as_deref());
        body.remove("Keys");
        for e in &expand {
            match e.name.as_str() {
                "Attributes" => {
                    let attrs = live
                        .iter()
                        .map(|a| Value::Object(attribute_json(a, e.select.as_deref(), &[])))
                        .collect();
                    body.insert("Attributes".into(), Value::Array(attrs));
                }
                "Keys" => {
                    body.insert(
                        "Keys".into(),
                        def.raw.get("Keys").cloned().unwrap_or(Value::Array(Vec::new())),
                    );
                }
                other => return Err(unknown_metadata_property("EntityMetadata", other)),
            }
        }
        let ctx_sel = select
            .as_ref()
            .map(|s| format!("({})", s.join(",")))
            .unwrap_or_default();
        body.insert(
            "@odata.context".into(),
            Value::String(format!("{api}/$metadata#EntityDefinitions{ctx_sel}/$entity")),
        );
        return Ok(ApiResponse::json(StatusCode::OK, &Value::Object(body)));
    }
    let after = after
        .strip_prefix("/Attributes")
        .ok_or_else(|| DvError::segment(after.trim_start_matches('/')))?;
    let base_ctx = format!("{api}/$metadata#EntityDefinitions('{}')/Attributes", def.logical_name);
    // One attribute: Attributes(LogicalName='x')[/cast]
    if let Some(inner) = after.strip_prefix('(') {
        let close = matching_paren(inner).ok_or_else(|| DvError::segment(after))?;
        let name = parse_logical_name(&inner[..close]).ok_or_else(|| DvError::segment(after))?;
        let attr = live.iter().find(|a| a.name == name).ok_or_else(|| {
            DvError::new(
                StatusCode::NOT_FOUND,
                dverror::NOT_FOUND,
                format!(
                    "Could not find attribute with name '{name}' on entity '{}'.",
                    def.logical_name
                ),
            )
        })?;
        let cast = parse_cast(&inner[close + 1..])?;
        if let Some(cast) = &cast
            && attr.metadata_type() != cast
        {
            return Err(DvError::new(
                StatusCode::NOT_FOUND,
                dverror::ODATA,
                format!("The attribute '{name}' is not of type '{CAST_PREFIX}{cast}'."),
            ));
        }
        let mut body = attribute_json(attr, select.as_deref(), &expand);
        let cast_ctx = cast.map(|c| format!("/{CAST_PREFIX}{c}")).unwrap_or_default();
        body.insert(
            "@odata.context".into(),
            Value::String(format!("{base_ctx}{cast_ctx}/$entity")),
        );
        return Ok(ApiResponse::json(StatusCode::OK, &Value::Object(body)));
    }
    let cast = parse_cast(after)?;
    let values: Vec<Value> = live
        .iter()
        .filter(|a| cast.as_deref().is_none_or(|c| a.metadata_type() == c))
        .map(|a| Value::Object(attribute_json(a, select.as_deref(), &expand)))
        .collect();
    let cast_ctx = cast.map(|c| format!("/{CAST_PREFIX}{c}")).unwrap_or_default();
    let sel_ctx = select
        .as_ref()
        .map(|s| format!("({})", s.join(",")))
        .unwrap_or_default();
    let mut body = Map::new();
    body.insert(
        "@odata.context".into(),
        Value::String(format!("{base_ctx}{cast_ctx}{sel_ctx}")),
    );
    body.insert("value".into(), Value::Array(values));
    Ok(ApiResponse::json(StatusCode::OK, &Value::Object(body)))
}

fn unknown_metadata_property(ty: &str, name: &str) -> DvError {
    DvError::odata(format!(
        "Could not find a property named '{name}' on type 'Microsoft.Dynamics.CRM.{ty}'."
    ))
}

fn parse_cast(text: &str) -> Result<Option<String>, DvError> {
    if text.is_empty() {
        return Ok(None);
    }
    let cast = text
        .strip_prefix('/')
        .and_then(|c| c.strip_prefix(CAST_PREFIX))
        .filter(|c| c.ends_with("AttributeMetadata"))
        .ok_or_else(|| DvError::segment(text.trim_start_matches('/')))?;
    Ok(Some(cast.to_owned()))
}

fn attribute_json(attr: &AttrDef, select: Option<&[String]>, expand: &[Expand]) -> Map<String, Value> {
    let mut base = attr.raw.clone();
    for nav in ATTR_NAVIGATION {
        base.remove(nav);
    }
    let mut out = apply_select(&base, select);
    for e in expand {
        if ATTR_NAVIGATION.contains(&e.name.as_str()) {
            let value = match attr.raw.get(&e.name) {
                Some(Value::Object(o)) => Value::Object(apply_select(o, e.select.as_deref())),
                _ => Value::Null,
            };
            out.insert(e.name.clone(), value);
        }
    }
    out
}

fn find_table<'a>(db: &'a Db, key: &str) -> Result<&'a crate::store::Table, DvError> {
    let by_name = parse_logical_name(key);
    let found = match &by_name {
        Some(name) => db.table_by_name(name).map(|t| &db.tables[t]),
        None => {
            let id = key.trim();
            db.tables.iter().find(|t| {
                t.def
                    .raw
                    .get("MetadataId")
                    .and_then(Value::as_str)
                    .is_some_and(|m| m.eq_ignore_ascii_case(id))
            })
        }
    };
    found.ok_or_else(|| {
        DvError::new(
            StatusCode::NOT_FOUND,
            dverror::NOT_FOUND,
            format!(
                "Could not find entity with name '{}'.",
                by_name.as_deref().unwrap_or(key)
            ),
        )
    })
}

fn list_entities(
    ctx: &Ctx<'_>,
    db: &Db,
    q: &HashMap<String, String>,
    select: Option<&[String]>,
) -> Result<ApiResponse, DvError> {
    // The one filter clients use on this collection: LogicalName eq 'x' (optionally combined with "and").
    let wanted: Option<String> = q.get("$filter").map(|f| {
        f.split(" and ")
            .find_map(|clause| clause.trim().strip_prefix("LogicalName eq "))
            .map(|v| v.trim().trim_matches('\'').to_owned())
            .unwrap_or_default()
    });
    let values: Vec<Value> = db
        .tables
        .iter()
        .map(|t| &t.def)
        .filter(|d: &&TableDef| wanted.as_deref().is_none_or(|w| w.is_empty() || d.logical_name == w))
        .map(|d| {
            let mut m = apply_select(&d.raw, select);
            m.remove("Keys");
            Value::Object(m)
        })
        .collect();
    let sel_ctx = select.map(|s| format!("({})", s.join(","))).unwrap_or_default();
    let mut body = Map::new();
    body.insert(
        "@odata.context".into(),
        Value::String(format!("{}/$metadata#EntityDefinitions{sel_ctx}", ctx.api)),
    );
    body.insert("value".into(), Value::Array(values));
    Ok(ApiResponse::json(StatusCode::OK, &Value::Object(body)))
}
