//! The application user's security role: the privileges `RetrieveUserPrivileges` answers and, once a role is
//! configured, the privileges every table request needs (403 with 0x80040220 when one is missing, as Dataverse).
//!
//! Until a role is configured the emulator answers with [`hlf_sync_role`], the minimal role of
//! docs/hlf-it-prerequisites.md, and allows every request: test fixtures create and delete rows through the API.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How far a privilege reaches (Dataverse's `PrivilegeDepth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PrivilegeDepth {
    /// The user's own rows ("User").
    Basic,
    /// The user's business unit.
    Local,
    /// The business unit and its children.
    Deep,
    /// The whole organisation ("Organization").
    Global,
}

/// One privilege of the role, e.g. `prvWriteContact` at `Global` depth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolePrivilege {
    /// The privilege's name.
    pub name: String,
    /// Its depth.
    pub depth: PrivilegeDepth,
}

impl RolePrivilege {
    /// A privilege at organisation depth.
    pub fn global(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            depth: PrivilegeDepth::Global,
        }
    }

    /// Parses `prvReadContact` (organisation depth) or `prvReadContact:Basic`.
    pub fn parse(text: &str) -> Result<Self> {
        let (name, depth) = text.split_once(':').unwrap_or((text, "Global"));
        let depth = match depth {
            "Basic" => PrivilegeDepth::Basic,
            "Local" => PrivilegeDepth::Local,
            "Deep" => PrivilegeDepth::Deep,
            "Global" => PrivilegeDepth::Global,
            other => {
                return Err(Error::InvalidSetting(format!(
                    "role privilege `{text}`: unknown depth `{other}`; use Basic, Local, Deep or Global"
                )));
            }
        };
        if !name.starts_with("prv") || name.len() <= 3 {
            return Err(Error::InvalidSetting(format!(
                "role privilege `{text}`: a privilege name starts with `prv`, e.g. prvReadContact"
            )));
        }
        Ok(Self {
            name: name.to_owned(),
            depth,
        })
    }
}

/// The minimal role of docs/hlf-it-prerequisites.md for the sync without the accounting export: read and write
/// contacts at organisation depth (the export adds create, read and write on `hlf_posting`).
pub fn hlf_sync_role() -> Vec<RolePrivilege> {
    ["prvReadContact", "prvWriteContact"]
        .into_iter()
        .map(RolePrivilege::global)
        .collect()
}

/// What a table request does, for the privilege it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    Create,
    Read,
    Write,
    Delete,
}

impl Access {
    fn verb(self) -> &'static str {
        match self {
            Access::Create => "Create",
            Access::Read => "Read",
            Access::Write => "Write",
            Access::Delete => "Delete",
        }
    }
}

/// The role in effect.
#[derive(Debug, Clone)]
pub(crate) struct Role {
    pub(crate) privileges: Vec<RolePrivilege>,
    /// Whether table requests are checked against it (only once a role was configured).
    pub(crate) enforced: bool,
}

impl Default for Role {
    fn default() -> Self {
        Self {
            privileges: hlf_sync_role(),
            enforced: false,
        }
    }
}

impl Role {
    /// The privilege `access` on `entity` needs, when the role is enforced and lacks it (at any depth: the emulator
    /// has one business unit and no row owners).
    pub(crate) fn missing(&self, access: Access, entity: &str) -> Option<String> {
        // Dataverse names privileges after the schema name: a system table's is its logical name capitalised.
        let mut schema = entity.to_owned();
        if !schema.contains('_')
            && let Some(first) = schema.get_mut(0..1)
        {
            first.make_ascii_uppercase();
        }
        let name = format!("prv{}{schema}", access.verb());
        (self.enforced && !self.privileges.iter().any(|p| p.name.eq_ignore_ascii_case(&name))).then_some(name)
    }
}
