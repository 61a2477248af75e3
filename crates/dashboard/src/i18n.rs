//! The dashboard's languages: Norwegian bokmål and English. Every text a page shows lives in one catalogue per
//! language (`texts/nb.toml`, `texts/en.toml`), looked up by key; a test fails when a key is missing in either, when
//! the two disagree on a text's placeholders, or when the code uses a key neither has.
//!
//! The language of a page is, in order: the reader's choice (the `lang` cookie the switch on every page sets), the
//! browser's `Accept-Language` when it names one of the two, and the first organisation's `language`.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::sync::{Arc, LazyLock};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use maud::{Markup, PreEscaped, html};

use crate::Shared;

/// The cookie that remembers the reader's choice.
pub(crate) const COOKIE: &str = "hlf_dashboard_lang";

/// A language of the dashboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lang {
    /// Norwegian bokmål, HLF's language.
    Nb,
    /// English.
    En,
}

/// Both languages, bokmål first.
pub(crate) const LANGS: [Lang; 2] = [Lang::Nb, Lang::En];

type Catalogue = BTreeMap<String, String>;

static NB: LazyLock<Catalogue> = LazyLock::new(|| parse(include_str!("../texts/nb.toml")));
static EN: LazyLock<Catalogue> = LazyLock::new(|| parse(include_str!("../texts/en.toml")));

/// A catalogue's TOML as `section.key` → text. The files are part of the build and tested, so a broken one is a bug
/// caught before release, never a reader's problem; a key that is not a string is left out (and the parity test
/// names it).
fn parse(text: &str) -> Catalogue {
    fn walk(prefix: &str, table: &toml::Table, out: &mut Catalogue) {
        for (key, value) in table {
            let key = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            match value {
                toml::Value::String(text) => {
                    out.insert(key, text.clone());
                }
                toml::Value::Table(inner) => walk(&key, inner, out),
                _ => {}
            }
        }
    }
    let table: toml::Table = text.parse().unwrap_or_default();
    let mut out = Catalogue::new();
    walk("", &table, &mut out);
    out
}

