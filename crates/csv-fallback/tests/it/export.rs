//! The CSV export: layout, neutralisation, bad input, splitting, the delta, determinism.

use std::sync::Arc;

use csv_fallback::{CsvExporter, Export, ExportKind, ExportOptions};
use expect_test::expect;
use field_mapping::{AppValue, FieldMapping, HLF_DEFAULT_MAPPING};
use sync_engine::{FixedClock, app_record, local_today};
use sync_store::{AppStore, Link, Store};
use uuid::Uuid;

use super::{at, clock, day, each, mentor, organisation};

fn exporter(store: &Store, clock: Arc<FixedClock>, options: Option<ExportOptions>) -> CsvExporter {
    CsvExporter::new(&organisation(), Arc::new(store.clone()), store.clone(), clock, options).unwrap()
}

/// A file's text without the byte-order mark, with CRLF shown as plain line ends (after checking every line has one).
fn text(contents: &[u8]) -> String {
    let text = std::str::from_utf8(contents).unwrap();
    let body = text
        .strip_prefix('\u{feff}')
        .expect("file starts with the UTF-8 byte-order mark");
    assert!(body.ends_with("\r\n"), "last line ends with CRLF: {body:?}");
    assert_eq!(
        body.matches('\n').count(),
        body.matches("\r\n").count(),
        "every line ends with CRLF: {body:?}"
    );
    body.replace("\r\n", "\n")
}

fn all_rows(export: &Export) -> String {
    export
        .files
        .iter()
        .map(|f| text(&f.contents))
        .collect::<Vec<_>>()
        .join("---\n")
}

