//! The sync wired exactly as `sync-worker` wires it (configuration loaded from TOML and an environment, the Azure AD
//! credential, `DynamicsClient::for_organisation`, SQLite `Store`, `SyncService`), pointed at a running emulator,
//! plus what a benchmark needs around it: the app's mentors, edits made "by someone else" in Dynamics, the emulator's
//! counters, and a measured phase.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use dynamics_client::{ClientMetrics, ClientOptions, DynamicsClient};
use integration_config::{ExposeSecret, IntegrationConfig, OrganisationConfig};
use serde::{Deserialize, Serialize};
use sync_engine::{Clock, SyncService};
use sync_store::{AppStore, Certification, Mentor, Store};

use crate::measure::{Cost, Probe};

/// The organisation every scenario syncs.
pub(crate) const ORGANISATION: &str = "hlf";
/// The emulator's generator numbers contacts from this member number; the first `mentors` of them are mentors.
pub(crate) const FIRST_MEMBER: usize = 500_000;

/// Where a child process finds the emulator the parent started, and which store it syncs into.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Target {
    /// The emulator's instance URL.
    #[arg(long)]
    pub(crate) instance: String,
    /// The emulator's CA certificate (PEM).
    #[arg(long)]
    pub(crate) ca_file: PathBuf,
    /// The sync store.
    #[arg(long, value_enum, default_value_t = StoreKind::Sqlite)]
    pub(crate) store: StoreKind,
    /// An existing store to sync into instead of a fresh one (the run (f) kills shares its store with the rerun).
    #[arg(long)]
    pub(crate) store_url: Option<String>,
}

/// The database the sync state and the app's tables live in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum StoreKind {
    /// SQLite in a temporary folder (the embedded default).
    Sqlite,
    /// A fresh database on the PostgreSQL server `TEST_DATABASE_URL` names, dropped afterwards (production's store).
    Postgres,
}

impl StoreKind {
    /// The flag value, for a child's command line.
    pub(crate) fn flag(self) -> &'static str {
        match self {
            StoreKind::Sqlite => "sqlite",
            StoreKind::Postgres => "postgres",
        }
    }

    /// The store in words, for the report.
    pub(crate) fn description(self) -> &'static str {
        match self {
            StoreKind::Sqlite => "SQLite in a temporary folder",
            StoreKind::Postgres => {
                "PostgreSQL on loopback, a fresh database per child process; the server's own CPU is not in the CPU \
                 columns, which are the bench process's"
            }
        }
    }
}

/// What the emulator counted between two moments.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub(crate) struct SimCounts {
    /// Requests received (Web API and token requests; a `$batch` counts once).
    pub(crate) requests: u64,
    /// Rows served.
    pub(crate) rows: u64,
    /// Requests answered 429.
    pub(crate) throttled: u64,
}

impl SimCounts {
    /// What was counted between `before` and these counts.
    pub(crate) fn since(self, before: SimCounts) -> SimCounts {
        SimCounts {
            requests: self.requests.saturating_sub(before.requests),
            rows: self.rows.saturating_sub(before.rows),
            throttled: self.throttled.saturating_sub(before.throttled),
        }
    }
}

/// What one measured phase cost, on both sides of the wire.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub(crate) struct PhaseCost {
    /// Requests the client sent (its own metrics; a `$batch` counts once, retries count again).
    pub(crate) requests: u64,
    /// 429 answers the client received.
    pub(crate) throttled: u64,
    /// Requests the client sent again.
    pub(crate) retried: u64,
    /// Seconds the client waited for its rate budget, `Retry-After` and backoff.
    pub(crate) waited_s: f64,
    /// What the emulator counted meanwhile.
    pub(crate) sim: SimCounts,
    /// Seconds the client spent decoding answers (its own measure).
    #[serde(default)]
    pub(crate) decode_s: f64,
    /// Wall, CPU and memory.
    pub(crate) cost: Cost,
}

/// A configured organisation, its client and store, and a way to reach the emulator's counters.
#[derive(Debug)]
pub(crate) struct Harness {
    pub(crate) config: IntegrationConfig,
    pub(crate) organisation: OrganisationConfig,
    pub(crate) client: DynamicsClient,
    pub(crate) store: Store,
    /// The URL `store` was opened with, for another process to open it too.
    pub(crate) store_url: String,
    instance: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
    /// The PostgreSQL database made for this harness, dropped by [`Harness::cleanup`].
    postgres: Option<sync_store::testing::TestDatabase>,
}