impl Lang {
    /// The BCP 47 code, as `<html lang>` and the switch use it.
    pub(crate) fn code(self) -> &'static str {
        match self {
            Lang::Nb => "nb",
            Lang::En => "en",
        }
    }

    /// The language of a code the switch uses: exactly `nb` or `en`.
    pub(crate) fn from_code(code: &str) -> Option<Lang> {
        LANGS.into_iter().find(|lang| lang.code() == code)
    }

    /// The language a tag names: `nb`, `no` and `nn` (a nynorsk reader reads bokmål sooner than English) with any
    /// region, and `en` with any region.
    pub(crate) fn from_tag(tag: &str) -> Option<Lang> {
        let primary = tag.trim().split(['-', '_']).next().unwrap_or("").to_ascii_lowercase();
        match primary.as_str() {
            "nb" | "no" | "nn" => Some(Lang::Nb),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    /// The language of a request: the cookie, then `Accept-Language`, then `default`.
    pub(crate) fn negotiate(headers: &HeaderMap, default: Lang) -> Lang {
        cookie_choice(headers)
            .or_else(|| accept_language(headers))
            .unwrap_or(default)
    }

    fn catalogue(self) -> &'static Catalogue {
        match self {
            Lang::Nb => &NB,
            Lang::En => &EN,
        }
    }

    /// The text of `key`. A key missing from the catalogue (which the tests rule out) shows as the key itself.
    pub(crate) fn t(self, key: &'static str) -> &'static str {
        self.catalogue().get(key).map_or(key, String::as_str)
    }

    /// The text of `key` with each `{name}` replaced by its argument.
    pub(crate) fn f(self, key: &'static str, args: &[(&str, &dyn Display)]) -> String {
        fill(self.t(key), args)
    }

    /// The text of `key.one` or `key.other` by `n`, with `{n}` and `args` filled in.
    pub(crate) fn n(self, key: &'static str, n: u64, args: &[(&str, &dyn Display)]) -> String {
        let form = if n == 1 { "one" } else { "other" };
        let text = self
            .catalogue()
            .get(&format!("{key}.{form}"))
            .map_or(key, String::as_str);
        let mut all: Vec<(&str, &dyn Display)> = vec![("n", &n)];
        all.extend_from_slice(args);
        fill(text, &all)
    }

    /// The text of `key` as markup, each `{name}` replaced by a piece of markup (a link, a code span) and the rest
    /// escaped.
    pub(crate) fn rich(self, key: &'static str, args: &[(&str, Markup)]) -> Markup {
        let mut out = String::new();
        let mut rest = self.t(key);
        while let Some(open) = rest.find('{') {
            let Some(close) = rest[open..].find('}').map(|c| open + c) else {
                break;
            };
            out.push_str(&html! { (rest[..open]) }.into_string());
            let name = &rest[open + 1..close];
            match args.iter().find(|(n, _)| *n == name) {
                Some((_, markup)) => out.push_str(&markup.0),
                None => out.push_str(&html! { (rest[open..=close]) }.into_string()),
            }
            rest = &rest[close + 1..];
        }
        out.push_str(&html! { (rest) }.into_string());
        PreEscaped(out)
    }

    /// A date in the language's format: `2.12.2026` or `2 Dec 2026`.
    pub(crate) fn date(self, date: NaiveDate) -> String {
        let month = self.month(date.month());
        self.f(
            "format.date",
            &[
                ("day", &date.day()),
                ("month", &date.month()),
                ("month_name", &month),
                ("year", &date.year()),
            ],
        )
    }

    fn month(self, month: u32) -> &'static str {
        const KEYS: [&str; 12] = [
            "month.1", "month.2", "month.3", "month.4", "month.5", "month.6", "month.7", "month.8", "month.9",
            "month.10", "month.11", "month.12",
        ];
        KEYS.get(month as usize - 1).map_or("", |key| self.t(key))
    }

    /// An instant in `tz` with the zone's abbreviation: `2.12.2026 kl. 02:00 CET` or `2 Dec 2026, 02:00 CET`
    /// (`CEST` in summer).
    pub(crate) fn when(self, at: DateTime<Utc>, tz: chrono_tz::Tz) -> String {
        let local = at.with_timezone(&tz);
        self.f(
            "format.datetime",
            &[
                ("date", &self.date(local.date_naive())),
                ("time", &local.format("%H:%M")),
                ("zone", &local.format("%Z")),
            ],
        )
    }

    /// How long ago `at` was, or how far ahead it is: `for 3 timer siden` / `3 hours ago`, `om 2 dager` /
    /// `in 2 days`.
    pub(crate) fn relative(self, at: DateTime<Utc>, now: DateTime<Utc>) -> String {
        let minutes = (now - at).num_minutes();
        let (key, n) = match minutes.unsigned_abs() {
            0 => return self.t("relative.now").to_owned(),
            m if m < 120 => ("minutes", m),
            m if m < 48 * 60 => ("hours", m / 60),
            m => ("days", m / (24 * 60)),
        };
        let key = match (minutes > 0, key) {
            (true, "minutes") => "relative.ago.minutes",
            (true, "hours") => "relative.ago.hours",
            (true, _) => "relative.ago.days",
            (false, "minutes") => "relative.ahead.minutes",
            (false, "hours") => "relative.ahead.hours",
            (false, _) => "relative.ahead.days",
        };
        self.n(key, n, &[])
    }

    /// A span of time for people: `3 dager 4 t`, `5 h 10 min`, `42 s`.
    pub(crate) fn span(self, seconds: u64) -> String {
        let (days, hours, minutes) = (seconds / 86_400, seconds % 86_400 / 3600, seconds % 3600 / 60);
        match (days, hours, minutes) {
            (0, 0, 0) => self.f("span.seconds", &[("s", &seconds)]),
            (0, 0, m) => self.f("span.minutes", &[("m", &m)]),
            (0, h, m) => self.f("span.hours", &[("h", &h), ("m", &m)]),
            (d, 0, _) => self.n("span.whole_days", d, &[]),
            (d, h, _) => self.n("span.days", d, &[("h", &h)]),
        }
    }

    /// A duration in milliseconds: `850 ms`, `1,3 s` / `1.3 s`.
    pub(crate) fn duration(self, ms: u64) -> String {
        if ms < 1000 {
            return format!("{ms} ms");
        }
        let seconds = format!("{:.1}", ms as f64 / 1000.0);
        let seconds = match self {
            Lang::Nb => seconds.replace('.', ","),
            Lang::En => seconds,
        };
        format!("{seconds} s")
    }
}

