//! The CSV export of one organisation's mentors for the Dynamics Import Data wizard, full or delta.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use field_mapping::{AppRecord, AppValue, FieldSpec, Owner, RecordMapping};
use integration_config::{Language, OrganisationConfig};
use sync_engine::{Clock, NO_CONTACT_REASON, SYNC_STAMP, app_record, local_today};
use sync_store::{AppStore, Direction, FailureState, Link, MentorSnapshot, Store};
use tracing::{info, warn};

use crate::csv::{SplitWriter, encode_line, looks_like_formula};
use crate::error::{Error, Result};

/// The largest file the export writes by default: under the Import Data wizard's 8 MB limit however a megabyte is
/// counted.
pub const DEFAULT_MAX_FILE_BYTES: usize = 8_000_000;

/// The record kind exported.
const MENTOR: &str = "mentor";

/// Mentors read from the store at a time.
const PAGE: u32 = 500;

/// Which mentors an export holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExportKind {
    /// Every mentor of the organisation.
    Full,
    /// Only the mentors whose exported values differ from what Dynamics last confirmed through the API, and those
    /// the API path has never linked.
    Delta,
}

/// Optional settings of an export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportOptions {
    /// The largest size of one CSV file in bytes; rows go to a new file (with the header again) before it is
    /// reached. Default: [`DEFAULT_MAX_FILE_BYTES`].
    pub max_file_bytes: usize,
}

/// One file of an export, in memory (for a download) until written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvFile {
    /// The file name, e.g. `hlf-mentors-delta-20260601T023000Z-1.csv`.
    pub name: String,
    /// The bytes: UTF-8 with a byte-order mark, CRLF line ends.
    pub contents: Vec<u8>,
    /// Data rows (the header not counted).
    pub rows: usize,
}

/// A mentor left out of the import files, with the reason. Listed in the errors file; never dropped silently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowProblem {
    /// The app's mentor id.
    pub mentor_id: String,
    /// The member number as the app has it, if any.
    pub member_number: Option<String>,
    /// The app field at fault.
    pub field: String,
    /// What is wrong and what to do.
    pub reason: String,
}

/// The result of an export: the import files, the problems and the errors file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    /// Full or delta.
    pub kind: ExportKind,
    /// The organisation.
    pub organisation_id: String,
    /// When the export was made (the clock's time).
    pub generated_at: DateTime<Utc>,
    /// The import files, in order. A full export always has at least one (possibly with only the header).
    pub files: Vec<CsvFile>,
    /// Mentors left out, one entry per problem.
    pub problems: Vec<RowProblem>,
    /// The errors file, when there are problems.
    pub errors_file: Option<CsvFile>,
    /// Mentors of the organisation looked at.
    pub mentors_considered: usize,
    /// Mentors a delta left out because Dynamics already has their values.
    pub mentors_unchanged: usize,
}

/// Writes CSV exports of one organisation's mentors for the Dynamics Import Data wizard.
#[derive(Clone)]
pub struct CsvExporter {
    organisation_id: String,
    time_zone: Tz,
    language: Language,
    mapping: RecordMapping,
    columns: Vec<FieldSpec>,
    app: Arc<dyn AppStore>,
    store: Store,
    clock: Arc<dyn Clock>,
    options: ExportOptions,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
        }
    }
}

impl std::fmt::Debug for CsvExporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CsvExporter")
            .field("organisation", &self.organisation_id)
            .finish_non_exhaustive()
    }
}

/// A date as every export writes it: ISO 8601 `YYYY-MM-DD`, which no locale reads as another day.
pub fn date_cell(date: NaiveDate) -> String {
    date.format("%Y-%m-%d").to_string()
}