impl Harness {
    /// Loads the configuration the way `sync-worker` does (TOML plus credential variables), opens a fresh SQLite
    /// store in a temporary folder, and builds the organisation's client with the configured limits and retries.
    pub(crate) async fn connect(target: &Target) -> anyhow::Result<Harness> {
        Self::connect_with(target, None, "").await
    }

    /// [`Harness::connect`] with another mapping (its TOML) and more configuration (TOML tables appended).
    pub(crate) async fn connect_with(target: &Target, mapping: Option<&str>, extra: &str) -> anyhow::Result<Harness> {
        let dir = tempfile::tempdir().context("making a temporary folder for the sync store")?;
        let postgres = match (target.store, &target.store_url) {
            (_, Some(_)) | (StoreKind::Sqlite, None) => None,
            (StoreKind::Postgres, None) => Some(sync_store::testing::TestDatabase::postgres().await?.context(
                "the PostgreSQL bench needs TEST_DATABASE_URL (for example postgres://postgres@127.0.0.1:5432/test)",
            )?),
        };
        let store_url = match (&postgres, &target.store_url) {
            (_, Some(url)) => url.clone(),
            (Some(db), None) => db.url.clone(),
            (None, None) => format!("sqlite://{}", dir.path().join("bench.db").display()),
        };
        let config = load_config(target, dir.path(), mapping, &store_url, extra)?;
        let organisation = config
            .organisation(ORGANISATION)
            .context("the bench configuration names the organisation")?
            .clone();
        // PostgreSQL: the store the test database already opened on the configured URL, not a second pool.
        let store = match &postgres {
            Some(db) => db.store.clone(),
            None => Store::connect(config.store.url.expose_secret())
                .await
                .with_context(|| format!("opening the sync store {}", config.store.redacted_url()))?,
        };
        let client = DynamicsClient::for_organisation(
            &organisation,
            ClientOptions {
                rate_limit: config.rate_limit.clone(),
                retry: config.retry.clone(),
                page_size: config.sync.page_size,
                ..ClientOptions::default()
            },
        )
        .context("building the Dynamics client")?;
        let ca = std::fs::read(&target.ca_file)
            .with_context(|| format!("reading the emulator's CA certificate {}", target.ca_file.display()))?;
        let http = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).context("the emulator's CA certificate")?)
            .no_proxy()
            .build()
            .context("building the HTTP client for the emulator's counters")?;
        Ok(Harness {
            config,
            organisation,
            client,
            store,
            store_url,
            instance: target.instance.trim_end_matches('/').to_owned(),
            http,
            _dir: dir,
            postgres,
        })
    }

    /// Closes the store and drops the PostgreSQL database, if one was made.
    pub(crate) async fn cleanup(self) -> anyhow::Result<()> {
        self.store.close().await;
        if let Some(db) = self.postgres {
            db.cleanup().await?;
        }
        Ok(())
    }

    /// The organisation's sync service, as `sync-worker` builds it, with the given clock.
    pub(crate) fn service(&self, clock: Arc<dyn Clock>) -> anyhow::Result<SyncService> {
        Ok(SyncService::new(
            &self.organisation,
            &self.config,
            self.client.clone(),
            Arc::new(self.store.clone()),
            self.store.clone(),
            clock,
        )?)
    }

    /// The app's mentors: one per contact for the first `count` member numbers, each with one certification valid
    /// for a year, except every 100th, which expires on `today` (still valid today, expired tomorrow).
    pub(crate) async fn seed_mentors(&self, count: usize, now: DateTime<Utc>, today: NaiveDate) -> anyhow::Result<()> {
        self.seed_mentors_from(0, count, now - Duration::days(2), today).await
    }

    /// Mentors `first..first + count` (member numbers to match), changed in the app ten seconds apart, the last at
    /// `changed` (for mentors added after a first sync, after its watermark). Apart, as people edit them: with one
    /// time for all, every later run would find them all inside the push overlap and read them again.
    pub(crate) async fn seed_mentors_from(
        &self,
        first: usize,
        count: usize,
        changed: DateTime<Utc>,
        today: NaiveDate,
    ) -> anyhow::Result<()> {
        self.store.upsert_organisation(ORGANISATION, "HLF").await?;
        for i in first..first + count {
            let id = format!("m{i}");
            let steps_before_last = i32::try_from(first + count - 1 - i).unwrap_or(i32::MAX);
            let changed = changed - Duration::seconds(10 * i64::from(steps_before_last));
            self.store
                .upsert_mentor(&Mentor {
                    id: id.clone(),
                    organisation_id: ORGANISATION.into(),
                    member_number: Some((FIRST_MEMBER + i).to_string()),
                    given_name: None,
                    family_name: None,
                    email: None,
                    phone: None,
                    coordinator_email: None,
                    dynamics_contact_id: None,
                    updated_at: changed,
                })
                .await?;
            let expires_on = if i % 100 == 0 {
                today
            } else {
                today + Duration::days(365)
            };
            self.store
                .upsert_certification(&Certification {
                    id: format!("c{i}"),
                    mentor_id: id,
                    kind: "likeperson".into(),
                    issued_on: today - Duration::days(365),
                    expires_on,
                    revoked_at: None,
                    updated_at: changed,
                })
                .await?;
        }
        Ok(())
    }

    /// The app changes the certification of mentor `i` (a renewal), so the next run must push it.
    pub(crate) async fn renew_certification(
        &self,
        i: usize,
        now: DateTime<Utc>,
        today: NaiveDate,
    ) -> anyhow::Result<()> {
        let mut snapshots = self.store.mentors(ORGANISATION, &[format!("m{i}")]).await?;
        let Some(snapshot) = snapshots.pop() else {
            bail!("mentor m{i} is not in the app")
        };
        let Some(mut certification) = snapshot.certifications.into_iter().next() else {
            bail!("mentor m{i} has no certification")
        };
        certification.expires_on = today + Duration::days(700);
        certification.updated_at = now;
        self.store.upsert_certification(&certification).await?;
        Ok(())
    }

    /// Someone at HLF edits `column` of the given contacts in Dynamics. Sent as one `$batch` of PATCHes by
    /// alternate key with its own token: it stands for other users' edits, so it goes around the sync's client and
    /// its counters (the emulator still counts it against the app user's limits, as one request).
    pub(crate) async fn edit_in_dynamics(
        &self,
        member_numbers: &[String],
        column: &str,
        value: &str,
    ) -> anyhow::Result<()> {
        if member_numbers.len() > dynamics_client::MAX_BATCH_OPERATIONS {
            bail!(
                "at most {} edits fit in one $batch",
                dynamics_client::MAX_BATCH_OPERATIONS
            );
        }
        let token = self.token().await?;
        let boundary = "batch_bench_edits";
        let body_json = serde_json::json!({ column: value }).to_string();
        let mut body = String::new();
        for member in member_numbers {
            body.push_str(&format!(
                "--{boundary}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n\
                 PATCH /api/data/v9.2/contacts(hlf_membernumber='{member}') HTTP/1.1\r\n\
                 Content-Type: application/json\r\nIf-Match: *\r\n\r\n{body_json}\r\n"
            ));
        }
        body.push_str(&format!("--{boundary}--\r\n"));
        let answer = self
            .http
            .post(format!("{}/api/data/v9.2/$batch", self.instance))
            .bearer_auth(token)
            .header("content-type", format!("multipart/mixed; boundary={boundary}"))
            .header("odata-version", "4.0")
            .header("odata-maxversion", "4.0")
            .body(body)
            .send()
            .await
            .context("sending the Dynamics-side edits")?;
        let status = answer.status();
        let text = answer.text().await.unwrap_or_default();
        if !status.is_success() || text.matches("HTTP/1.1 204").count() != member_numbers.len() {
            let head: String = text.chars().take(600).collect();
            bail!("the Dynamics-side edits were not all applied ({status}): {head}");
        }
        Ok(())
    }

    /// A token for the edits, by the client-credentials form the emulator's token endpoint takes.
    async fn token(&self) -> anyhow::Result<String> {
        let creds = &self.organisation.credentials;
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("client_id", &creds.client_id)
            .append_pair("client_secret", creds.client_secret.loaded().expose_secret())
            .append_pair("grant_type", "client_credentials")
            .append_pair("scope", &format!("{}/.default", self.instance))
            .finish();
        let answer: serde_json::Value = self
            .http
            .post(format!("{}/{}/oauth2/v2.0/token", self.instance, creds.tenant_id))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .context("requesting a token for the Dynamics-side edits")?
            .json()
            .await
            .context("decoding the token answer")?;
        match answer.get("access_token").and_then(|t| t.as_str()) {
            Some(token) => Ok(token.to_owned()),
            None => bail!("the token endpoint gave no access token"),
        }
    }

    /// The emulator's counters now.
    pub(crate) async fn sim_counts(&self) -> anyhow::Result<SimCounts> {
        let stats: serde_json::Value = self
            .http
            .get(format!("{}/_sim/stats", self.instance))
            .send()
            .await
            .context("reading the emulator's counters")?
            .json()
            .await
            .context("decoding the emulator's counters")?;
        let count = |name: &str| stats.get(name).and_then(serde_json::Value::as_u64).unwrap_or(0);
        Ok(SimCounts {
            requests: count("requests"),
            rows: count("rows"),
            throttled: count("throttled"),
        })
    }

    /// Runs `work` and measures it: the client's and the emulator's counters, wall and CPU time, peak memory.
    pub(crate) async fn phase<T, F>(&self, work: F) -> anyhow::Result<(T, PhaseCost)>
    where
        F: Future<Output = anyhow::Result<T>>,
    {
        let sim_before = self.sim_counts().await?;
        let client_before = self.client.metrics();
        let probe = Probe::start();
        let value = work.await?;
        let cost = probe.finish();
        let client_after = self.client.metrics();
        let sim_after = self.sim_counts().await?;
        Ok((
            value,
            phase_cost(client_before, client_after, sim_before, sim_after, cost),
        ))
    }
}

