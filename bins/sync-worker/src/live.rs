//! `config check --live`: the configuration against the live Dynamics instance, reading only. For each selected
//! organisation, each table the sync uses is read from the metadata and checked against the field mapping (the
//! same check every run makes before it writes), and the application user's privileges against what the mapping
//! needs.

use std::fmt::Write as _;

use anyhow::Context;
use integration_config::IntegrationConfig;

/// What the live check found across the organisations.
pub(crate) struct LiveCheck {
    /// The printed report.
    pub(crate) text: String,
    /// Whether the mapping or the role does not fit (drift, a missing privilege).
    pub(crate) misfit: bool,
}

/// Runs the live check. Errors when Dynamics cannot be reached or refuses the credentials.
pub(crate) async fn check(config: &IntegrationConfig, org: Option<&str>) -> anyhow::Result<LiveCheck> {
    let mut text = String::new();
    let mut misfit = false;
    let organisations: Vec<_> = config
        .organisations
        .iter()
        .filter(|o| org.is_none_or(|id| id == o.id))
        .collect();
    if organisations.is_empty() {
        return Err(crate::UnknownOrganisation(org.unwrap_or_default().to_owned()).into());
    }
    for organisation in organisations {
        let id = &organisation.id;
        let client = crate::commands::dynamics_client_for(config, organisation)?;
        let _ = writeln!(
            text,
            "live check of organisation {id} ({}) against {}:",
            organisation.name, organisation.credentials.instance_url
        );
        let records = organisation
            .mapping
            .records()
            .filter(|r| r.kind() == "mentor" || (r.kind() == "posting" && config.accounting.enabled));
        for record in records {
            let columns: Vec<String> = record.fields().iter().map(|f| f.column.clone()).collect();
            let table = client
                .table_metadata_for(record.table(), &columns)
                .await
                .with_context(|| format!("reading the metadata of table {} for organisation {id}", record.table()))?;
            let drift = record.check_schema(&table);
            let tracking = if table.change_tracking {
                "change tracking on"
            } else {
                "change tracking off (runs fall back to the modifiedon watermark)"
            };
            if drift.is_empty() {
                let _ = writeln!(
                    text,
                    "  table {}: the {} mapped columns match the live metadata; {tracking}",
                    record.table(),
                    columns.len()
                );
            } else {
                misfit = true;
                let _ = writeln!(
                    text,
                    "  table {}: {} difference(s) from the mapping; every run would write nothing to Dynamics until \
                     they are fixed ({tracking}):",
                    record.table(),
                    drift.len()
                );
                for item in &drift {
                    let _ = writeln!(text, "    {item}");
                }
            }
        }
        let needs = health_monitor::needs(&organisation.mapping, config.accounting.enabled);
        let privileges = health_monitor::check_privileges(&client, &needs)
            .await
            .with_context(|| format!("reading the privileges of organisation {id}'s application user"))?;
        misfit |= !privileges.sufficient();
        let _ = writeln!(text, "  privileges:");
        for line in privileges.to_string().lines() {
            let _ = writeln!(text, "  {line}");
        }
    }
    Ok(LiveCheck { text, misfit })
}