/// Links a mentor as a successful sync would have: its shadow holds the values pushed at `when`.
async fn link_as_synced(store: &Store, mentor_id: &str, member: &str, when: &str) {
    let mapping = FieldMapping::from_toml(HLF_DEFAULT_MAPPING).unwrap();
    let mapping = mapping.record("mentor").unwrap();
    let snapshot = store.mentors("hlf", &[mentor_id.to_owned()]).await.unwrap().remove(0);
    let today = local_today(at(when), chrono_tz::Europe::Oslo);
    let mut shadow = app_record(mapping, &snapshot, today, None);
    shadow.insert("app_synced_on".into(), AppValue::DateTime(at(when)));
    store
        .save_link(&Link {
            organisation_id: "hlf".into(),
            record_kind: "mentor".into(),
            app_id: mentor_id.to_owned(),
            dynamics_id: Uuid::new_v4(),
            alternate_key: member.to_owned(),
            etag: None,
            shadow,
            visible: true,
            expires_on: None,
            dynamics_modified_on: None,
            synced_at: at(when),
            pending: None,
            seen: Default::default(),
            app_changed_at: None,
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn full_export_has_the_key_and_app_owned_columns_by_display_name() {
    each(|store| async move {
        mentor(&store, "hlf", "a-active", Some("1001"), Some(day(2026, 12, 31)), false).await;
        // Expired at midnight Oslo time: 31 May is the last valid day, and it is now 1 June 02:30 in Oslo.
        mentor(&store, "hlf", "b-expired", Some("1002"), Some(day(2026, 5, 31)), false).await;
        mentor(&store, "hlf", "c-revoked", Some("1003"), Some(day(2027, 1, 1)), true).await;
        mentor(&store, "hlf", "d-none", Some("1004"), None, false).await;
        mentor(
            &store,
            "hlf",
            "e-expires-today",
            Some("1005"),
            Some(day(2026, 6, 1)),
            false,
        )
        .await;
        // Another organisation's mentor never appears.
        mentor(&store, "other", "x", Some("9001"), Some(day(2026, 12, 31)), false).await;

        let export = exporter(&store, clock(), None).build(ExportKind::Full).await.unwrap();
        assert_eq!(export.files.len(), 1);
        assert_eq!(export.files[0].name, "hlf-mentors-full-20260601T003000Z-1.csv");
        assert_eq!((export.rows(), export.mentors_considered), (5, 5));
        assert!(export.problems.is_empty() && export.errors_file.is_none());
        expect![[r#"
            Medlemsnummer,Likepersonstatus,Sertifisering utløper,Vis på nettsiden
            1001,active,2026-12-31,Yes
            1002,expired,2026-05-31,No
            1003,revoked,2027-01-01,No
            1004,none,,No
            1005,active,2026-06-01,Yes
        "#]]
        .assert_eq(&all_rows(&export));
    })
    .await;
}

#[tokio::test]
async fn mentors_that_cannot_be_imported_are_listed_in_the_errors_file_with_the_reason() {
    each(|store| async move {
        mentor(&store, "hlf", "a-ok", Some("1001"), Some(day(2026, 12, 31)), false).await;
        mentor(&store, "hlf", "b-missing", None, Some(day(2026, 12, 31)), false).await;
        mentor(&store, "hlf", "c-slash", Some("12/34"), Some(day(2026, 12, 31)), false).await;
        mentor(&store, "hlf", "d-plus", Some("1+2"), Some(day(2026, 12, 31)), false).await;
        mentor(&store, "hlf", "e-long", Some("123456789012345678901"), Some(day(2026, 12, 31)), false).await;
        mentor(&store, "hlf", "f-formula", Some("=1005"), Some(day(2026, 12, 31)), false).await;
        mentor(&store, "hlf", "g-blank", Some("   "), None, false).await;

        let dir = tempfile::tempdir().unwrap();
        let (export, paths) = exporter(&store, clock(), None)
            .export_to(ExportKind::Full, dir.path())
            .await
            .unwrap();
        // Every mentor is accounted for: imported or listed with a reason.
        assert_eq!(export.mentors_considered, 7);
        assert_eq!(export.rows(), 1);
        let rejected: std::collections::BTreeSet<_> = export.problems.iter().map(|p| p.mentor_id.as_str()).collect();
        assert_eq!(rejected.len(), 6);
        expect![[r#"
            Medlemsnummer,Likepersonstatus,Sertifisering utløper,Vis på nettsiden
            1001,active,2026-12-31,Yes
        "#]]
        .assert_eq(&all_rows(&export));
        let errors = export.errors_file.as_ref().unwrap();
        assert_eq!(errors.name, "hlf-mentors-full-20260601T003000Z-errors.csv");
        expect![[r#"
            Likeperson-id,Medlemsnummer,Felt,Problem
            hlf-b-missing,,member_number,likepersonen mangler en verdi i appen for feltet i Felt-kolonnen; fyll den inn i appen og eksporter på nytt
            hlf-c-slash,12/34,member_number,medlemsnummeret er tomt eller inneholder et tegn Dynamics ikke godtar (/ < > * % & : \ ? +); rett det i appen og eksporter på nytt
            hlf-d-plus,1+2,member_number,medlemsnummeret er tomt eller inneholder et tegn Dynamics ikke godtar (/ < > * % & : \ ? +); rett det i appen og eksporter på nytt
            hlf-e-long,123456789012345678901,member_number,verdien i Felt-kolonnen er lengre enn Dynamics tillater; kort den ned i appen og eksporter på nytt
            hlf-f-formula,'=1005,member_number,"medlemsnummeret begynner med et tegn et regneark leser som en formel (= + - @), så importen ville ikke finne kontakten; rett medlemsnummeret i appen"
            hlf-g-blank,"   ",member_number,medlemsnummeret er tomt eller inneholder et tegn Dynamics ikke godtar (/ < > * % & : \ ? +); rett det i appen og eksporter på nytt
        "#]]
        .assert_eq(&text(&errors.contents));
        // The files on disk are the ones built, the errors file beside the import file.
        let names: Vec<_> = paths.iter().map(|p| p.file_name().unwrap().to_str().unwrap()).collect();
        assert_eq!(
            names,
            ["hlf-mentors-full-20260601T003000Z-1.csv", "hlf-mentors-full-20260601T003000Z-errors.csv"]
        );
        assert_eq!(std::fs::read(&paths[1]).unwrap(), errors.contents);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2, "no partial file left behind");
    })
    .await;
}

#[tokio::test]
async fn large_exports_split_into_files_under_the_limit_each_with_the_header() {
    each(|store| async move {
        for i in 0..40 {
            mentor(
                &store,
                "hlf",
                &format!("m{i:03}"),
                Some(&format!("{}", 2000 + i)),
                Some(day(2026, 12, 31)),
                false,
            )
            .await;
        }
        let limit = 400;
        let export = exporter(&store, clock(), Some(ExportOptions { max_file_bytes: limit }))
            .build(ExportKind::Full)
            .await
            .unwrap();
        assert!(export.files.len() > 1, "{} file(s)", export.files.len());
        assert_eq!(export.rows(), 40);
        let mut members = Vec::new();
        for (i, file) in export.files.iter().enumerate() {
            assert!(
                file.contents.len() < limit,
                "{} is {} bytes",
                file.name,
                file.contents.len()
            );
            assert_eq!(file.name, format!("hlf-mentors-full-20260601T003000Z-{}.csv", i + 1));
            let body = text(&file.contents);
            let mut lines = body.lines();
            assert_eq!(
                lines.next(),
                Some("Medlemsnummer,Likepersonstatus,Sertifisering utløper,Vis på nettsiden")
            );
            let rows: Vec<_> = lines.map(|l| l.split(',').next().unwrap().to_owned()).collect();
            assert_eq!(rows.len(), file.rows);
            members.extend(rows);
        }
        let expected: Vec<String> = (0..40).map(|i| format!("{}", 2000 + i)).collect();
        assert_eq!(members, expected, "every row once, in order");
    })
    .await;
}

#[tokio::test]
async fn delta_holds_only_what_dynamics_has_not_confirmed_through_the_api() {
    each(|store| async move {
        let synced = "2026-05-20T00:30:00Z";
        let unchanged = mentor(
            &store,
            "hlf",
            "a-unchanged",
            Some("1001"),
            Some(day(2026, 12, 31)),
            false,
        )
        .await;
        let expiring = mentor(&store, "hlf", "b-expiring", Some("1002"), Some(day(2026, 5, 31)), false).await;
        let revoked = mentor(&store, "hlf", "c-revoked", Some("1003"), Some(day(2027, 1, 1)), false).await;
        let added = "hlf-d-new".to_owned();
        for (id, member) in [(&unchanged, "1001"), (&expiring, "1002"), (&revoked, "1003")] {
            link_as_synced(&store, id, member, synced).await;
        }
        // Since that sync: one certification revoked in the app, one mentor added, one expired by time alone.
        mentor(&store, "hlf", "c-revoked", Some("1003"), Some(day(2027, 1, 1)), true).await;
        mentor(&store, "hlf", "d-new", Some("1004"), Some(day(2026, 12, 31)), false).await;

        let clock = clock();
        let exporter = exporter(&store, clock.clone(), None);
        let delta = exporter.build(ExportKind::Delta).await.unwrap();
        assert_eq!(delta.files[0].name, "hlf-mentors-delta-20260601T003000Z-1.csv");
        assert_eq!((delta.mentors_considered, delta.mentors_unchanged), (4, 1));
        expect![[r#"
            Medlemsnummer,Likepersonstatus,Sertifisering utløper,Vis på nettsiden
            1002,expired,2026-05-31,No
            1003,revoked,2027-01-01,No
            1004,active,2026-12-31,Yes
        "#]]
        .assert_eq(&all_rows(&delta));

        // The day before, the expiring mentor was still active, as Dynamics has it: no row for them then.
        clock.set(at("2026-05-31T21:59:59Z"));
        let before_midnight = exporter.build(ExportKind::Delta).await.unwrap();
        assert!(
            !all_rows(&before_midnight).contains("1002"),
            "{}",
            all_rows(&before_midnight)
        );

        // Once a sync confirms everything, the delta is empty but keeps its header.
        clock.set(at("2026-06-01T00:30:00Z"));
        for (id, member) in [(&expiring, "1002"), (&revoked, "1003"), (&added, "1004")] {
            link_as_synced(&store, id, member, "2026-06-01T00:30:00Z").await;
        }
        let empty = exporter.build(ExportKind::Delta).await.unwrap();
        assert_eq!((empty.rows(), empty.mentors_unchanged), (0, 4));
        expect![[r#"
            Medlemsnummer,Likepersonstatus,Sertifisering utløper,Vis på nettsiden
        "#]]
        .assert_eq(&all_rows(&empty));
    })
    .await;
}

/// A mentor the sync looked up and found no contact for stays out of every import file (importing would create a
/// stray contact) and is named in the errors file, so the delta can become empty when switching back.
#[tokio::test]
async fn a_mentor_dynamics_has_no_contact_for_goes_to_the_errors_file_not_the_import() {
    each(|store| async move {
        let linked = mentor(&store, "hlf", "a-linked", Some("1001"), Some(day(2026, 12, 31)), false).await;
        link_as_synced(&store, &linked, "1001", "2026-06-01T00:30:00Z").await;
        let stray = mentor(&store, "hlf", "b-stray", Some("999999"), Some(day(2026, 12, 31)), false).await;
        store
            .record_failure(
                "hlf",
                "mentor",
                &stray,
                sync_store::Direction::Push,
                "no contact in Dynamics has the mentor's member number; check the member number in the app or register the member in Dynamics",
                5,
                at("2026-06-01T00:30:00Z"),
            )
            .await
            .unwrap();
        let exporter = exporter(&store, clock(), None);
        for kind in [ExportKind::Full, ExportKind::Delta] {
            let export = exporter.build(kind).await.unwrap();
            assert!(!all_rows(&export).contains("999999"), "{kind:?}: {}", all_rows(&export));
            assert_eq!(export.problems.len(), 1, "{kind:?}");
            assert_eq!(export.problems[0].mentor_id, stray);
            assert!(export.problems[0].reason.contains("would create a new contact"));
        }
        let delta = exporter.build(ExportKind::Delta).await.unwrap();
        assert_eq!(delta.rows(), 0, "switching back: nothing left to import");
    })
    .await;
}

#[tokio::test]
async fn the_same_state_and_clock_give_the_same_bytes() {
    each(|store| async move {
        for (label, member) in [("z", "1003"), ("a", "1001"), ("m", "1002")] {
            mentor(&store, "hlf", label, Some(member), Some(day(2026, 12, 31)), false).await;
        }
        mentor(&store, "hlf", "bad", Some("1/2"), Some(day(2026, 12, 31)), false).await;
        let exporter = exporter(&store, clock(), None);
        let first = exporter.build(ExportKind::Full).await.unwrap();
        let second = exporter.build(ExportKind::Full).await.unwrap();
        assert_eq!(first, second);
        // Rows follow the app's mentor ids, not insertion order.
        assert!(
            all_rows(&first)
                .ends_with("1001,active,2026-12-31,Yes\n1002,active,2026-12-31,Yes\n1003,active,2026-12-31,Yes\n")
        );
    })
    .await;
}
