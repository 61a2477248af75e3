//! `run`, `daemon`, `plan`, `reconcile`, `serve` and `export-csv`: load the configuration, open the store, build
//! each organisation's client and service (or exporter), and report or serve the dashboard. The work itself is the
//! crates'.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use csv_fallback::{CsvExporter, ExportKind};
use dynamics_client::{ClientOptions, DynamicsClient};
use integration_config::{ExposeSecret, IntegrationConfig};
use sync_engine::{SyncService, SystemClock};
use sync_store::{RunStatus, Store};

use crate::summary::run_table;

/// Which organisations a command works on.
#[derive(Debug, clap::Args)]
pub(crate) struct OrgArgs {
    /// Only this organisation (its `id` in the configuration); all of them when omitted.
    #[arg(long, value_name = "ID")]
    org: Option<String>,
}

/// Which organisations `plan` covers and what it shows.
#[derive(Debug, clap::Args)]
pub(crate) struct PlanArgs {
    #[command(flatten)]
    orgs: OrgArgs,
    /// Show the values each change would write. They are personal data (names, e-mail addresses, phone numbers):
    /// by default only field names, member numbers and app ids are printed.
    #[arg(long)]
    values: bool,
}

/// Which organisations `export-postings` covers, and whether it only shows what it would do.
#[derive(Debug, clap::Args)]
pub(crate) struct ExportPostingsArgs {
    #[command(flatten)]
    orgs: OrgArgs,
    /// Show which postings an export would send now and reconcile the ones exported before (both read only);
    /// write nothing to Dynamics or the store.
    #[arg(long)]
    dry_run: bool,
}

/// What `export-csv` writes, and where.
#[derive(Debug, clap::Args)]
pub(crate) struct ExportCsvArgs {
    /// The organisation to export (its `id` in the configuration).
    #[arg(long, value_name = "ID")]
    org: String,
    /// The directory to write into; created when missing.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// `full`: every mentor. `delta`: only mentors whose values Dynamics has not confirmed through the API since
    /// their last successful sync (and mentors never synced).
    #[arg(long, value_enum, default_value = "full")]
    kind: KindArg,
}

/// The export kinds as the command line spells them.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum KindArg {
    Full,
    Delta,
}

