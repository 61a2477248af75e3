//! Table metadata (columns, types, lengths, choice values, change tracking) into the field-mapping crate's
//! [`TableMetadata`], and `WhoAmI`, the connectivity check.

use std::collections::{BTreeMap, BTreeSet};

use field_mapping::{ColumnKind, ColumnMetadata, TableMetadata};
use serde::Deserialize;
use uuid::Uuid;

use crate::client::DynamicsClient;
use crate::error::{Error, Result};
use crate::query::{Literal, encode_path};

/// Who the client is in Dynamics: the answer to `WhoAmI`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct WhoAmI {
    /// The application user's id.
    #[serde(rename = "UserId")]
    pub user_id: Uuid,
    /// Its business unit.
    #[serde(rename = "BusinessUnitId")]
    pub business_unit_id: Uuid,
    /// The organisation (environment).
    #[serde(rename = "OrganizationId")]
    pub organization_id: Uuid,
}

/// How far a privilege of a security role reaches: the user's own rows, their business unit, it and its children, or
/// the whole organisation (Dataverse's `PrivilegeDepth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
pub enum PrivilegeDepth {
    /// The user's own rows ("User" in the role editor).
    Basic,
    /// The user's business unit.
    Local,
    /// The business unit and its children ("Parent: Child Business Units").
    Deep,
    /// Every row ("Organization").
    Global,
    /// A depth this client does not know (a record filter).
    #[serde(other)]
    Other,
}

impl PrivilegeDepth {
    /// The name the security role editor shows.
    pub fn role_editor_name(self) -> &'static str {
        match self {
            PrivilegeDepth::Basic => "User",
            PrivilegeDepth::Local => "Business Unit",
            PrivilegeDepth::Deep => "Parent: Child Business Units",
            PrivilegeDepth::Global => "Organization",
            PrivilegeDepth::Other => "a record filter",
        }
    }
}

/// One privilege a user holds through its roles: `RetrieveUserPrivileges`' `RolePrivilege`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RolePrivilege {
    /// The privilege's name, e.g. `prvWriteContact`.
    #[serde(rename = "PrivilegeName")]
    pub name: String,
    /// How far it reaches.
    #[serde(rename = "Depth")]
    pub depth: PrivilegeDepth,
}

#[derive(Deserialize)]
struct UserPrivileges {
    #[serde(rename = "RolePrivileges", default)]
    role_privileges: Vec<RolePrivilege>,
}

#[derive(Deserialize)]
struct EntityDefinition {
    #[serde(rename = "LogicalName")]
    logical_name: String,
    #[serde(rename = "ChangeTrackingEnabled", default)]
    change_tracking: Option<bool>,
}

#[derive(Deserialize)]
struct Collection<T> {
    value: Vec<T>,
}

#[derive(Deserialize)]
struct Attribute {
    #[serde(rename = "LogicalName")]
    logical_name: String,
    #[serde(rename = "AttributeType", default)]
    attribute_type: Option<String>,
    #[serde(rename = "MaxLength", default)]
    max_length: Option<i64>,
    #[serde(rename = "Format", default)]
    format: Option<String>,
    #[serde(rename = "DateTimeBehavior", default)]
    date_time_behavior: Option<ValueWrapper>,
    #[serde(rename = "IsValidForUpdate", default)]
    valid_for_update: Option<bool>,
}

#[derive(Deserialize)]
struct ValueWrapper {
    #[serde(rename = "Value")]
    value: Option<String>,
}

#[derive(Deserialize)]
struct ChoiceAttribute {
    #[serde(rename = "LogicalName")]
    logical_name: String,
    #[serde(rename = "OptionSet", default)]
    option_set: Option<OptionSet>,
    #[serde(rename = "GlobalOptionSet", default)]
    global_option_set: Option<OptionSet>,
}

#[derive(Deserialize)]
struct OptionSet {
    #[serde(rename = "Options", default)]
    options: Vec<OptionValue>,
}

#[derive(Deserialize)]
struct OptionValue {
    #[serde(rename = "Value")]
    value: i32,
}

impl DynamicsClient {
    /// `WhoAmI`: proves the token works and the application user exists.
    pub async fn who_am_i(&self) -> Result<WhoAmI> {
        let answer = self.send(&self.get(self.url("WhoAmI")?)).await?;
        serde_json::from_slice(&answer.body).map_err(|e| Error::decode("the WhoAmI answer", e))
    }

    /// Any Web API resource as JSON, by a path relative to the API base (for example
    /// `EntityDefinitions(LogicalName='contact')/Keys`): a GET with the client's authentication, throttling and
    /// retries. It never writes; tools such as the emulator's metadata snapshot read through it.
    pub async fn get_value(&self, path: &str) -> Result<serde_json::Value> {
        self.get_json(path).await
    }

