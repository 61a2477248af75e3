//! `dataverse-sim snapshot`: a Dataverse instance's table definitions (attributes with their option sets, and
//! alternate keys) written as emulator fixtures, in the same `EntityDefinitions` JSON the emulator loads from
//! `DIR/metadata/<table>.json`. No rows are read. Only GETs are sent, so it is safe against a production instance.

use std::path::{Path, PathBuf};

use anyhow::Context;
use dynamics_client::DynamicsClient;
use serde_json::{Map, Value};

/// The attribute casts whose option sets are read (choice columns).
const CHOICE_CASTS: [&str; 4] = [
    "PicklistAttributeMetadata",
    "StateAttributeMetadata",
    "StatusAttributeMetadata",
    "MultiSelectPicklistAttributeMetadata",
];

/// One table's definition as an emulator fixture: the entity definition with `Keys` and `Attributes`, each choice
/// attribute with its `OptionSet` (and `GlobalOptionSet` when it uses one). Annotations (`@odata.context`) are left
/// out; `@odata.type` of each attribute is kept, as the emulator serves it.
pub(crate) async fn table(client: &DynamicsClient, logical_name: &str) -> anyhow::Result<Value> {
    let base = format!("EntityDefinitions(LogicalName='{logical_name}')");
    let mut definition = object(
        client
            .get_value(&format!("{base}?$expand=Keys"))
            .await
            .with_context(|| format!("reading the definition of table {logical_name}"))?,
    );
    definition.remove("@odata.context");
    let mut attributes: Vec<Value> = values(
        client
            .get_value(&format!("{base}/Attributes"))
            .await
            .with_context(|| format!("reading the attributes of table {logical_name}"))?,
    );
    for cast in CHOICE_CASTS {
        let choices = client
            .get_value(&format!(
                "{base}/Attributes/Microsoft.Dynamics.CRM.{cast}?$select=LogicalName&$expand=OptionSet,GlobalOptionSet"
            ))
            .await;
        let choices = match choices {
            Ok(choices) => values(choices),
            // An instance that does not know this kind of column.
            Err(dynamics_client::Error::NotFound { .. }) => Vec::new(),
            Err(e) => return Err(e).with_context(|| format!("reading the {cast} option sets of table {logical_name}")),
        };
        for choice in choices {
            let Some(name) = choice.get("LogicalName").and_then(Value::as_str) else {
                continue;
            };
            let Some(Value::Object(attribute)) = attributes
                .iter_mut()
                .find(|a| a.get("LogicalName").and_then(Value::as_str) == Some(name))
            else {
                continue;
            };
            for navigation in ["OptionSet", "GlobalOptionSet"] {
                if let Some(set) = choice.get(navigation).filter(|v| !v.is_null()) {
                    attribute.insert(navigation.to_owned(), set.clone());
                }
            }
        }
    }
    for attribute in &mut attributes {
        if let Value::Object(a) = attribute {
            a.remove("@odata.context");
        }
    }
    definition.insert("Attributes".to_owned(), Value::Array(attributes));
    Ok(Value::Object(definition))
}

/// Writes `tables` of the instance behind `client` to `out/metadata/<table>.json`; answers the files written.
pub(crate) async fn write(client: &DynamicsClient, tables: &[String], out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let dir = out.join("metadata");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = Vec::new();
    for name in tables {
        let definition = table(client, name).await?;
        let path = dir.join(format!("{name}.json"));
        let mut text = serde_json::to_string_pretty(&definition)?;
        text.push('\n');
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

fn values(value: Value) -> Vec<Value> {
    match value {
        Value::Object(mut map) => match map.remove("value") {
            Some(Value::Array(values)) => values,
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}