fn phase_cost(
    before: ClientMetrics,
    after: ClientMetrics,
    sim_before: SimCounts,
    sim_after: SimCounts,
    cost: Cost,
) -> PhaseCost {
    PhaseCost {
        requests: after.requests - before.requests,
        throttled: after.throttled - before.throttled,
        retried: after.retried - before.retried,
        waited_s: after.waited.saturating_sub(before.waited).as_secs_f64(),
        decode_s: after.decoding.saturating_sub(before.decoding).as_secs_f64(),
        sim: sim_after.since(sim_before),
        cost,
    }
}

/// The configuration: the built-in HLF mapping, one organisation whose Azure AD authority and Dynamics instance are
/// the emulator (its CA trusted through `ca_certificate_file`), every other setting at its default, and the store in
/// `dir`.
fn load_config(
    target: &Target,
    dir: &Path,
    mapping: Option<&str>,
    store_url: &str,
    extra: &str,
) -> anyhow::Result<IntegrationConfig> {
    let instance = target.instance.trim_end_matches('/');
    let mapping = match mapping {
        Some(text) => {
            std::fs::write(dir.join("mapping.toml"), text).context("writing the bench's mapping")?;
            "mapping.toml"
        }
        None => "builtin:hlf-default",
    };
    let text = format!(
        "mapping = \"{mapping}\"\n\n[[organisations]]\nid = \"{ORGANISATION}\"\nname = \"HLF (bench)\"\n\
         authority_host = \"{instance}\"\nca_certificate_file = \"{}\"\n\n[store]\nurl = \"{store_url}\"\n{extra}",
        target.ca_file.display(),
    );
    let env: BTreeMap<String, String> = [
        ("DYNAMICS_TENANT_ID", dataverse_sim::DEFAULT_TENANT_ID),
        ("DYNAMICS_CLIENT_ID", dataverse_sim::DEFAULT_CLIENT_ID),
        ("DYNAMICS_CLIENT_SECRET", dataverse_sim::DEFAULT_CLIENT_SECRET),
        ("DYNAMICS_INSTANCE_URL", instance),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    Ok(IntegrationConfig::from_toml(
        &text,
        "the bench configuration",
        dir,
        &env,
    )?)
}
