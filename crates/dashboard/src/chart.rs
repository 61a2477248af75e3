//! The overview's chart: records synced and failures of the last runs, as inline SVG made on the server. It needs
//! no script and no network; the colours come from the stylesheet through class names.

use maud::{Markup, html};

use crate::i18n::Lang;
use crate::view::{CHART_RUNS, ChartPoint};

const WIDTH: u32 = 640;
const HEIGHT: u32 = 170;
const LEFT: u32 = 44;
const RIGHT: u32 = 8;
const TOP: u32 = 12;
const BOTTOM: u32 = 26;

/// A bar chart with one slot per run (oldest left), a synced and a failed bar in each. Every slot has a tooltip.
/// Times are shown in `tz`, words in `lang`; the figures page beside it has the same numbers as a table.
pub(crate) fn runs_chart(points: &[ChartPoint], tz: chrono_tz::Tz, lang: Lang) -> Markup {
    let plot_width = WIDTH - LEFT - RIGHT;
    let plot_height = HEIGHT - TOP - BOTTOM;
    let slot = plot_width / CHART_RUNS;
    let bar = (slot.saturating_sub(4) / 2).max(1);
    let max = points.iter().map(|p| p.synced.max(p.failed)).max().unwrap_or(0).max(1);
    let height_of = |value: u64| -> u32 {
        if value == 0 {
            return 0;
        }
        // Any non-zero count shows at least two pixels, so one failure among thousands is still visible.
        let scaled = value.saturating_mul(u64::from(plot_height)) / max;
        u32::try_from(scaled).unwrap_or(plot_height).clamp(2, plot_height)
    };
    let baseline = TOP + plot_height;
    let total = |f: fn(&ChartPoint) -> u64| points.iter().map(f).sum::<u64>();
    let label = if points.is_empty() {
        lang.t("chart.empty").to_owned()
    } else {
        lang.n(
            "chart.label",
            points.len() as u64,
            &[
                ("synced", &total(|p| p.synced)),
                ("failed", &total(|p| p.failed)),
                ("max", &max),
            ],
        )
    };
    html! {
        svg class="chart" viewBox={"0 0 " (WIDTH) " " (HEIGHT)} role="img" aria-label=(label)
            xmlns="http://www.w3.org/2000/svg" {
            line class="axis" x1=(LEFT) y1=(TOP) x2=(LEFT) y2=(baseline) {}
            line class="axis" x1=(LEFT) y1=(baseline) x2=(WIDTH - RIGHT) y2=(baseline) {}
            line class="grid" x1=(LEFT) y1=(TOP) x2=(WIDTH - RIGHT) y2=(TOP) {}
            text class="tick" x=(LEFT - 4) y=(TOP + 4) text-anchor="end" { (max) }
            text class="tick" x=(LEFT - 4) y=(baseline) text-anchor="end" { "0" }
            @if points.is_empty() {
                text class="empty" x=(LEFT + plot_width / 2) y=(TOP + plot_height / 2) text-anchor="middle" {
                    (lang.t("chart.empty"))
                }
            }
            @for (i, point) in points.iter().enumerate() {
                @let x = LEFT + 2 + slot * u32::try_from(i).unwrap_or(0);
                @let synced = height_of(point.synced);
                @let failed = height_of(point.failed);
                g class={"run run-" (status_class(point))} {
                    title {
                        (lang.f("chart.tooltip", &[
                            ("at", &lang.when(point.started_at, tz)),
                            ("synced", &point.synced),
                            ("failed", &point.failed),
                            ("status", &status_text(point, lang)),
                        ]))
                    }
                    rect class="synced" x=(x) y=(baseline - synced) width=(bar) height=(synced) {}
                    rect class="failed" x=(x + bar) y=(baseline - failed) width=(bar) height=(failed) {}
                    @if point_status_failed(point) {
                        text class="marker" x=(x + bar) y=(baseline - 2) text-anchor="middle" { "×" }
                    }
                }
            }
            @if let (Some(first), Some(last)) = (points.first(), points.last()) {
                text class="tick" x=(LEFT) y=(HEIGHT - 8) { (lang.date(first.started_at.with_timezone(&tz).date_naive())) }
                text class="tick" x=(WIDTH - RIGHT) y=(HEIGHT - 8) text-anchor="end" {
                    (lang.when(last.started_at, tz))
                }
            }
        }
        p class="legend" {
            span class="key key-synced" {} " " (lang.t("chart.legend_synced")) " "
            span class="key key-failed" {} " " (lang.t("chart.legend_failed")) " "
            span class="key-marker" { "×" } " " (lang.t("chart.legend_run_failed"))
        }
    }
}

fn point_status_failed(point: &ChartPoint) -> bool {
    point.status == sync_store::RunStatus::Failed
}

fn status_text(point: &ChartPoint, lang: Lang) -> &'static str {
    match point.status {
        sync_store::RunStatus::Running => lang.t("status.running"),
        sync_store::RunStatus::Succeeded => lang.t("status.succeeded"),
        sync_store::RunStatus::Partial => lang.t("status.partial"),
        sync_store::RunStatus::Failed => lang.t("status.failed"),
    }
}

fn status_class(point: &ChartPoint) -> &'static str {
    match point.status {
        sync_store::RunStatus::Running => "running",
        sync_store::RunStatus::Succeeded => "succeeded",
        sync_store::RunStatus::Partial => "partial",
        sync_store::RunStatus::Failed => "failed",
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Duration};
    use sync_store::RunStatus;

    use super::*;

    #[test]
    fn bars_scale_to_the_largest_count_and_small_failures_stay_visible() {
        let start = DateTime::from_timestamp(1_780_000_000, 0).unwrap_or_default();
        let points: Vec<ChartPoint> = (0..3)
            .map(|i| ChartPoint {
                started_at: start + Duration::days(i),
                status: if i == 2 {
                    RunStatus::Failed
                } else {
                    RunStatus::Succeeded
                },
                synced: [1000, 500, 0][usize::try_from(i).unwrap_or(0)],
                failed: [1, 0, 0][usize::try_from(i).unwrap_or(0)],
            })
            .collect();
        let svg = runs_chart(&points, chrono_tz::UTC, Lang::En).into_string();
        // The plot is 132 px high: 1000 fills it, 500 is half, one failure gets the 2 px minimum.
        assert!(
            svg.contains(r#"class="synced" x="46" y="12" width="7" height="132""#),
            "{svg}"
        );
        assert!(svg.contains(r#"height="66""#), "{svg}");
        assert!(
            svg.contains(r#"class="failed" x="53" y="142" width="7" height="2""#),
            "{svg}"
        );
        assert_eq!(svg.matches("<title>").count(), 3);
        assert!(svg.contains("run-failed"));
        assert!(!svg.contains("<script"));
    }

    #[test]
    fn an_empty_history_says_so() {
        assert!(
            runs_chart(&[], chrono_tz::UTC, Lang::En)
                .into_string()
                .contains("no runs yet")
        );
    }
}
