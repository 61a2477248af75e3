//! The dry run's output: every change a run would make, written nowhere.

use std::fmt;

use field_mapping::AppValue;

/// One change a run would make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanItem {
    /// Columns that would be written to a Dynamics contact.
    WriteDynamics {
        /// The contact's member number.
        member_number: String,
        /// Field and new value, in mapping order.
        changes: Vec<(String, String)>,
    },
    /// Fields that would be written into the app.
    WriteApp {
        /// The mentor's app id.
        mentor_id: String,
        /// Field and new value.
        changes: Vec<(String, String)>,
    },
    /// A conflict that would wait for an admin.
    Conflict {
        /// The mentor's app id.
        mentor_id: String,
        /// The field.
        field: String,
    },
    /// A contact deleted in Dynamics that would end the mentor's membership or unlink them.
    Deletion {
        /// The mentor's app id.
        mentor_id: String,
    },
    /// A record a run would queue in the failed-record queue instead of syncing (no contact with the member
    /// number, a value Dynamics would refuse).
    Failure {
        /// The mentor's app id.
        mentor_id: String,
        /// Why, as the failed-record queue would say it.
        reason: String,
    },
}

/// Every change a run would make. Displayed, it names field names and ids only, unless [`Plan::with_values`] asks
/// for the values too (they are personal data: names, e-mail addresses, phone numbers).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// The changes, in the order the run would make them.
    pub items: Vec<PlanItem>,
    /// Schema drift that holds back every write to Dynamics (a run would write nothing there until it is fixed).
    pub drift: Vec<String>,
    /// Whether the display shows the values written.
    pub show_values: bool,
}

impl Plan {
    /// The same plan, displayed with the values each change writes.
    pub fn with_values(mut self) -> Self {
        self.show_values = true;
        self
    }

    /// How many Dynamics contacts would be written.
    pub fn dynamics_writes(&self) -> usize {
        self.items
            .iter()
            .filter(|i| matches!(i, PlanItem::WriteDynamics { .. }))
            .count()
    }

    /// How many app records would be written.
    pub fn app_writes(&self) -> usize {
        self.items
            .iter()
            .filter(|i| matches!(i, PlanItem::WriteApp { .. }))
            .count()
    }
}

/// A value as the plan prints it.
pub(crate) fn show(value: &AppValue) -> String {
    match value {
        AppValue::Null => "(empty)".to_owned(),
        AppValue::Text(t) | AppValue::Choice(t) => t.clone(),
        AppValue::Bool(b) => if *b { "yes" } else { "no" }.to_owned(),
        AppValue::Date(d) => d.to_string(),
        AppValue::DateTime(t) => t.to_rfc3339(),
        AppValue::Decimal(n) => n.to_string(),
        AppValue::Reference(id) => id.to_string(),
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.drift.is_empty() {
            writeln!(
                f,
                "writes to Dynamics are held back by schema drift until the mapping or the table is fixed: {}",
                self.drift.join("; ")
            )?;
        }
        if self.items.is_empty() {
            return f.write_str(if self.drift.is_empty() {
                "nothing to do: both sides agree"
            } else {
                "nothing else to do"
            });
        }
        let held = if self.drift.is_empty() {
            ""
        } else {
            " (held back while the schema drifts)"
        };
        let failures = self
            .items
            .iter()
            .filter(|i| matches!(i, PlanItem::Failure { .. }))
            .count();
        writeln!(
            f,
            "{} Dynamics contact(s){held} and {} app record(s) would be written{}:",
            self.dynamics_writes(),
            self.app_writes(),
            match failures {
                0 => String::new(),
                1 => "; 1 record would be queued as failed".to_owned(),
                n => format!("; {n} records would be queued as failed"),
            }
        )?;
        let changes = |changes: &[(String, String)]| -> String {
            let list: Vec<String> = changes
                .iter()
                .map(|(k, v)| {
                    if self.show_values {
                        format!("{k} = {v}")
                    } else {
                        k.clone()
                    }
                })
                .collect();
            list.join(", ")
        };
        for item in &self.items {
            match item {
                PlanItem::WriteDynamics {
                    member_number,
                    changes: c,
                } => {
                    writeln!(f, "  Dynamics contact of member {member_number}: {}", changes(c))?;
                }
                PlanItem::WriteApp { mentor_id, changes: c } => {
                    writeln!(f, "  app mentor {mentor_id}: {}", changes(c))?;
                }
                PlanItem::Conflict { mentor_id, field } => {
                    writeln!(f, "  conflict on mentor {mentor_id}, field {field}: held for an admin")?;
                }
                PlanItem::Failure { mentor_id, reason } => {
                    writeln!(f, "  app mentor {mentor_id}: would be queued as failed: {reason}")?;
                }
                PlanItem::Deletion { mentor_id } => {
                    writeln!(
                        f,
                        "  app mentor {mentor_id}: contact deleted in Dynamics, membership ended and unlinked"
                    )?;
                }
            }
        }
        Ok(())
    }
}
