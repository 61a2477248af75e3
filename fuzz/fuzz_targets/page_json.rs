//! The page decoder: a page of rows with `@odata.count`, `@odata.nextLink` and `@odata.deltaLink`, read both as plain
//! rows and as a change-tracking page (upserts and `$deletedEntity` rows).
//!
//! Beyond "no panic": decoding is deterministic; a next link is only ever accepted on the instance's own origin (so
//! the bearer token never leaves for another host), and the same holds for a delta link when it is followed; a change
//! page has one change per row.

#![no_main]

use std::sync::LazyLock;

use dynamics_client::fuzzing::{change_page, follow_link, page_of_rows};
use libfuzzer_sys::fuzz_target;
use url::Url;

static API_BASE: LazyLock<Url> =
    LazyLock::new(|| Url::parse("https://hlf.crm4.dynamics.com/api/data/v9.2/").expect("a valid base URL"));

fuzz_target!(|data: &[u8]| {
    let base = &*API_BASE;

    let rows = page_of_rows(data, base);
    match (&rows, &page_of_rows(data, base)) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "decoding is not deterministic"),
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "decoding is not deterministic"),
        _ => panic!("decoding is not deterministic"),
    }
    if let Ok((page, next)) = &rows {
        if let Some(next) = next {
            assert_eq!(next.origin(), base.origin(), "a next link to another host was accepted");
        }
        if let Some(delta) = &page.delta_link
            && let Ok(url) = follow_link(base, delta)
        {
            assert_eq!(url.origin(), base.origin(), "a delta link to another host was accepted");
        }
    }

    let changes = change_page(data, base);
    match (&changes, &change_page(data, base)) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "decoding is not deterministic"),
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "decoding is not deterministic"),
        _ => panic!("decoding is not deterministic"),
    }
    if let (Ok((changes, _)), Ok((rows, _))) = (&changes, &rows) {
        assert_eq!(changes.changes.len(), rows.rows.len(), "one change per row");
        assert_eq!(changes.delta_link, rows.delta_link);
    }
});
