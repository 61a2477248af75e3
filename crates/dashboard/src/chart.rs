//! The overview's chart: records synced and failures of the last runs, as inline SVG made on the server. It needs
//! no script and no network; the colours come from the stylesheet through class names.

use maud::{Markup, html};

use crate::view::{CHART_RUNS, ChartPoint};

const WIDTH: u32 = 640;
const HEIGHT: u32 = 170;
const LEFT: u32 = 44;
const RIGHT: u32 = 8;
const TOP: u32 = 12;
const BOTTOM: u32 = 26;

/// A bar chart with one slot per run (oldest left), a synced and a failed bar in each. Every slot has a tooltip.
/// Times are shown in `tz`.
pub(crate) fn runs_chart(points: &[ChartPoint], tz: chrono_tz::Tz) -> Markup {
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
    let label = format!(
        "Records synced and failed in the last {} runs; most synced in one run: {max}",
        points.len()
    );
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
                    "no runs yet"
                }
            }
            @for (i, point) in points.iter().enumerate() {
                @let x = LEFT + 2 + slot * u32::try_from(i).unwrap_or(0);
                @let synced = height_of(point.synced);
                @let failed = height_of(point.failed);
                g class={"run run-" (status_class(point))} {
                    title {
                        (point.started_at.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z")) ": " (point.synced) " synced, "
                        (point.failed) " failed (" (status_class(point)) ")"
                    }
                    rect class="synced" x=(x) y=(baseline - synced) width=(bar) height=(synced) {}
                    rect class="failed" x=(x + bar) y=(baseline - failed) width=(bar) height=(failed) {}
                    @if point_status_failed(point) {
                        text class="marker" x=(x + bar) y=(baseline - 2) text-anchor="middle" { "×" }
                    }
                }
            }
            @if let (Some(first), Some(last)) = (points.first(), points.last()) {
                text class="tick" x=(LEFT) y=(HEIGHT - 8) { (first.started_at.with_timezone(&tz).format("%Y-%m-%d")) }
                text class="tick" x=(WIDTH - RIGHT) y=(HEIGHT - 8) text-anchor="end" {
                    (last.started_at.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z"))
                }
            }
        }
        p class="legend" {
            span class="key key-synced" {} " records synced "
            span class="key key-failed" {} " records failed "
            span class="key-marker" { "×" } " run failed"
        }
    }
}

fn point_status_failed(point: &ChartPoint) -> bool {
    point.status == sync_store::RunStatus::Failed
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
        let svg = runs_chart(&points, chrono_tz::UTC).into_string();
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
        assert!(runs_chart(&[], chrono_tz::UTC).into_string().contains("no runs yet"));
    }
}
