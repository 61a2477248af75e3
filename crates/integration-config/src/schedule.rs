//! When the next scheduled run is due, correct across daylight-saving changes.

use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, TimeZone, Utc};

use crate::settings::Schedule;

impl Schedule {
    /// The first run strictly after `now`. A nightly time that does not exist on a spring-forward day (02:30 in
    /// Europe/Oslo on the last Sunday of March) runs at the first local time after the gap; a time that occurs twice
    /// on a fall-back day runs at the first occurrence only.
    pub fn next_after(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        match *self {
            Schedule::Every(interval) => now + Duration::from_std(interval).unwrap_or(Duration::hours(1)),
            Schedule::Nightly { at, time_zone } => {
                let mut day = now.with_timezone(&time_zone).date_naive();
                loop {
                    let candidate = resolve(&time_zone, day.and_time(at));
                    if candidate > now {
                        return candidate;
                    }
                    day = day.succ_opt().unwrap_or(day);
                }
            }
        }
    }
}

fn resolve<Z: TimeZone>(zone: &Z, local: NaiveDateTime) -> DateTime<Utc> {
    let mut probe = local;
    // Daylight-saving gaps are at most a few hours; walk forward a minute at a time to the first valid local time.
    for _ in 0..(4 * 60) {
        match zone.from_local_datetime(&probe) {
            LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => return t.with_timezone(&Utc),
            LocalResult::None => probe += Duration::minutes(1),
        }
    }
    // No zone has a gap this long; fall back to reading the time as UTC rather than looping forever.
    local.and_utc()
}

#[cfg(test)]
mod tests {
    use chrono::NaiveTime;
    use chrono_tz::Europe::Oslo;

    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[track_caller]
    fn check(at: &str, now: &str, expected: &str) {
        let schedule = Schedule::Nightly {
            at: NaiveTime::parse_from_str(at, "%H:%M").unwrap(),
            time_zone: Oslo,
        };
        assert_eq!(schedule.next_after(utc(now)), utc(expected), "nightly {at} after {now}");
    }

    #[test]
    fn nightly_runs_follow_oslo_local_time() {
        // Winter (UTC+1) and summer (UTC+2).
        check("02:00", "2026-01-10T12:00:00Z", "2026-01-11T01:00:00Z");
        check("02:00", "2026-07-10T12:00:00Z", "2026-07-11T00:00:00Z");
        // Just before and exactly at the run time: exactly at is not "after".
        check("02:00", "2026-01-11T00:59:59Z", "2026-01-11T01:00:00Z");
        check("02:00", "2026-01-11T01:00:00Z", "2026-01-12T01:00:00Z");
        // Spring forward, 2026-03-29: 02:00-03:00 does not exist; the run happens at 03:00 local (01:00 UTC).
        check("02:00", "2026-03-28T12:00:00Z", "2026-03-29T01:00:00Z");
        check("02:30", "2026-03-28T12:00:00Z", "2026-03-29T01:00:00Z");
        // The day after, normal summer time again.
        check("02:00", "2026-03-29T12:00:00Z", "2026-03-30T00:00:00Z");
        // Fall back, 2026-10-25: 02:30 happens twice; only the first (UTC+2) counts.
        check("02:30", "2026-10-24T12:00:00Z", "2026-10-25T00:30:00Z");
        check("02:30", "2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z");
        // Midnight runs around the year boundary.
        check("00:00", "2026-12-31T23:30:00Z", "2027-01-01T23:00:00Z");
    }

    #[test]
    fn interval_schedule_adds_the_interval() {
        let schedule = Schedule::Every(std::time::Duration::from_secs(900));
        assert_eq!(
            schedule.next_after(utc("2026-01-01T00:00:00Z")),
            utc("2026-01-01T00:15:00Z")
        );
    }
}