impl From<integration_config::Language> for Lang {
    fn from(language: integration_config::Language) -> Self {
        match language {
            integration_config::Language::English => Lang::En,
            _ => Lang::Nb,
        }
    }
}

fn fill(text: &str, args: &[(&str, &dyn Display)]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}').map(|c| open + c) else {
            break;
        };
        out.push_str(&rest[..open]);
        let name = &rest[open + 1..close];
        match args.iter().find(|(n, _)| *n == name) {
            Some((_, value)) => out.push_str(&value.to_string()),
            None => out.push_str(&rest[open..=close]),
        }
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

/// The language the reader chose with the switch, from the `Cookie` headers.
fn cookie_choice(headers: &HeaderMap) -> Option<Lang> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .and_then(|(_, value)| Lang::from_tag(value))
}

/// The language of the highest-weighted tag of `Accept-Language` that names one of the two (the first of equals).
fn accept_language(headers: &HeaderMap) -> Option<Lang> {
    let mut best: Option<(f32, Lang)> = None;
    for value in headers.get_all(header::ACCEPT_LANGUAGE).iter() {
        let Ok(value) = value.to_str() else { continue };
        for item in value.split(',') {
            let mut parts = item.split(';');
            let tag = parts.next().unwrap_or("");
            let quality = parts
                .find_map(|p| p.trim().strip_prefix("q="))
                .map_or(Some(1.0), |q| q.trim().parse::<f32>().ok())
                .unwrap_or(0.0);
            let Some(lang) = Lang::from_tag(tag) else { continue };
            if quality > 0.0 && best.is_none_or(|(q, _)| quality > q) {
                best = Some((quality, lang));
            }
        }
    }
    best.map(|(_, lang)| lang)
}

/// The default language: the first organisation's.
pub(crate) fn default_lang(shared: &Shared) -> Lang {
    shared
        .config
        .organisations
        .first()
        .map_or(Lang::Nb, |o| Lang::from(o.language))
}

impl FromRequestParts<Arc<Shared>> for Lang {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, shared: &Arc<Shared>) -> Result<Self, Self::Rejection> {
        Ok(Lang::negotiate(&parts.headers, default_lang(shared)))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use axum::http::HeaderValue;
    use chrono::TimeZone;

    use super::*;