    /// The privileges `user` holds through its security roles and teams (`RetrieveUserPrivileges`, one request).
    pub async fn user_privileges(&self, user: Uuid) -> Result<Vec<RolePrivilege>> {
        let answer: UserPrivileges = self
            .get_json(&format!(
                "systemusers({user})/Microsoft.Dynamics.CRM.RetrieveUserPrivileges()"
            ))
            .await?;
        Ok(answer.role_privileges)
    }

    /// Reads a table's column metadata and whether change tracking is enabled: three to five requests (the
    /// definition, the attributes, and one per kind of choice column).
    pub async fn table_metadata(&self, logical_name: &str) -> Result<TableMetadata> {
        self.metadata(logical_name, None).await
    }

    /// Like [`DynamicsClient::table_metadata`], but reads choice options only for the named columns, saving the
    /// requests for kinds of choice column the caller does not use (every column is still described).
    pub async fn table_metadata_for(&self, logical_name: &str, columns: &[String]) -> Result<TableMetadata> {
        self.metadata(logical_name, Some(columns)).await
    }

    async fn metadata(&self, logical_name: &str, wanted: Option<&[String]>) -> Result<TableMetadata> {
        let table = format!(
            "EntityDefinitions(LogicalName={})",
            encode_path(&Literal::Text(logical_name).to_string())
        );
        let definition: EntityDefinition = self
            .get_json(&format!(
                "{table}?$select=LogicalName,EntitySetName,PrimaryIdAttribute,ChangeTrackingEnabled"
            ))
            .await?;
        let attributes: Collection<Attribute> = self.get_json(&format!("{table}/Attributes")).await?;
        let mut columns = BTreeMap::new();
        let mut choice_casts = BTreeSet::new();
        for attribute in attributes.value {
            let kind = column_kind(&attribute);
            let wanted = wanted.is_none_or(|w| w.contains(&attribute.logical_name));
            if let (Some(cast), true) = (choice_cast(&kind), wanted) {
                choice_casts.insert(cast);
            }
            columns.insert(
                attribute.logical_name.clone(),
                ColumnMetadata {
                    logical_name: attribute.logical_name,
                    kind,
                    max_length: attribute.max_length.and_then(|n| u32::try_from(n).ok()),
                    options: None,
                    valid_for_update: attribute.valid_for_update.unwrap_or(false),
                },
            );
        }
        for cast in choice_casts {
            let choices: Collection<ChoiceAttribute> = self
                .get_json(&format!(
                    "{table}/Attributes/Microsoft.Dynamics.CRM.{cast}?$select=LogicalName&$expand=OptionSet($select=Options),GlobalOptionSet($select=Options)"
                ))
                .await?;
            for choice in choices.value {
                let options: BTreeSet<i32> = choice
                    .option_set
                    .into_iter()
                    .chain(choice.global_option_set)
                    .flat_map(|set| set.options)
                    .map(|o| o.value)
                    .collect();
                if let Some(column) = columns.get_mut(&choice.logical_name) {
                    column.options = Some(options);
                }
            }
        }
        Ok(TableMetadata {
            logical_name: definition.logical_name,
            change_tracking: definition.change_tracking.unwrap_or(false),
            columns,
        })
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T> {
        let answer = self.send(&self.get(self.url(path)?)).await?;
        serde_json::from_slice(&answer.body).map_err(|e| Error::decode(format!("metadata at {}", path_only(path)), e))
    }
}

fn path_only(path: &str) -> &str {
    path.split('?').next().unwrap_or(path)
}

fn column_kind(attribute: &Attribute) -> ColumnKind {
    match attribute.attribute_type.as_deref().unwrap_or_default() {
        "String" => ColumnKind::String,
        "Memo" => ColumnKind::Memo,
        "DateTime" => {
            let behavior = attribute.date_time_behavior.as_ref().and_then(|b| b.value.as_deref());
            // Only the DateOnly behaviour stores a calendar date without time-zone conversion.
            if behavior == Some("DateOnly") || (behavior.is_none() && attribute.format.as_deref() == Some("DateOnly")) {
                ColumnKind::DateOnly
            } else {
                ColumnKind::DateTime
            }
        }
        "Boolean" => ColumnKind::Boolean,
        "Picklist" => ColumnKind::Picklist,
        "State" => ColumnKind::State,
        "Status" => ColumnKind::Status,
        "Lookup" | "Customer" | "Owner" => ColumnKind::Lookup,
        other => ColumnKind::Other(other.to_owned()),
    }
}

fn choice_cast(kind: &ColumnKind) -> Option<&'static str> {
    match kind {
        ColumnKind::Picklist => Some("PicklistAttributeMetadata"),
        ColumnKind::State => Some("StateAttributeMetadata"),
        ColumnKind::Status => Some("StatusAttributeMetadata"),
        _ => None,
    }
}
