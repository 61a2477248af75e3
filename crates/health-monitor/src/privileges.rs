//! The least-privilege self-check: which Dynamics privileges the configured sync needs (a pure rule over the field
//! mapping), compared with what the application user holds (`RetrieveUserPrivileges` for the `WhoAmI` user).
//!
//! A needed privilege that is missing, or held below organisation depth, is an error: the run would fail, or see
//! only some members. A privilege that matters and is not needed (delete, assign or share on any table; create or
//! write on a table the sync never writes) is a warning: HLF IT can take it away. Other read privileges are not
//! reported; an application user needs some to work at all.

use std::fmt;

use dynamics_client::{DynamicsClient, PrivilegeDepth, RolePrivilege};
use field_mapping::FieldMapping;
use serde::Serialize;
use uuid::Uuid;

/// What the sync does with a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// Creates rows.
    Create,
    /// Reads rows.
    Read,
    /// Updates rows.
    Write,
    /// Deletes rows.
    Delete,
    /// Links rows of the table to others through a lookup.
    Append,
    /// Assigns rows to another owner.
    Assign,
    /// Shares rows with other users.
    Share,
}

impl Access {
    const ALL: [Access; 7] = [
        Access::Create,
        Access::Read,
        Access::Write,
        Access::Delete,
        Access::Append,
        Access::Assign,
        Access::Share,
    ];

    /// The verb in privilege names (`prvWriteContact`) and in the security role editor.
    pub fn verb(self) -> &'static str {
        match self {
            Access::Create => "Create",
            Access::Read => "Read",
            Access::Write => "Write",
            Access::Delete => "Delete",
            Access::Append => "Append",
            Access::Assign => "Assign",
            Access::Share => "Share",
        }
    }

    /// Splits a table privilege's name into its access and table (`prvWriteContact` → Write, `contact`). `None` for
    /// other privileges (`prvAppendTo…` included: being linked to is harmless).
    fn of(name: &str) -> Option<(Access, String)> {
        let rest = name.strip_prefix("prv")?;
        if rest.starts_with("AppendTo") {
            return None;
        }
        Access::ALL.into_iter().find_map(|access| {
            let table = rest.strip_prefix(access.verb())?;
            (!table.is_empty()).then(|| (access, table.to_ascii_lowercase()))
        })
    }
}

/// A privilege the sync needs, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Need {
    /// The table's logical name.
    pub table: String,
    /// What the sync does with it.
    pub access: Access,
    /// Why, in words for HLF IT.
    pub why: String,
}

impl Need {
    /// The privilege's name, built from the table's logical name as Dataverse builds it from the schema name
    /// (names are compared without regard to case): a system table's schema name is its logical name capitalised
    /// (`contact` → `prvReadContact`); a custom table's is shown as its logical name (`prvReadhlf_posting`).
    pub fn privilege(&self) -> String {
        let mut table = self.table.clone();
        if !table.contains('_')
            && let Some(first) = table.get_mut(0..1)
        {
            first.make_ascii_uppercase();
        }
        format!("prv{}{table}", self.access.verb())
    }
}

/// The privileges the sync needs with this mapping: read and write on the mentors' table (it never creates or
/// deletes contacts), append where it writes a lookup, and, with the accounting export, create, read and write on
/// the postings table.
pub fn needs(mapping: &FieldMapping, accounting: bool) -> Vec<Need> {
    let mut needs = Vec::new();
    let mut need = |table: &str, access: Access, why: &str| {
        needs.push(Need {
            table: table.to_owned(),
            access,
            why: why.to_owned(),
        });
    };
    if let Some(mentors) = mapping.record("mentor") {
        let table = mentors.table();
        need(
            table,
            Access::Read,
            "the sync reads every member's row (membership, and the mentors it links)",
        );
        if mentors.fields().iter().any(|f| f.writable_to_dynamics()) {
            need(
                table,
                Access::Write,
                "the sync writes the app-owned columns (certification, public-site flag)",
            );
        }
        if mentors
            .fields()
            .iter()
            .any(|f| f.writable_to_dynamics() && f.kind.name() == "lookup")
        {
            need(table, Access::Append, "the mapping writes a lookup column");
        }
    }
    if accounting && let Some(postings) = mapping.record("posting") {
        let table = postings.table();
        need(
            table,
            Access::Create,
            "the accounting export creates each approved posting once",
        );
        need(table, Access::Read, "the accounting export reconciles what it wrote");
        need(
            table,
            Access::Write,
            "the accounting export corrects a posting it wrote",
        );
        if postings.fields().iter().any(|f| f.kind.name() == "lookup") {
            need(table, Access::Append, "the postings mapping writes a lookup column");
        }
    }
    needs
}