/// A value as its CSV cell. Yes/no columns are `Yes`/`No` and choices are the app's symbols (`active`,
/// `expired`, ...); the import wizard maps both to the column's options (docs/csv-fallback.md says how).
fn cell(value: &AppValue) -> String {
    match value {
        AppValue::Null => String::new(),
        AppValue::Text(text) | AppValue::Choice(text) => text.clone(),
        AppValue::Bool(flag) => if *flag { "Yes" } else { "No" }.to_owned(),
        AppValue::Date(date) => date_cell(*date),
        AppValue::DateTime(at) => at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        AppValue::Decimal(number) => number.to_string(),
        AppValue::Reference(id) => id.to_string(),
    }
}

impl Export {
    /// Data rows across all import files.
    pub fn rows(&self) -> usize {
        self.files.iter().map(|f| f.rows).sum()
    }

    /// Writes the import files and the errors file into `dir` (which must exist) and returns their paths, import
    /// files first. Each file is written under a temporary name and renamed, so a file with the final name is
    /// always complete.
    pub fn write_to(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        let mut written = Vec::new();
        for file in self.files.iter().chain(self.errors_file.as_ref()) {
            let path = dir.join(&file.name);
            let partial = dir.join(format!("{}.partial", file.name));
            let io = |source| Error::Write {
                path: path.clone(),
                source,
            };
            std::fs::write(&partial, &file.contents).map_err(io)?;
            std::fs::rename(&partial, &path).map_err(io)?;
            written.push(path);
        }
        Ok(written)
    }
}

impl CsvExporter {
    /// An exporter for one organisation: its mapping's `mentor` record names the columns, its time zone decides
    /// when a certification has expired. `app` reads the app's mentors; `store` holds the links whose shadows a
    /// delta compares against.
    pub fn new(
        organisation: &OrganisationConfig,
        app: Arc<dyn AppStore>,
        store: Store,
        clock: Arc<dyn Clock>,
        options: Option<ExportOptions>,
    ) -> Result<Self> {
        let mapping = organisation
            .mapping
            .record(MENTOR)
            .cloned()
            .ok_or_else(|| Error::Mapping("it has no [records.mentor]".to_owned()))?;
        let key = mapping.alternate_key().clone();
        // The sync stamp records writes through the API; an import leaves it alone so the two paths stay apart.
        let mut columns = vec![key.clone()];
        columns.extend(
            mapping
                .fields()
                .iter()
                .filter(|f| f.owner == Owner::App && f.field != SYNC_STAMP && f.field != key.field)
                .cloned(),
        );
        if columns.len() == 1 {
            return Err(Error::Mapping(
                "[records.mentor] has no app-owned field to export; declare the certification fields with owner = \"app\""
                    .to_owned(),
            ));
        }
        Ok(CsvExporter {
            organisation_id: organisation.id.clone(),
            time_zone: organisation.time_zone,
            language: organisation.language,
            mapping,
            columns,
            app,
            store,
            clock,
            options: options.unwrap_or_default(),
        })
    }

    /// The headers of the import files: the columns' display names, the alternate key first.
    pub fn headers(&self) -> Vec<&str> {
        self.columns.iter().map(|c| c.display_name.as_str()).collect()
    }