/// Writes one organisation's CSV export and lists the files. Exit 0 when written, also when some mentors went to
/// the errors file (they are named on the output); 1 when nothing could be written.
pub(crate) async fn export_csv(config: &IntegrationConfig, args: &ExportCsvArgs) -> anyhow::Result<ExitCode> {
    let organisation = config
        .organisations
        .iter()
        .find(|o| o.id == args.org)
        .ok_or_else(|| crate::UnknownOrganisation(args.org.clone()))?;
    let store = Store::connect(config.store.url.expose_secret())
        .await
        .with_context(|| format!("opening the sync store {}", config.store.redacted_url()))?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating the directory {}", args.out.display()))?;
    let exporter = CsvExporter::new(
        organisation,
        Arc::new(store.clone()),
        store.clone(),
        Arc::new(SystemClock),
        None,
    )
    .with_context(|| format!("setting up the CSV export of organisation {}", organisation.id))?;
    let kind = match args.kind {
        KindArg::Full => ExportKind::Full,
        KindArg::Delta => ExportKind::Delta,
    };
    let (export, paths) = exporter
        .export_to(kind, &args.out)
        .await
        .with_context(|| format!("exporting organisation {}", organisation.id))?;
    store.close().await;
    for (file, path) in export.files.iter().zip(&paths) {
        println!("wrote {} ({})", path.display(), count(file.rows, "mentor"));
    }
    println!(
        "{} to import; {} already as Dynamics last confirmed them",
        count(export.rows(), "mentor"),
        export.mentors_unchanged
    );
    if let (Some(errors), Some(path)) = (&export.errors_file, paths.last()) {
        let mentors: std::collections::BTreeSet<&str> = export.problems.iter().map(|p| p.mentor_id.as_str()).collect();
        println!(
            "wrote {} ({}): {} cannot be imported; fix them in the app and export again",
            path.display(),
            count(errors.rows, "problem"),
            count(mentors.len(), "mentor")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `1 mentor`, `2 mentors`.
fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// One service per selected organisation, sharing one store.
async fn services(config: &IntegrationConfig, args: &OrgArgs) -> anyhow::Result<Vec<SyncService>> {
    Ok(store_and_services(config, args).await?.1)
}

/// An organisation's Dynamics client with the configuration's rate limit, retries and page size.
pub(crate) fn dynamics_client_for(
    config: &IntegrationConfig,
    organisation: &integration_config::OrganisationConfig,
) -> anyhow::Result<DynamicsClient> {
    DynamicsClient::for_organisation(
        organisation,
        ClientOptions {
            rate_limit: config.rate_limit.clone(),
            retry: config.retry.clone(),
            page_size: config.sync.page_size,
            ..ClientOptions::default()
        },
    )
    .with_context(|| format!("building the Dynamics client of organisation {}", organisation.id))
}

/// The store and one service per selected organisation on it.
async fn store_and_services(config: &IntegrationConfig, args: &OrgArgs) -> anyhow::Result<(Store, Vec<SyncService>)> {
    let store = Store::connect(config.store.url.expose_secret())
        .await
        .with_context(|| format!("opening the sync store {}", config.store.redacted_url()))?;
    let mut services = Vec::new();
    for organisation in &config.organisations {
        if args.org.as_deref().is_some_and(|id| id != organisation.id) {
            continue;
        }
        let client = dynamics_client_for(config, organisation)?;
        let service = SyncService::new(
            organisation,
            config,
            client,
            Arc::new(store.clone()),
            store.clone(),
            Arc::new(SystemClock),
        )
        .with_context(|| format!("setting up the sync of organisation {}", organisation.id))?;
        services.push(service);
    }
    if services.is_empty() {
        return Err(crate::UnknownOrganisation(args.org.clone().unwrap_or_default()).into());
    }
    Ok((store, services))
}

/// `serve` would listen off loopback in plain HTTP without a TLS proxy declared: a configuration error.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct ClearText(pub(crate) String);

/// Serves the dashboard on `dashboard.bind` until SIGTERM or Ctrl-C, in HTTPS when `dashboard.tls_cert_file` is set.
/// Refuses to start without the admin credential, with a weak one, or in plain HTTP off loopback without
/// `dashboard.behind_tls_proxy`.
pub(crate) async fn serve(config: &IntegrationConfig) -> anyhow::Result<ExitCode> {
    if config.dashboard.auth.is_none() {
        // Checked before anything is opened, so the message is the first thing an operator sees.
        return Err(dashboard::Error::NoCredential {
            variable: config.dashboard.credential_env.clone(),
        }
        .into());
    }
    if let Some(problem) = config.dashboard.clear_text_problem() {
        return Err(ClearText(problem).into());
    }
    // A bad certificate or key is found before anything listens.
    let tls = config
        .dashboard
        .tls
        .as_ref()
        .map(dashboard::ServerTls::load)
        .transpose()?;
    let (store, services) = store_and_services(config, &OrgArgs { org: None }).await?;
    let dashboard = dashboard::Dashboard::new(config.clone(), store, services, dashboard::DashboardOptions::default())?;
    let bind = config.dashboard.bind;
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("listening on {bind} (dashboard.bind) for the dashboard"))?;
    let address = listener.local_addr()?;
    match tls {
        Some(tls) => {
            println!("dashboard listening on https://{address}/ (Ctrl-C or SIGTERM stops it)");
            dashboard.serve_tls(listener, tls, wait_for_signal()).await
        }
        None => {
            let behind = if address.ip().is_loopback() {
                ""
            } else {
                " behind the TLS proxy"
            };
            println!("dashboard listening on http://{address}/{behind} (Ctrl-C or SIGTERM stops it)");
            dashboard.serve(listener, wait_for_signal()).await
        }
    }
    .context("serving the dashboard")?;
    Ok(ExitCode::SUCCESS)
}

/// Runs one sync per organisation, then (with `[accounting] enabled`) its posting export. Exit 0 when every run
/// succeeded or only queued failed records, 1 when a run or an export failed as a whole; a run skipped because
/// another holds the lock is not a failure.
pub(crate) async fn run(config: &IntegrationConfig, args: &OrgArgs) -> anyhow::Result<ExitCode> {
    let mut failed = false;
    let (store, services) = store_and_services(config, args).await?;
    for service in &services {
        let org = service.organisation_id().to_owned();
        match run_with_progress(service).await {
            Ok(report) => {
                print!("{}", run_table(&format!("organisation {org}"), &report));
                // Schema drift held back every write to Dynamics: the run could not do its job (an expired
                // certification stays on the public site), so the scheduler must see it.
                failed |= report.status == RunStatus::Failed || !report.drift.is_empty();
            }
            Err(sync_engine::Error::AlreadyRunning { organisation, holder }) => {
                println!(
                    "organisation {organisation}: skipped, another run holds the lock{}",
                    holder.map(|h| format!(" ({h})")).unwrap_or_default()
                );
                continue;
            }
            Err(e) => return Err(e).with_context(|| format!("the sync of organisation {org}")),
        }
        if config.accounting.enabled {
            failed |= !export_postings_after_sync(config, &store, service).await?;
        }
    }
    crate::monitor::after_runs(config, &organisation_ids(&services)).await;
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// The accounting export of one organisation after its sync, printed as one line. False when it failed as a whole
/// (recorded in the run log and shown by health-check either way).
async fn export_postings_after_sync(
    config: &IntegrationConfig,
    store: &Store,
    service: &SyncService,
) -> anyhow::Result<bool> {
    let run = posting_exporter(config, store, service)?.run().await.with_context(|| {
        format!(
            "recording the posting export of organisation {}",
            service.organisation_id()
        )
    })?;
    println!("{}", posting_line(service.organisation_id(), &run));
    Ok(run.status != RunStatus::Failed)
}

/// The accounting exporter of a service's organisation, on the same client (its credentials and rate budget).
fn posting_exporter(
    config: &IntegrationConfig,
    store: &Store,
    service: &SyncService,
) -> anyhow::Result<accounting_export::AccountingExporter> {
    let org = service.organisation_id();
    let organisation = config
        .organisation(org)
        .ok_or_else(|| crate::UnknownOrganisation(org.to_owned()))?;
    accounting_export::AccountingExporter::new(
        organisation,
        config,
        service.client().clone(),
        Arc::new(store.clone()),
        store.clone(),
        Arc::new(SystemClock),
    )
    .with_context(|| format!("setting up the posting export of organisation {org}"))
}

/// `postings of hlf: 12 exported, 0 failed, 0 held; reconciled 40: 0 missing in Dynamics, 0 with another amount`.
fn posting_line(org: &str, run: &accounting_export::PostingRun) -> String {
    let m = &run.metrics;
    match &run.error {
        Some(error) => format!(
            "postings of {org}: export failed ({error}); {} exported before it stopped. Nothing is lost: the next \
             export sends the rest",
            m.exported
        ),
        None => format!(
            "postings of {org}: {} exported, {} failed, {} held; reconciled {}: {} missing in Dynamics, {} with another \
             amount{}",
            m.exported,
            m.failed,
            m.held,
            m.checked,
            m.missing,
            m.differing,
            if m.sample.is_empty() {
                String::new()
            } else {
                format!(" (posting ids {})", m.sample.join(", "))
            }
        ),
    }
}

/// `export-postings`: the accounting export alone, or with `--dry-run` what it would do. Exit 0 when it finished
/// (also with postings queued as failed), 1 when it failed as a whole, 3 when `[accounting]` is off.
pub(crate) async fn export_postings(config: &IntegrationConfig, args: &ExportPostingsArgs) -> anyhow::Result<ExitCode> {
    if !config.accounting.enabled {
        return Err(crate::AccountingOff.into());
    }
    let (store, services) = store_and_services(config, &args.orgs).await?;
    let mut failed = false;
    for service in &services {
        let org = service.organisation_id();
        let exporter = posting_exporter(config, &store, service)?;
        if !args.dry_run {
            let run = exporter
                .run()
                .await
                .with_context(|| format!("recording the posting export of organisation {org}"))?;
            println!("{}", posting_line(org, &run));
            failed |= run.status == RunStatus::Failed;
            continue;
        }
        let plan = exporter
            .plan()
            .await
            .with_context(|| format!("planning the posting export of organisation {org}"))?;
        let found = exporter
            .reconcile()
            .await
            .with_context(|| format!("reconciling the postings of organisation {org}"))?;
        println!(
            "postings of {org} (dry run, nothing written): {} would be exported, {} would be queued as failed, {} held",
            plan.ready.len(),
            plan.invalid.len(),
            plan.held
        );
        for (id, reason) in &plan.invalid {
            println!("  posting {id}: {reason}");
        }
        println!(
            "  reconciled {}: {} missing in Dynamics, {} with another amount",
            found.checked,
            found.missing.len(),
            found.differing.len()
        );
        for id in found.missing.iter().take(50) {
            println!("  posting {id}: missing in Dynamics");
        }
        for d in found.differing.iter().take(50) {
            println!("  posting {}: another amount in Dynamics", d.posting_id);
        }
    }
    if !args.dry_run {
        crate::monitor::after_runs(config, &organisation_ids(&services)).await;
    }
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// Whose data `forget` removes.
#[derive(Debug, clap::Args)]
pub(crate) struct ForgetArgs {
    /// The organisation (its `id` in the configuration).
    #[arg(long, value_name = "ID")]
    org: String,
    /// The member number of the person whose data is to be erased.
    #[arg(long, value_name = "NUMBER")]
    member: String,
    /// Also an app id of theirs that the sync state may hold without their member number (a mentor never linked);
    /// repeat for several.
    #[arg(long = "mentor", value_name = "APP_ID")]
    mentors: Vec<String>,
}

/// `forget`: an erasure request's part in the sync state. Refuses while the app still has a mentor with that member
/// number (the next run would sync them again).
pub(crate) async fn forget(config: &IntegrationConfig, args: &ForgetArgs) -> anyhow::Result<ExitCode> {
    if config.organisation(&args.org).is_none() {
        return Err(crate::UnknownOrganisation(args.org.clone()).into());
    }
    let store = Store::connect(config.store.url.expose_secret())
        .await
        .with_context(|| format!("opening the sync store {}", config.store.redacted_url()))?;
    if let Some(mentor) = sync_store::AppStore::mentor_by_member_number(&store, &args.org, &args.member).await? {
        anyhow::bail!(
            "the app still has mentor {} with this member number; remove them from the app first (the next run would \
             sync them again), then run forget",
            mentor.mentor.id
        );
    }
    let report = store
        .forget_member(&args.org, &args.member, &args.mentors, chrono::Utc::now())
        .await
        .context("removing the member's data from the sync state")?;
    store.close().await;
    if report == sync_store::ForgetReport::default() {
        println!(
            "the sync state of organisation {} holds nothing of this member",
            args.org
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "removed from the sync state of organisation {} (app ids {}):",
        args.org,
        report.mentors.join(", ")
    );
    for (n, what) in [
        (report.links, "links with their last agreed values"),
        (report.failures, "failed records"),
        (report.conflicts, "conflicts"),
        (report.notifications, "notifications"),
        (report.cache_entries, "certification-cache entries"),
    ] {
        println!("  {n:>4} {what}");
    }
    if report.contacts_to_hide > 0 {
        println!(
            "  {:>4} Dynamics contacts queued to be hidden from the public site by the next run (their ids only)",
            report.contacts_to_hide
        );
    }
    println!(
        "Run logs and resolved alerts name mentors by app id only and go with retention ({} days). The member's \
         contact in Dynamics is HLF's to erase there.",
        config.retention.period.as_secs() / 86_400
    );
    Ok(ExitCode::SUCCESS)
}

/// What `purge` does.
#[derive(Debug, clap::Args)]
pub(crate) struct PurgeArgs {
    /// Count what would be deleted, deleting nothing.
    #[arg(long)]
    dry_run: bool,
}

/// `purge`: retention now, as `run` does after its syncs; with `--dry-run`, only the counts.
pub(crate) async fn purge(config: &IntegrationConfig, args: &PurgeArgs) -> anyhow::Result<ExitCode> {
    let store = Store::connect(config.store.url.expose_secret())
        .await
        .with_context(|| format!("opening the sync store {}", config.store.redacted_url()))?;
    let cutoff = crate::monitor::retention_cutoff(config).context("the retention period is too long")?;
    let days = config.retention.period.as_secs() / 86_400;
    let report = if args.dry_run {
        store.purge_preview(cutoff).await?
    } else {
        store.purge(cutoff).await?
    };
    println!(
        "retention {days} days: {} {} rows from before {}",
        if args.dry_run { "would delete" } else { "deleted" },
        report.total(),
        cutoff.format("%Y-%m-%d %H:%M UTC")
    );
    for rule in sync_store::RETENTION_RULES {
        println!(
            "  {:>6} {}: {}",
            report.rows.get(rule.kind).copied().unwrap_or(0),
            rule.kind,
            rule.what
        );
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}

/// Prints every change a run would make, writing nothing.
pub(crate) async fn plan(config: &IntegrationConfig, args: &PlanArgs) -> anyhow::Result<ExitCode> {
    for service in services(config, &args.orgs).await? {
        let mut plan = service
            .plan()
            .await
            .with_context(|| format!("planning the sync of organisation {}", service.organisation_id()))?;
        if args.values {
            plan = plan.with_values();
        }
        // The plan's lines end with a line break of their own.
        println!(
            "organisation {}: {}",
            service.organisation_id(),
            plan.to_string().trim_end()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Compares every linked record and prints the divergence.
pub(crate) async fn reconcile(config: &IntegrationConfig, args: &OrgArgs) -> anyhow::Result<ExitCode> {
    for service in services(config, args).await? {
        let report = service
            .reconcile()
            .await
            .with_context(|| format!("reconciling organisation {}", service.organisation_id()))?;
        let d = report.divergence;
        println!(
            "organisation {}: {} compared, {} differ in {} fields; {} not linked",
            service.organisation_id(),
            count(
                usize::try_from(d.records_compared).unwrap_or(usize::MAX),
                "linked record"
            ),
            d.records_differing,
            d.fields_differing,
            count(usize::try_from(report.unlinked_mentors).unwrap_or(usize::MAX), "mentor")
        );
        // Member numbers and field names only: the values are personal data and belong on the dashboard.
        for difference in report.differences.iter().take(50) {
            println!("  member {}: {} differs", difference.member_number, difference.field);
        }
        if report.differences.len() > 50 {
            println!("  ... and {} more", report.differences.len() - 50);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs on the configured schedule until SIGTERM or Ctrl-C. A signal during a run lets it finish its current page,
/// save what that page covered, and exit 0; the next start continues from there.
pub(crate) async fn daemon(config: &IntegrationConfig, args: &OrgArgs) -> anyhow::Result<ExitCode> {
    let stop = Arc::new(AtomicBool::new(false));
    let services: Vec<SyncService> = services(config, args)
        .await?
        .into_iter()
        .map(|s| s.with_stop(stop.clone()))
        .collect();
    let shutdown = Arc::new(tokio::sync::Notify::new());
    let running = Arc::new(AtomicBool::new(false));
    {
        let (stop, shutdown, running) = (stop.clone(), shutdown.clone(), running.clone());
        // Registered before "next run at" is printed: a SIGTERM that follows the line must find the handler in
        // place, or it would kill the process instead of stopping it cleanly.
        let signals = Signals::register();
        tokio::spawn(async move {
            signals.wait().await;
            if running.load(Ordering::SeqCst) {
                tracing::info!("shutdown requested; finishing the current page of the run in progress");
            } else {
                tracing::info!("shutdown requested; no run in progress, stopping now");
            }
            stop.store(true, Ordering::SeqCst);
            // One waiter, the loop below; notify_one keeps the wake-up for it if it is not waiting yet.
            shutdown.notify_one();
        });
    }
    let store = Store::connect(config.store.url.expose_secret())
        .await
        .with_context(|| format!("opening the sync store {}", config.store.redacted_url()))?;
    loop {
        let next = config.schedule.next_after(chrono::Utc::now());
        println!("next run at {}", when(&config.schedule, next));
        // Between runs, wake every few minutes to send notifications whose retry is due.
        loop {
            let wait = (next - chrono::Utc::now()).to_std().unwrap_or_default();
            if wait.is_zero() {
                break;
            }
            tokio::select! {
                () = tokio::time::sleep(wait.min(DELIVERY_INTERVAL)) => {}
                () = shutdown.notified() => return Ok(ExitCode::SUCCESS),
            }
            crate::monitor::deliver(config, &store).await;
        }
        for service in &services {
            running.store(true, Ordering::SeqCst);
            let outcome = run_with_progress(service).await;
            running.store(false, Ordering::SeqCst);
            let synced = match outcome {
                Ok(report) => {
                    print!(
                        "{}",
                        run_table(&format!("organisation {}", service.organisation_id()), &report)
                    );
                    true
                }
                Err(sync_engine::Error::AlreadyRunning { organisation, .. }) => {
                    println!("organisation {organisation}: skipped, another run holds the lock");
                    false
                }
                // A run that fails is recorded in the run log and alerted on; the daemon keeps its schedule.
                Err(e) => {
                    tracing::error!(org = %service.organisation_id(), error = %format!("{e:#}"), "sync run failed");
                    true
                }
            };
            // Like a failed run, a failed export is in the run log and on the dashboard; the daemon goes on.
            if synced
                && config.accounting.enabled
                && !stop.load(Ordering::SeqCst)
                && let Err(e) = export_postings_after_sync(config, &store, service).await
            {
                tracing::error!(org = %service.organisation_id(), error = %format!("{e:#}"), "posting export failed");
            }
            if stop.load(Ordering::SeqCst) {
                return Ok(ExitCode::SUCCESS);
            }
        }
        crate::monitor::after_runs(config, &organisation_ids(&services)).await;
    }
}

/// When the next run is, in the schedule's own time zone with its abbreviation (`2026-12-02 02:00 CET`) and in UTC;
/// an interval schedule has no zone of its own, so UTC alone.
fn when(schedule: &integration_config::Schedule, at: chrono::DateTime<chrono::Utc>) -> String {
    match schedule {
        integration_config::Schedule::Nightly { time_zone, .. } => format!(
            "{} ({} UTC)",
            at.with_timezone(time_zone).format("%Y-%m-%d %H:%M %Z"),
            at.format("%H:%M")
        ),
        integration_config::Schedule::Every(_) => format!("{} UTC", at.format("%Y-%m-%d %H:%M")),
    }
}

/// One run, with a progress line on a terminal.
async fn run_with_progress(service: &SyncService) -> sync_engine::Result<sync_engine::RunReport> {
    let (service, bar) = crate::progress::attach(service.clone());
    let outcome = service.run().await;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    outcome
}

/// How often the daemon delivers due notifications between runs.
const DELIVERY_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5 * 60);

fn organisation_ids(services: &[SyncService]) -> Vec<String> {
    services.iter().map(|s| s.organisation_id().to_owned()).collect()
}

/// Waits for SIGTERM or Ctrl-C (for `serve`).
pub(crate) async fn wait_for_signal() {
    Signals::register().wait().await;
}

/// The shutdown signals (SIGTERM where there is one, and Ctrl-C), registered when made.
struct Signals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn register() -> Self {
        Signals {
            #[cfg(unix)]
            term: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok(),
        }
    }

    async fn wait(self) {
        #[cfg(unix)]
        if let Some(mut term) = self.term {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}