/// One finding of the check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PrivilegeFinding {
    /// The privilege, e.g. `prvWriteContact`.
    pub privilege: String,
    /// Its table's logical name.
    pub table: String,
    /// Its access.
    pub access: Access,
    /// The depth held, when held.
    pub held: Option<PrivilegeDepth>,
    /// What it means and what HLF IT should change.
    pub message: String,
}

/// The application user's privileges against what the sync needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PrivilegeReport {
    /// The application user (`WhoAmI`).
    pub user_id: Uuid,
    /// How many privileges the sync needs.
    pub needed: usize,
    /// Needed privileges missing or held below organisation depth: errors.
    pub missing: Vec<PrivilegeFinding>,
    /// Privileges that matter and that the sync does not need: warnings.
    pub excess: Vec<PrivilegeFinding>,
}

impl PrivilegeReport {
    /// Whether the role has every needed privilege at organisation depth.
    pub fn sufficient(&self) -> bool {
        self.missing.is_empty()
    }
}

/// Compares what the user holds with what the sync needs. Pure: the table of rules is read here.
pub fn assess(user_id: Uuid, needs: &[Need], held: &[RolePrivilege]) -> PrivilegeReport {
    let depth_of = |name: &str| {
        held.iter()
            .filter(|p| p.name.eq_ignore_ascii_case(name))
            .map(|p| p.depth)
            .filter(|d| *d != PrivilegeDepth::Other)
            .max()
    };
    let mut missing = Vec::new();
    for need in needs {
        let privilege = need.privilege();
        let held = depth_of(&privilege);
        let table = &need.table;
        let verb = need.access.verb();
        let message = match held {
            Some(PrivilegeDepth::Global) => continue,
            None => format!(
                "{privilege} is missing: {}. Ask HLF IT to give the application user's security role {verb} on the \
                 {table} table at Organization level.",
                need.why
            ),
            Some(depth) => format!(
                "{privilege} is held at {} level only, so the sync would see or change only some rows: {}. Ask HLF \
                 IT to raise {verb} on the {table} table to Organization level in the security role.",
                depth.role_editor_name(),
                need.why
            ),
        };
        missing.push(PrivilegeFinding {
            privilege,
            table: table.clone(),
            access: need.access,
            held,
            message,
        });
    }
    let mut excess: Vec<PrivilegeFinding> = Vec::new();
    for privilege in held {
        let Some((access, table)) = Access::of(&privilege.name) else {
            continue;
        };
        let needed = needs
            .iter()
            .any(|n| n.access == access && n.table.eq_ignore_ascii_case(&table));
        let matters = match access {
            Access::Delete | Access::Assign | Access::Share => true,
            Access::Create | Access::Write => true,
            Access::Read | Access::Append => false,
        };
        if needed || !matters || excess.iter().any(|e| e.privilege.eq_ignore_ascii_case(&privilege.name)) {
            continue;
        }
        let what = match access {
            Access::Delete => "the sync never deletes rows",
            Access::Assign => "the sync never assigns rows to another owner",
            Access::Share => "the sync never shares rows",
            Access::Create if needs.iter().any(|n| n.table.eq_ignore_ascii_case(&table)) => {
                "the sync never creates rows in this table"
            }
            _ => "the sync never writes this table",
        };
        excess.push(PrivilegeFinding {
            privilege: privilege.name.clone(),
            table: table.clone(),
            access,
            held: Some(privilege.depth),
            message: format!(
                "{} is more than the sync needs: {what}. HLF IT can remove {} on the {table} table from the \
                 security role.",
                privilege.name,
                access.verb()
            ),
        });
    }
    excess.sort_by(|a, b| (&a.table, a.access).cmp(&(&b.table, b.access)));
    PrivilegeReport {
        user_id,
        needed: needs.len(),
        missing,
        excess,
    }
}

/// Reads the application user's privileges from Dynamics (two requests: `WhoAmI`, `RetrieveUserPrivileges`) and
/// assesses them.
pub async fn check_privileges(client: &DynamicsClient, needs: &[Need]) -> dynamics_client::Result<PrivilegeReport> {
    let me = client.who_am_i().await?;
    let held = client.user_privileges(me.user_id).await?;
    Ok(assess(me.user_id, needs, &held))
}