    /// Builds an export in memory from the app's current state.
    pub async fn build(&self, kind: ExportKind) -> Result<Export> {
        let org = &self.organisation_id;
        let now = self.clock.now();
        let today = local_today(now, self.time_zone);
        let mut writer = SplitWriter::new(&encode_line(&self.headers()), self.options.max_file_bytes);
        let mut problems = Vec::new();
        let mut considered = 0;
        let mut unchanged = 0;
        // Mentors the sync looked up in Dynamics and found no contact for: an import would create a stray contact.
        let mut no_contact = std::collections::BTreeSet::new();
        for state in [FailureState::Retrying, FailureState::Dead] {
            no_contact.extend(
                self.store
                    .failures(org, state)
                    .await?
                    .into_iter()
                    .filter(|f| f.record_kind == MENTOR && f.direction == Direction::Push)
                    .filter(|f| f.error.starts_with(NO_CONTACT_REASON))
                    .map(|f| f.record_key),
            );
        }
        let mut after: Option<String> = None;
        loop {
            let page = self.app.all_mentors(org, after.as_deref(), PAGE).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.mentor.id.clone());
            let ids: Vec<String> = page.iter().map(|s| s.mentor.id.clone()).collect();
            let links: BTreeMap<String, Link> = self
                .store
                .links(org, MENTOR, &ids)
                .await?
                .into_iter()
                .map(|l| (l.app_id.clone(), l))
                .collect();
            for snapshot in &page {
                considered += 1;
                let link = links.get(&snapshot.mentor.id);
                if link.is_none() && no_contact.contains(&snapshot.mentor.id) {
                    problems.push(RowProblem {
                        mentor_id: snapshot.mentor.id.clone(),
                        member_number: snapshot.mentor.member_number.clone(),
                        field: self.columns[0].field.clone(),
                        reason: "the sync found no contact in Dynamics with this member number, so an import would \
                                 create a new contact; register the member in Dynamics (then the sync links it) or \
                                 correct the member number in the app"
                            .to_owned(),
                    });
                    continue;
                }
                let record = app_record(&self.mapping, snapshot, today, link.map(|l| &l.shadow));
                if kind == ExportKind::Delta && link.is_some_and(|l| self.agrees(&record, &l.shadow)) {
                    unchanged += 1;
                    continue;
                }
                match self.row(snapshot, &record) {
                    Ok(cells) => writer.push(&encode_line(&cells)),
                    Err(found) => problems.extend(found),
                }
            }
            if page.len() < PAGE as usize {
                break;
            }
        }

        let stem = format!(
            "{}-mentors-{}-{}",
            file_safe(org),
            match kind {
                ExportKind::Full => "full",
                ExportKind::Delta => "delta",
            },
            now.format("%Y%m%dT%H%M%SZ")
        );
        let files: Vec<CsvFile> = writer
            .finish()
            .into_iter()
            .enumerate()
            .map(|(i, (text, rows))| CsvFile {
                name: format!("{stem}-{}.csv", i + 1),
                contents: text.into_bytes(),
                rows,
            })
            .collect();
        let errors_file = (!problems.is_empty()).then(|| errors_file(&stem, &problems, self.language));
        let export = Export {
            kind,
            organisation_id: org.clone(),
            generated_at: now,
            files,
            problems,
            errors_file,
            mentors_considered: considered,
            mentors_unchanged: unchanged,
        };
        info!(
            org = %org,
            kind = ?kind,
            rows = export.rows(),
            files = export.files.len(),
            unchanged = unchanged,
            problems = export.problems.len(),
            "csv export built"
        );
        if !export.problems.is_empty() {
            warn!(org = %org, problems = export.problems.len(), "some mentors cannot be imported; see the errors file");
        }
        Ok(export)
    }

    /// Builds an export and writes it into `dir`; returns the export and the paths written.
    pub async fn export_to(&self, kind: ExportKind, dir: &Path) -> Result<(Export, Vec<PathBuf>)> {
        let export = self.build(kind).await?;
        let paths = export.write_to(dir)?;
        Ok((export, paths))
    }

    /// Whether Dynamics, as last confirmed through the API (the shadow), already has every exported value.
    fn agrees(&self, record: &AppRecord, shadow: &AppRecord) -> bool {
        self.columns.iter().all(|spec| {
            let ours = spec.normalise(record.get(&spec.field).unwrap_or(&AppValue::Null));
            shadow.get(&spec.field).map(|v| spec.normalise(v)) == Some(ours)
        })
    }

    /// The row's cells, or every reason it cannot be imported.
    fn row(&self, snapshot: &MentorSnapshot, record: &AppRecord) -> Result<Vec<String>, Vec<RowProblem>> {
        let problem = |field: &str, reason: String| RowProblem {
            mentor_id: snapshot.mentor.id.clone(),
            member_number: snapshot.mentor.member_number.clone(),
            field: field.to_owned(),
            reason,
        };
        let mut problems = Vec::new();
        let key = &self.columns[0];
        match self.mapping.key_value(record) {
            Err(error) => problems.push(problem(&key.field, error.to_string())),
            Ok(value) if looks_like_formula(value) => problems.push(problem(
                &key.field,
                format!(
                    "`{}` starts with a character a spreadsheet reads as a formula (= + - @), so the import could not match it; correct the member number in the app",
                    key.field
                ),
            )),
            Ok(_) => {}
        }
        let mut cells = Vec::with_capacity(self.columns.len());
        for (i, spec) in self.columns.iter().enumerate() {
            let value = record.get(&spec.field).unwrap_or(&AppValue::Null);
            // The key's own checks above already explain a missing or malformed key.
            let key_already_reported = i == 0 && !problems.is_empty();
            if !key_already_reported && let Err(error) = spec.to_dataverse(value) {
                problems.push(problem(&spec.field, error.to_string()));
            }
            cells.push(cell(&spec.normalise(value)));
        }
        if problems.is_empty() { Ok(cells) } else { Err(problems) }
    }
}