    fn placeholders(text: &str) -> BTreeSet<&str> {
        let mut out = BTreeSet::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            let Some(close) = rest[open..].find('}').map(|c| open + c) else {
                break;
            };
            out.insert(&rest[open + 1..close]);
            rest = &rest[close + 1..];
        }
        out
    }

    #[test]
    fn both_catalogues_have_every_key_with_the_same_placeholders() {
        let nb = parse(include_str!("../texts/nb.toml"));
        let en = parse(include_str!("../texts/en.toml"));
        assert!(nb.len() > 100, "the bokmål catalogue did not parse: {} keys", nb.len());
        let missing_nb: Vec<&String> = en.keys().filter(|k| !nb.contains_key(*k)).collect();
        let missing_en: Vec<&String> = nb.keys().filter(|k| !en.contains_key(*k)).collect();
        assert!(missing_nb.is_empty(), "missing in texts/nb.toml: {missing_nb:?}");
        assert!(missing_en.is_empty(), "missing in texts/en.toml: {missing_en:?}");
        for (key, text) in &nb {
            // A format picks which of the parts it shows (`2.12.2026` has no month name).
            if key.starts_with("format.") {
                continue;
            }
            assert_eq!(
                placeholders(text),
                placeholders(&en[key]),
                "{key}: the two languages fill in different values"
            );
            assert!(!text.trim().is_empty() && !en[key].trim().is_empty(), "{key} is empty");
        }
        // Bokmål is not English copied over: most texts differ.
        let same = nb.iter().filter(|(key, text)| en.get(*key) == Some(*text)).count();
        assert!(
            same * 5 < nb.len(),
            "{same} of {} bokmål texts are the English ones",
            nb.len()
        );
        // Every value is a string: a number or a list would be dropped without a word.
        for file in [include_str!("../texts/nb.toml"), include_str!("../texts/en.toml")] {
            let table: toml::Table = file.parse().expect("a catalogue is valid TOML");
            fn strings_only(table: &toml::Table) {
                for (key, value) in table {
                    match value {
                        toml::Value::String(_) => {}
                        toml::Value::Table(inner) => strings_only(inner),
                        other => panic!("{key} is a {}, not a text", other.type_str()),
                    }
                }
            }
            strings_only(&table);
        }
    }

    /// Every key the code names exists: a typo shows up here, not as a raw key on a page.
    #[test]
    fn every_key_the_code_uses_is_in_the_catalogues() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut used = BTreeSet::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "rs") {
                let source = std::fs::read_to_string(&path).unwrap();
                for call in [".t(\"", ".f(\"", ".n(\"", ".rich(\""] {
                    for (at, _) in source.match_indices(call) {
                        let rest = &source[at + call.len()..];
                        if let Some(end) = rest.find('"') {
                            used.insert(rest[..end].to_owned());
                        }
                    }
                }
            }
        }
        assert!(used.len() > 100, "found only {} keys in the source", used.len());
        let nb = parse(include_str!("../texts/nb.toml"));
        for key in &used {
            let plural = nb.contains_key(&format!("{key}.one")) && nb.contains_key(&format!("{key}.other"));
            assert!(
                nb.contains_key(key) || plural,
                "the code uses {key}, which texts/nb.toml lacks"
            );
        }
    }

    #[test]
    fn the_reader_s_choice_wins_then_the_browser_then_the_organisation() {
        let headers = |pairs: &[(&str, &str)]| {
            let mut map = HeaderMap::new();
            for (name, value) in pairs {
                map.append(
                    axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    HeaderValue::from_str(value).unwrap(),
                );
            }
            map
        };
        // The request's headers, the organisation's language, the page's language.
        type Case<'a> = (&'a [(&'a str, &'a str)], Lang, Lang);
        let table: [Case<'_>; 11] = [
            (&[], Lang::Nb, Lang::Nb),
            (&[], Lang::En, Lang::En),
            (&[("accept-language", "en-GB,en;q=0.9")], Lang::Nb, Lang::En),
            (&[("accept-language", "nb-NO,nb;q=0.9,en;q=0.8")], Lang::En, Lang::Nb),
            (&[("accept-language", "de-DE,en;q=0.5,no;q=0.7")], Lang::En, Lang::Nb),
            (&[("accept-language", "nn")], Lang::En, Lang::Nb),
            // Neither language named: the organisation's.
            (&[("accept-language", "de, fr;q=0.8")], Lang::Nb, Lang::Nb),
            (&[("accept-language", "en;q=0")], Lang::Nb, Lang::Nb),
            (&[("accept-language", "*")], Lang::En, Lang::En),
            (
                &[("accept-language", "en"), ("cookie", "other=1; hlf_dashboard_lang=nb")],
                Lang::En,
                Lang::Nb,
            ),
            (
                &[("accept-language", "nb"), ("cookie", "hlf_dashboard_lang=xx")],
                Lang::En,
                Lang::Nb,
            ),
        ];
        for (pairs, default, expected) in table {
            assert_eq!(Lang::negotiate(&headers(pairs), default), expected, "{pairs:?}");
        }
    }

    #[test]
    fn times_and_dates_follow_the_language_and_the_zone_across_daylight_saving() {
        let oslo = chrono_tz::Europe::Oslo;
        let winter = Utc.with_ymd_and_hms(2026, 12, 2, 1, 0, 0).unwrap();
        let summer = Utc.with_ymd_and_hms(2026, 6, 2, 0, 0, 0).unwrap();
        assert_eq!(Lang::Nb.when(winter, oslo), "2.12.2026 kl. 02:00 CET");
        assert_eq!(Lang::En.when(winter, oslo), "2 Dec 2026, 02:00 CET");
        assert_eq!(Lang::Nb.when(summer, oslo), "2.6.2026 kl. 02:00 CEST");
        assert_eq!(Lang::En.when(summer, oslo), "2 Jun 2026, 02:00 CEST");
        // The night the clocks go back, 02:30 happens twice; the abbreviation tells them apart.
        let first = Utc.with_ymd_and_hms(2026, 10, 25, 0, 30, 0).unwrap();
        let second = Utc.with_ymd_and_hms(2026, 10, 25, 1, 30, 0).unwrap();
        assert_eq!(Lang::Nb.when(first, oslo), "25.10.2026 kl. 02:30 CEST");
        assert_eq!(Lang::Nb.when(second, oslo), "25.10.2026 kl. 02:30 CET");
        let date = NaiveDate::from_ymd_opt(2027, 3, 31).unwrap();
        assert_eq!(Lang::Nb.date(date), "31.3.2027");
        assert_eq!(Lang::En.date(date), "31 Mar 2027");
    }

    #[test]
    fn relative_times_read_naturally_in_both_languages() {
        let now = Utc.with_ymd_and_hms(2026, 12, 2, 12, 0, 0).unwrap();
        let table = [
            (0, "akkurat nå", "just now"),
            (1, "for 1 minutt siden", "1 minute ago"),
            (45, "for 45 minutter siden", "45 minutes ago"),
            (180, "for 3 timer siden", "3 hours ago"),
            (60 * 24 * 3, "for 3 dager siden", "3 days ago"),
            (-90, "om 90 minutter", "in 90 minutes"),
            (-60 * 14, "om 14 timer", "in 14 hours"),
            (-60 * 24, "om 24 timer", "in 24 hours"),
            (-60 * 24 * 2, "om 2 dager", "in 2 days"),
        ];
        for (minutes_ago, nb, en) in table {
            let at = now - chrono::Duration::minutes(minutes_ago);
            assert_eq!(Lang::Nb.relative(at, now), nb);
            assert_eq!(Lang::En.relative(at, now), en);
        }
        assert_eq!(Lang::Nb.span(3 * 86_400 + 4 * 3600), "3 dager 4 t");
        assert_eq!(Lang::En.span(86_400 + 3600), "1 day 1 h");
        assert_eq!(Lang::Nb.span(5 * 3600 + 600), "5 t 10 min");
        assert_eq!(Lang::En.span(42), "42 s");
        assert_eq!(Lang::Nb.span(86_400), "1 dag");
        assert_eq!(Lang::En.span(2 * 86_400 + 59), "2 days");
        assert_eq!(Lang::Nb.duration(1250), "1,2 s");
        assert_eq!(Lang::En.duration(1250), "1.2 s");
        assert_eq!(Lang::En.duration(850), "850 ms");
    }

    #[test]
    fn rich_texts_escape_the_words_and_keep_the_markup() {
        let shown = Lang::En
            .rich(
                "privileges.help",
                &[("command", html! { code { "health-check --privileges" } })],
            )
            .into_string();
        assert!(shown.contains("<code>health-check --privileges</code>"), "{shown}");
        assert_eq!(
            fill("{a} and {b} and {c}", &[("a", &1), ("b", &"<x>")]),
            "1 and <x> and {c}"
        );
    }
}