impl fmt::Display for PrivilegeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.missing.is_empty() {
            writeln!(
                f,
                "  the application user ({}) holds all {} privileges the sync needs, at Organization level",
                self.user_id, self.needed
            )?;
        }
        for finding in &self.missing {
            writeln!(f, "  error: {}", finding.message)?;
        }
        for finding in &self.excess {
            writeln!(f, "  warning: {}", finding.message)?;
        }
        if self.excess.is_empty() {
            writeln!(f, "  nothing more than it needs")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(privileges: &[(&str, PrivilegeDepth)]) -> Vec<RolePrivilege> {
        privileges
            .iter()
            .map(|(name, depth)| RolePrivilege {
                name: (*name).to_owned(),
                depth: *depth,
            })
            .collect()
    }

    fn mapping() -> FieldMapping {
        FieldMapping::from_toml(field_mapping::HLF_DEFAULT_MAPPING).unwrap()
    }

    use PrivilegeDepth::{Basic, Global, Local};

    #[test]
    fn the_default_mapping_needs_read_and_write_on_contact_and_postings_only_with_accounting() {
        let names = |accounting| -> Vec<String> { needs(&mapping(), accounting).iter().map(Need::privilege).collect() };
        assert_eq!(names(false), ["prvReadContact", "prvWriteContact"]);
        assert_eq!(
            names(true),
            [
                "prvReadContact",
                "prvWriteContact",
                "prvCreatehlf_posting",
                "prvReadhlf_posting",
                "prvWritehlf_posting"
            ]
        );
    }

    #[test]
    fn each_role_is_judged_by_the_table_of_rules() {
        let user = Uuid::nil();
        let needs = needs(&mapping(), true);
        // (role, missing privileges, excess privileges)
        let minimal = [
            ("prvReadContact", Global),
            ("prvWriteContact", Global),
            ("prvCreatehlf_posting", Global),
            ("prvReadhlf_posting", Global),
            ("prvWritehlf_posting", Global),
        ];
        type Case<'a> = (Vec<(&'a str, PrivilegeDepth)>, Vec<&'a str>, Vec<&'a str>);
        let cases: Vec<Case<'_>> = vec![
            (minimal.to_vec(), vec![], vec![]),
            // Other reads and being linked to are not reported.
            (
                [
                    &minimal[..],
                    &[("prvReadAccount", Global), ("prvAppendToContact", Global)],
                ]
                .concat(),
                vec![],
                vec![],
            ),
            // Write on contact missing; read only at user depth.
            (
                vec![
                    ("prvReadContact", Basic),
                    ("prvCreatehlf_posting", Global),
                    ("prvReadhlf_posting", Global),
                    ("prvWritehlf_posting", Global),
                ],
                vec!["prvReadContact", "prvWriteContact"],
                vec![],
            ),
            // A deeper grant of the same privilege through a second role wins.
            ([&minimal[..], &[("prvReadContact", Local)]].concat(), vec![], vec![]),
            // System Administrator-like extras.
            (
                [
                    &minimal[..],
                    &[
                        ("prvDeleteContact", Global),
                        ("prvCreateContact", Global),
                        ("prvAssignContact", Global),
                        ("prvShareContact", Local),
                        ("prvWriteAccount", Global),
                        ("prvDeletehlf_posting", Global),
                    ],
                ]
                .concat(),
                vec![],
                vec![
                    "prvWriteAccount",
                    "prvCreateContact",
                    "prvDeleteContact",
                    "prvAssignContact",
                    "prvShareContact",
                    "prvDeletehlf_posting",
                ],
            ),
        ];
        for (held, missing, excess) in cases {
            let report = assess(user, &needs, &role(&held));
            let names = |f: &[PrivilegeFinding]| f.iter().map(|f| f.privilege.clone()).collect::<Vec<_>>();
            assert_eq!(names(&report.missing), missing, "{held:?}");
            assert_eq!(names(&report.excess), excess, "{held:?}");
            assert_eq!(report.sufficient(), missing.is_empty());
        }
    }

    #[test]
    fn messages_name_the_privilege_and_the_role_change() {
        let needs = needs(&mapping(), false);
        let report = assess(
            Uuid::nil(),
            &needs,
            &role(&[
                ("prvReadContact", Basic),
                ("prvDeleteContact", Global),
                ("prvCreateContact", Global),
            ]),
        );
        let text = report.to_string();
        for expected in [
            "error: prvReadContact is held at User level only",
            "raise Read on the contact table to Organization level",
            "error: prvWriteContact is missing",
            "give the application user's security role Write on the contact table at Organization level",
            "warning: prvDeleteContact is more than the sync needs: the sync never deletes rows",
            "warning: prvCreateContact is more than the sync needs: the sync never creates rows in this table",
        ] {
            assert!(text.contains(expected), "{expected}\n{text}");
        }
    }
}