/// The problems HLF's staff meet in the errors file, in bokmål: a phrase of the reason, and its translation, in the
/// words of the people who import the files (no "alternate key", no "Dataverse"). A reason not listed is given as
/// the technical English text, marked as such.
const NORWEGIAN_PROBLEMS: [(&str, &str); 5] = [
    (
        "characters long; column",
        "verdien i Felt-kolonnen er lengre enn Dynamics tillater; kort den ned i appen og eksporter på nytt",
    ),
    (
        "the record has no value for field",
        "likepersonen mangler en verdi i appen for feltet i Felt-kolonnen; fyll den inn i appen og eksporter på nytt",
    ),
    (
        "contains a character Dataverse forbids in keys",
        "medlemsnummeret er tomt eller inneholder et tegn Dynamics ikke godtar (/ < > * % & : \\ ? +); rett det i \
         appen og eksporter på nytt",
    ),
    (
        "starts with a character a spreadsheet reads as a formula",
        "medlemsnummeret begynner med et tegn et regneark leser som en formel (= + - @), så importen ville ikke \
         finne kontakten; rett medlemsnummeret i appen",
    ),
    (
        "the sync found no contact in Dynamics with this member number",
        "synkroniseringen fant ingen kontakt i Dynamics med dette medlemsnummeret, så en import ville opprettet en ny \
         kontakt; registrer medlemmet i Dynamics (da kobler synkroniseringen det) eller rett medlemsnummeret i appen",
    ),
];

/// A problem's reason in the export's language.
fn problem_in(language: Language, reason: &str) -> String {
    match language {
        Language::English => reason.to_owned(),
        Language::Norwegian => NORWEGIAN_PROBLEMS
            .iter()
            .find(|(english, _)| reason.contains(english))
            .map_or_else(
                || format!("(teknisk melding, på engelsk) {reason}"),
                |(_, norwegian)| (*norwegian).to_owned(),
            ),
    }
}

/// The errors file: one line per problem, with the mentor's id and member number, the field and the reason.
fn errors_file(stem: &str, problems: &[RowProblem], language: Language) -> CsvFile {
    let headers = match language {
        Language::Norwegian => ["Likeperson-id", "Medlemsnummer", "Felt", "Problem"],
        Language::English => ["Mentor id", "Member number", "Field", "Problem"],
    };
    let mut text = format!("{}{}", crate::csv::BYTE_ORDER_MARK, encode_line(&headers));
    for p in problems {
        let reason = problem_in(language, &p.reason);
        text.push_str(&encode_line(&[
            p.mentor_id.as_str(),
            p.member_number.as_deref().unwrap_or(""),
            p.field.as_str(),
            reason.as_str(),
        ]));
    }
    CsvFile {
        name: format!("{stem}-errors.csv"),
        contents: text.into_bytes(),
        rows: problems.len(),
    }
}

/// An organisation id as part of a file name: letters, digits, `-` and `_` kept, anything else `_`.
fn file_safe(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
