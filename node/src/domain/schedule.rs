//! Campaign schedules: when runs happen, when each endpoint is due, quiet time (SPEC CMP-2, CMP-3).
//!
//! A schedule has *nominal* run times: wall-clock times with no zone. A run is due for an
//! endpoint at the instant its nominal time shows on a clock in the campaign zone, or, for
//! local-time schedules, on a clock in the endpoint's own zone. Clock times that a DST change
//! skips are moved forward by the length of the skip; clock times it repeats take the earlier
//! instant.

use chrono::{
    DateTime, LocalResult, Months, NaiveDateTime, NaiveTime, Offset, TimeDelta, TimeZone, Utc,
};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use super::project::QuietTime;
use super::violation::FieldViolation;

/// The `start_time` that means "run as soon as the campaign is created".
pub const IMMEDIATE: &str = "IMMEDIATE";

/// Hours the most-ahead zone (Pacific/Kiritimati, UTC+14) is ahead of UTC.
const MOST_AHEAD_OFFSET_HOURS: i64 = 14;

/// Hours the most-behind zone (Etc/GMT+12, UTC-12) is behind UTC.
const MOST_BEHIND_OFFSET_HOURS: i64 = 12;

/// Step used to walk back out of a DST gap; gaps start on whole quarter hours or later.
const GAP_WALK_STEP_MINUTES: i64 = 15;

/// Longest walk back out of a DST gap (Pacific/Apia skipped a whole day in 2011).
const GAP_WALK_MAX_STEPS: i64 = 4 * 48;

/// How far ahead [`quiet_ends`] looks; a quiet period lasts under a day, plus a DST shift.
const QUIET_SEARCH_DAYS: i64 = 3;

/// Step used to look for the next UTC-offset change of a zone; zones never change offset twice
/// within an hour.
const OFFSET_PROBE_SECONDS: i64 = 3600;

/// How often a campaign runs (SPEC CMP-2, CMP-3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Frequency {
    /// One run at `start_time`.
    Once,
    /// A run every hour of wall-clock time from `start_time`.
    Hourly,
    /// A run every day at `start_time`'s clock time.
    Daily,
    /// A run every week on `start_time`'s weekday and clock time.
    Weekly,
    /// A run every month on `start_time`'s day (clamped to the month's length) and clock time.
    Monthly,
    /// No scheduled runs: the campaign runs when a matching event arrives.
    Event,
}

impl Frequency {
    /// Every frequency, in declaration order.
    pub const ALL: [Frequency; 6] = [
        Frequency::Once,
        Frequency::Hourly,
        Frequency::Daily,
        Frequency::Weekly,
        Frequency::Monthly,
        Frequency::Event,
    ];

    /// The wire name: "ONCE", "HOURLY", "DAILY", "WEEKLY", "MONTHLY" or "EVENT".
    pub fn as_str(self) -> &'static str {
        match self {
            Frequency::Once => "ONCE",
            Frequency::Hourly => "HOURLY",
            Frequency::Daily => "DAILY",
            Frequency::Weekly => "WEEKLY",
            Frequency::Monthly => "MONTHLY",
            Frequency::Event => "EVENT",
        }
    }

    /// Parses a wire name, ignoring case; None when it names no frequency.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|frequency| frequency.as_str().eq_ignore_ascii_case(s))
    }

    /// Whether runs repeat (HOURLY, DAILY, WEEKLY, MONTHLY); such schedules need an end time.
    pub fn is_recurring(self) -> bool {
        matches!(
            self,
            Frequency::Hourly | Frequency::Daily | Frequency::Weekly | Frequency::Monthly
        )
    }
}

/// When a campaign (or one treatment) runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    /// RFC 3339 instant of the first run, or "IMMEDIATE".
    pub start_time: String,
    /// RFC 3339 instant after which no run starts; empty: none (required for recurring).
    pub end_time: String,
    /// How often the campaign runs.
    pub frequency: Frequency,
    /// Each endpoint gets a run at the run's clock time in its own time zone.
    pub is_local_time: bool,
    /// IANA zone of the campaign: the zone of the clock times of runs, and the zone of
    /// endpoints that have none. Empty means "UTC".
    pub timezone: String,
    /// Overrides the project's quiet time when set.
    pub quiet_time: Option<QuietTime>,
}

/// Checks a schedule; every problem at once, fields named under `field` (e.g. "schedule.start_time").
/// Rules: start_time is "IMMEDIATE" or RFC 3339; end_time empty or RFC 3339 and after start;
/// recurring frequencies (HOURLY..MONTHLY) need an end_time; IMMEDIATE only with ONCE or EVENT;
/// timezone empty or a known IANA zone; quiet times "HH:MM" with both ends set or both empty.
pub fn validate_schedule(field: &str, schedule: &Schedule) -> Vec<FieldViolation> {
    let mut violations = Vec::new();
    let start_field = format!("{field}.start_time");
    let end_field = format!("{field}.end_time");
    let immediate = schedule.start_time == IMMEDIATE;

    let start = if immediate {
        if !matches!(schedule.frequency, Frequency::Once | Frequency::Event) {
            violations.push(FieldViolation::new(
                &start_field,
                format!(
                    "{IMMEDIATE} is only allowed with ONCE or EVENT, not {}",
                    schedule.frequency.as_str()
                ),
            ));
        }
        None
    } else {
        let start = parse_instant(&schedule.start_time);
        if start.is_none() {
            violations.push(FieldViolation::new(
                &start_field,
                format!(
                    "{:?} is neither {IMMEDIATE} nor an RFC 3339 instant (e.g. 2026-03-01T09:00:00Z)",
                    schedule.start_time
                ),
            ));
        }
        start
    };

    if schedule.end_time.is_empty() {
        if schedule.frequency.is_recurring() {
            violations.push(FieldViolation::new(
                &end_field,
                format!("is required for {} schedules", schedule.frequency.as_str()),
            ));
        }
    } else {
        match parse_instant(&schedule.end_time) {
            None => violations.push(FieldViolation::new(
                &end_field,
                format!(
                    "{:?} is not an RFC 3339 instant (e.g. 2026-04-01T00:00:00Z)",
                    schedule.end_time
                ),
            )),
            Some(end) => {
                if let Some(start) = start.filter(|start| end <= *start) {
                    violations.push(FieldViolation::new(
                        &end_field,
                        format!(
                            "{:?} is not after start_time {}",
                            schedule.end_time,
                            start.to_rfc3339()
                        ),
                    ));
                }
            }
        }
    }

    if !schedule.timezone.is_empty() && parse_zone(&schedule.timezone).is_none() {
        violations.push(FieldViolation::new(
            format!("{field}.timezone"),
            format!(
                "{:?} is not an IANA time zone (e.g. America/New_York)",
                schedule.timezone
            ),
        ));
    }

    if let Some(quiet) = &schedule.quiet_time {
        violations.extend(validate_quiet_time(&format!("{field}.quiet_time"), quiet));
    }
    violations
}

/// Checks a quiet time: both ends "HH:MM", or both empty.
fn validate_quiet_time(field: &str, quiet: &QuietTime) -> Vec<FieldViolation> {
    match (quiet.start.is_empty(), quiet.end.is_empty()) {
        (true, true) => Vec::new(),
        (false, false) => [("start", &quiet.start), ("end", &quiet.end)]
            .into_iter()
            .filter(|(_, value)| parse_clock_time(value).is_none())
            .map(|(name, value)| {
                FieldViolation::new(
                    format!("{field}.{name}"),
                    format!("{value:?} is not a clock time HH:MM (e.g. 22:00)"),
                )
            })
            .collect(),
        _ => vec![FieldViolation::new(
            field,
            "start and end must be given together",
        )],
    }
}

impl Schedule {
    /// The campaign zone (UTC when empty or unknown).
    pub fn zone(&self) -> Tz {
        parse_zone(&self.timezone).unwrap_or(Tz::UTC)
    }

    /// Nominal (wall-clock, zone-less) time of run number `n` (0-based), or None when it is past
    /// end_time or the schedule has no such run (ONCE has only run 0; EVENT has none).
    /// `created` is the instant the campaign was created: it resolves "IMMEDIATE".
    /// The first nominal time is start_time's wall clock in the campaign zone. Run n adds n
    /// hours / days / weeks / months to that wall clock (months from the start each time,
    /// clamped to the month's last day: Jan 31 -> Feb 28/29 -> Mar 31).
    /// A run is past end_time when its nominal time resolved in the campaign zone is after
    /// end_time (for local-time schedules too). Unparsable start or end times give no runs.
    pub fn nominal_run(&self, n: u32, created: DateTime<Utc>) -> Option<NaiveDateTime> {
        let zone = self.zone();
        let start = if self.start_time == IMMEDIATE {
            created
        } else {
            parse_instant(&self.start_time)?
        };
        let first = start.with_timezone(&zone).naive_local();
        let nominal = match self.frequency {
            Frequency::Event => return None,
            Frequency::Once if n > 0 => return None,
            Frequency::Once => first,
            Frequency::Hourly => first.checked_add_signed(TimeDelta::try_hours(n.into())?)?,
            Frequency::Daily => first.checked_add_signed(TimeDelta::try_days(n.into())?)?,
            Frequency::Weekly => first.checked_add_signed(TimeDelta::try_weeks(n.into())?)?,
            Frequency::Monthly => first.checked_add_months(Months::new(n))?,
        };
        if !self.end_time.is_empty() {
            let end = parse_instant(&self.end_time)?;
            if resolve_local(nominal, zone) > end {
                return None;
            }
        }
        Some(nominal)
    }

    /// The instant a run with nominal time `nominal` is due for an endpoint in zone `endpoint_zone`
    /// (None: the endpoint has no zone). Non-local schedules: the nominal time in the campaign zone
    /// for every endpoint. Local-time: the nominal time in the endpoint's zone (campaign zone when None).
    pub fn due_at(&self, nominal: NaiveDateTime, endpoint_zone: Option<Tz>) -> DateTime<Utc> {
        let zone = match endpoint_zone {
            Some(zone) if self.is_local_time => zone,
            _ => self.zone(),
        };
        resolve_local(nominal, zone)
    }

    /// The earliest instant any endpoint is due for this run (for local time: the nominal time in
    /// the most-ahead zone, i.e. nominal - 14 h as UTC; otherwise due_at(nominal, None)).
    pub fn earliest_due(&self, nominal: NaiveDateTime) -> DateTime<Utc> {
        if !self.is_local_time {
            return self.due_at(nominal, None);
        }
        nominal
            .checked_sub_signed(TimeDelta::hours(MOST_AHEAD_OFFSET_HOURS))
            .unwrap_or(NaiveDateTime::MIN)
            .and_utc()
    }

    /// The latest instant any endpoint is due (local time: nominal + 12 h as UTC, the most-behind
    /// zone; otherwise due_at(nominal, None)).
    pub fn latest_due(&self, nominal: NaiveDateTime) -> DateTime<Utc> {
        if !self.is_local_time {
            return self.due_at(nominal, None);
        }
        nominal
            .checked_add_signed(TimeDelta::hours(MOST_BEHIND_OFFSET_HOURS))
            .unwrap_or(NaiveDateTime::MAX)
            .and_utc()
    }
}

/// The UTC instant of a wall-clock time in `zone`. Across a DST gap (the clock time does not
/// exist) the time is moved forward by the gap (02:30 on a spring-forward night in
/// America/New_York -> 03:30 EDT); an ambiguous time (fall back) resolves to the earlier instant.
pub fn resolve_local(nominal: NaiveDateTime, zone: Tz) -> DateTime<Utc> {
    match zone.from_local_datetime(&nominal) {
        LocalResult::Single(at) => at.with_timezone(&Utc),
        LocalResult::Ambiguous(first, second) => first.min(second).with_timezone(&Utc),
        LocalResult::None => {
            // Read with the offset in force before the gap, the clock time lands the gap's
            // length after the gap's start: the clock time moved forward by the gap.
            let before = offset_before_gap(nominal, zone);
            nominal
                .checked_sub_signed(TimeDelta::seconds(before.into()))
                .unwrap_or(nominal)
                .and_utc()
        }
    }
}

/// The UTC offset, in seconds, in force just before the DST gap that swallows `nominal`.
fn offset_before_gap(nominal: NaiveDateTime, zone: Tz) -> i32 {
    (1..=GAP_WALK_MAX_STEPS)
        .map_while(|step| {
            nominal.checked_sub_signed(TimeDelta::minutes(step * GAP_WALK_STEP_MINUTES))
        })
        .find_map(|earlier| zone.from_local_datetime(&earlier).latest())
        .map_or_else(
            || offset_seconds(zone, nominal.and_utc()),
            |before| before.offset().fix().local_minus_utc(),
        )
}

/// The UTC offset of `zone` at `at`, in seconds east of UTC.
fn offset_seconds(zone: Tz, at: DateTime<Utc>) -> i32 {
    zone.offset_from_utc_datetime(&at.naive_utc())
        .fix()
        .local_minus_utc()
}

/// The UTC offset of `zone` at the whole second `timestamp`; None outside chrono's range.
fn offset_at_timestamp(zone: Tz, timestamp: i64) -> Option<i32> {
    DateTime::from_timestamp(timestamp, 0).map(|at| offset_seconds(zone, at))
}

/// The first instant after `from` at which `zone` changes its UTC offset, or `limit` when it
/// does not change before `limit`.
fn next_offset_change(zone: Tz, from: DateTime<Utc>, limit: DateTime<Utc>) -> DateTime<Utc> {
    let base = offset_seconds(zone, from);
    let limit_timestamp = limit.timestamp();
    // Offsets change on whole seconds, so the whole second at or before `from` has `base` too.
    let mut same = from.timestamp();
    let mut changed = loop {
        let probe = same.saturating_add(OFFSET_PROBE_SECONDS);
        if probe >= limit_timestamp {
            match offset_at_timestamp(zone, limit_timestamp) {
                Some(offset) if offset != base => break limit_timestamp,
                _ => return limit,
            }
        }
        match offset_at_timestamp(zone, probe) {
            Some(offset) if offset != base => break probe,
            Some(_) => same = probe,
            None => return limit,
        }
    };
    while changed - same > 1 {
        let middle = same + (changed - same) / 2;
        if offset_at_timestamp(zone, middle) == Some(base) {
            same = middle;
        } else {
            changed = middle;
        }
    }
    DateTime::from_timestamp(changed, 0)
        .filter(|change| *change < limit)
        .unwrap_or(limit)
}

/// A quiet period with distinct ends: local clock times at which no message is sent.
#[derive(Debug, Clone, Copy)]
struct QuietPeriod {
    /// First quiet clock time.
    start: NaiveTime,
    /// First clock time after the period.
    end: NaiveTime,
}

impl QuietPeriod {
    /// The period of `quiet`; None when it is never quiet (empty, unparsable or equal ends).
    fn parse(quiet: &QuietTime) -> Option<Self> {
        let start = parse_clock_time(&quiet.start)?;
        let end = parse_clock_time(&quiet.end)?;
        (start != end).then_some(Self { start, end })
    }

    /// Whether the local time of day `time` is quiet; a period with start > end wraps midnight.
    fn contains(self, time: NaiveTime) -> bool {
        if self.start < self.end {
            self.start <= time && time < self.end
        } else {
            time >= self.start || time < self.end
        }
    }
}

/// Parses a clock time "HH:MM" (exactly five characters, 00:00..23:59).
fn parse_clock_time(value: &str) -> Option<NaiveTime> {
    // chrono skips spaces before a number (" 7:00"), so the shape is checked first.
    let has_shape = value.len() == 5
        && value.bytes().enumerate().all(|(i, b)| {
            if i == 2 {
                b == b':'
            } else {
                b.is_ascii_digit()
            }
        });
    if !has_shape {
        return None;
    }
    NaiveTime::parse_from_str(value, "%H:%M").ok()
}

/// Whether `at` falls inside the quiet time `quiet` in `zone`: local time-of-day t is quiet when
/// start <= t < end (start < end) or t >= start || t < end (the period wraps midnight, start > end).
/// Empty or equal start/end: never quiet. Clock times parse as "HH:MM".
pub fn is_quiet(quiet: &QuietTime, at: DateTime<Utc>, zone: Tz) -> bool {
    QuietPeriod::parse(quiet).is_some_and(|period| period.contains(at.with_timezone(&zone).time()))
}

/// The first instant at or after `at` that is not quiet (== `at` when not quiet); handles DST days.
///
/// Between two UTC-offset changes of `zone` the local clock runs evenly, so within each such
/// stretch the quiet period ends where the clock first shows its end; an offset change can also
/// end it (clocks springing forward past the end, or falling back before the start).
pub fn quiet_ends(quiet: &QuietTime, at: DateTime<Utc>, zone: Tz) -> DateTime<Utc> {
    let Some(period) = QuietPeriod::parse(quiet) else {
        return at;
    };
    let Some(horizon) = at.checked_add_signed(TimeDelta::days(QUIET_SEARCH_DAYS)) else {
        return at;
    };
    let mut stretch_start = at;
    while stretch_start < horizon {
        let offset = TimeDelta::seconds(offset_seconds(zone, stretch_start).into());
        let Some(local) = stretch_start.naive_utc().checked_add_signed(offset) else {
            return at;
        };
        if !period.contains(local.time()) {
            return stretch_start;
        }
        let stretch_end = next_offset_change(zone, stretch_start, horizon);
        let end_local = next_clock_time(local, period.end);
        if let Some(end) = end_local.and_then(|end| end.checked_sub_signed(offset)) {
            let end = end.and_utc();
            if end < stretch_end {
                return end;
            }
        }
        stretch_start = stretch_end;
    }
    horizon
}

/// The first wall-clock time at or after `from` whose time of day is `time`.
fn next_clock_time(from: NaiveDateTime, time: NaiveTime) -> Option<NaiveDateTime> {
    let same_day = from.date().and_time(time);
    if same_day >= from {
        Some(same_day)
    } else {
        from.date()
            .succ_opt()
            .map(|next_day| next_day.and_time(time))
    }
}

/// Parses an IANA zone name; None when empty or unknown.
pub fn parse_zone(name: &str) -> Option<Tz> {
    if name.is_empty() {
        return None;
    }
    name.parse().ok()
}

/// Parses an RFC 3339 instant into UTC.
fn parse_instant(value: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(value)
        .ok()
        .map(|at| at.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, NaiveDate, SecondsFormat};
    use proptest::prelude::*;

    /// Zones with unusual offsets and DST rules: quarter- and half-hour offsets, +13/+13:45,
    /// 30-minute DST (Lord Howe), both hemispheres.
    const ZONES: [Tz; 8] = [
        Tz::Asia__Kathmandu,
        Tz::Pacific__Tongatapu,
        Tz::Pacific__Chatham,
        Tz::America__New_York,
        Tz::Europe__London,
        Tz::Australia__Lord_Howe,
        Tz::America__St_Johns,
        Tz::UTC,
    ];

    fn utc(text: &str) -> DateTime<Utc> {
        parse_instant(text).unwrap()
    }

    fn wall(text: &str) -> NaiveDateTime {
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M").unwrap()
    }

    fn quiet(start: &str, end: &str) -> QuietTime {
        QuietTime {
            start: start.to_string(),
            end: end.to_string(),
        }
    }

    fn schedule(start: &str, end: &str, frequency: Frequency, timezone: &str) -> Schedule {
        Schedule {
            start_time: start.to_string(),
            end_time: end.to_string(),
            frequency,
            is_local_time: false,
            timezone: timezone.to_string(),
            quiet_time: None,
        }
    }

    fn local_time(mut schedule: Schedule) -> Schedule {
        schedule.is_local_time = true;
        schedule
    }

    fn fields(violations: &[FieldViolation]) -> Vec<&str> {
        violations.iter().map(|v| v.field.as_str()).collect()
    }

    /// An arbitrary creation instant; it only matters for IMMEDIATE.
    fn created() -> DateTime<Utc> {
        utc("2026-01-01T00:00:00Z")
    }

    /// Wire names round-trip, ignore case, and serde uses the same names.
    #[test]
    fn frequency_names_round_trip() {
        for frequency in Frequency::ALL {
            assert_eq!(Frequency::parse(frequency.as_str()), Some(frequency));
            assert_eq!(
                Frequency::parse(&frequency.as_str().to_lowercase()),
                Some(frequency)
            );
            assert_eq!(
                serde_json::to_string(&frequency).unwrap(),
                format!("\"{}\"", frequency.as_str())
            );
        }
        assert_eq!(Frequency::parse("FORTNIGHTLY"), None);
        assert_eq!(Frequency::parse(""), None);
    }

    /// A daily 09:00 campaign in New York is sent at 09:00 on the clock all year: 14:00Z in
    /// winter, 13:00Z in summer, switching on the DST days of March and November 2026.
    #[test]
    fn daily_new_york_run_keeps_nine_am_across_dst_changes() {
        let s = schedule(
            "2026-03-06T14:00:00Z",
            "2026-12-31T00:00:00Z",
            Frequency::Daily,
            "America/New_York",
        );
        let start_day = NaiveDate::from_ymd_opt(2026, 3, 6).unwrap();
        let due_on = |day: &str| {
            let day = NaiveDate::parse_from_str(day, "%Y-%m-%d").unwrap();
            let n = u32::try_from((day - start_day).num_days()).unwrap();
            let nominal = s.nominal_run(n, created()).unwrap();
            assert_eq!(nominal, day.and_hms_opt(9, 0, 0).unwrap());
            s.due_at(nominal, Some(Tz::Asia__Tokyo))
        };
        assert_eq!(due_on("2026-03-07"), utc("2026-03-07T14:00:00Z"));
        assert_eq!(due_on("2026-03-08"), utc("2026-03-08T13:00:00Z"));
        assert_eq!(due_on("2026-07-01"), utc("2026-07-01T13:00:00Z"));
        assert_eq!(due_on("2026-10-31"), utc("2026-10-31T13:00:00Z"));
        assert_eq!(due_on("2026-11-01"), utc("2026-11-01T14:00:00Z"));
    }

    /// A local-time run at 09:00 reaches each endpoint at 09:00 on its own clock, including
    /// quarter-hour zones, zones a calendar day ahead of UTC, and on a DST day.
    #[test]
    fn local_time_run_is_due_at_nine_on_each_endpoints_clock() {
        let s = local_time(schedule(
            "2026-03-28T09:00:00Z",
            "2026-04-30T00:00:00Z",
            Frequency::Daily,
            "",
        ));
        let saturday = s.nominal_run(0, created()).unwrap();
        let sunday = s.nominal_run(1, created()).unwrap();
        assert_eq!(sunday, wall("2026-03-29 09:00"));
        assert_eq!(
            s.due_at(sunday, Some(Tz::Asia__Kathmandu)),
            utc("2026-03-29T03:15:00Z")
        );
        assert_eq!(
            s.due_at(sunday, Some(Tz::Pacific__Tongatapu)),
            utc("2026-03-28T20:00:00Z")
        );
        // Europe/London: GMT on Saturday, BST from 01:00Z on Sunday 2026-03-29.
        assert_eq!(
            s.due_at(saturday, Some(Tz::Europe__London)),
            utc("2026-03-28T09:00:00Z")
        );
        assert_eq!(
            s.due_at(sunday, Some(Tz::Europe__London)),
            utc("2026-03-29T08:00:00Z")
        );
        // No endpoint zone: the campaign zone (UTC here).
        assert_eq!(s.due_at(sunday, None), utc("2026-03-29T09:00:00Z"));
        assert_eq!(s.earliest_due(sunday), utc("2026-03-28T19:00:00Z"));
        assert_eq!(s.latest_due(sunday), utc("2026-03-29T21:00:00Z"));
    }

    /// A non-local schedule sends to every endpoint at the same instant, whatever its zone.
    #[test]
    fn non_local_run_ignores_endpoint_zone() {
        let s = schedule(
            "2026-05-01T09:00:00+05:45",
            "",
            Frequency::Once,
            "Asia/Kathmandu",
        );
        let nominal = s.nominal_run(0, created()).unwrap();
        assert_eq!(nominal, wall("2026-05-01 09:00"));
        let expected = utc("2026-05-01T03:15:00Z");
        for zone in ZONES {
            assert_eq!(s.due_at(nominal, Some(zone)), expected);
        }
        assert_eq!(s.earliest_due(nominal), expected);
        assert_eq!(s.latest_due(nominal), expected);
    }

    /// 02:30 does not exist in New York on 2026-03-08; it becomes 03:30 EDT (07:30Z).
    #[test]
    fn spring_forward_gap_moves_clock_time_forward() {
        let due = resolve_local(wall("2026-03-08 02:30"), Tz::America__New_York);
        assert_eq!(due, utc("2026-03-08T07:30:00Z"));
        // Lord Howe skips only 30 minutes (02:00 -> 02:30 on 2026-10-04).
        let due = resolve_local(wall("2026-10-04 02:10"), Tz::Australia__Lord_Howe);
        assert_eq!(
            due.with_timezone(&Tz::Australia__Lord_Howe).naive_local(),
            wall("2026-10-04 02:40")
        );
    }

    /// 01:30 happens twice in New York on 2026-11-01; the first (EDT, 05:30Z) is chosen.
    #[test]
    fn fall_back_ambiguous_time_resolves_to_the_earlier_instant() {
        let due = resolve_local(wall("2026-11-01 01:30"), Tz::America__New_York);
        assert_eq!(due, utc("2026-11-01T05:30:00Z"));
    }

    /// A monthly run started on Jan 31 goes to the last day of shorter months and back to the
    /// 31st afterwards, instead of drifting to the 28th.
    #[test]
    fn monthly_from_jan_31_clamps_to_month_end_without_drifting() {
        let s = schedule(
            "2027-01-31T10:00:00Z",
            "2028-12-31T00:00:00Z",
            Frequency::Monthly,
            "",
        );
        let runs: Vec<_> = (0..4)
            .map(|n| s.nominal_run(n, created()).unwrap())
            .collect();
        assert_eq!(
            runs,
            vec![
                wall("2027-01-31 10:00"),
                wall("2027-02-28 10:00"),
                wall("2027-03-31 10:00"),
                wall("2027-04-30 10:00"),
            ]
        );
        assert_eq!(s.nominal_run(13, created()), Some(wall("2028-02-29 10:00")));
    }

    /// ONCE runs exactly once; EVENT campaigns have no scheduled runs.
    #[test]
    fn once_has_exactly_one_run_and_event_none() {
        let once = schedule("2026-05-01T09:00:00Z", "", Frequency::Once, "");
        assert_eq!(
            once.nominal_run(0, created()),
            Some(wall("2026-05-01 09:00"))
        );
        assert_eq!(once.nominal_run(1, created()), None);
        assert_eq!(once.nominal_run(u32::MAX, created()), None);
        let event = schedule("2026-05-01T09:00:00Z", "", Frequency::Event, "");
        assert_eq!(event.nominal_run(0, created()), None);
    }

    /// No run starts after end_time; a run exactly at end_time still happens.
    #[test]
    fn end_time_stops_runs() {
        let s = schedule(
            "2026-01-01T09:00:00Z",
            "2026-01-03T09:00:00Z",
            Frequency::Daily,
            "",
        );
        assert!((0..3).all(|n| s.nominal_run(n, created()).is_some()));
        assert_eq!(s.nominal_run(3, created()), None);

        // Local time: the end is compared with the run in the campaign zone (New York), even
        // though endpoints further east are due earlier.
        let s = local_time(schedule(
            "2026-01-01T14:00:00Z",
            "2026-01-03T14:00:00Z",
            Frequency::Daily,
            "America/New_York",
        ));
        assert_eq!(s.nominal_run(2, created()), Some(wall("2026-01-03 09:00")));
        assert_eq!(s.nominal_run(3, created()), None);
    }

    /// IMMEDIATE means the instant the campaign was created, read on the campaign's clock.
    #[test]
    fn immediate_resolves_to_creation_instant() {
        let s = schedule(IMMEDIATE, "", Frequency::Once, "Asia/Kathmandu");
        let created = utc("2026-05-01T10:00:00Z");
        let nominal = s.nominal_run(0, created).unwrap();
        assert_eq!(nominal, wall("2026-05-01 15:45"));
        assert_eq!(s.due_at(nominal, None), created);
    }

    /// Broken start or end times never produce runs (they fail validation anyway).
    #[test]
    fn unparsable_times_give_no_runs() {
        let s = schedule("tomorrow", "", Frequency::Once, "");
        assert_eq!(s.nominal_run(0, created()), None);
        let s = schedule("2026-01-01T09:00:00Z", "soon", Frequency::Once, "");
        assert_eq!(s.nominal_run(0, created()), None);
    }

    /// The campaign zone is UTC when the name is empty or unknown.
    #[test]
    fn zone_defaults_to_utc() {
        assert_eq!(parse_zone(""), None);
        assert_eq!(parse_zone("Mars/Olympus_Mons"), None);
        assert_eq!(parse_zone("Asia/Kathmandu"), Some(Tz::Asia__Kathmandu));
        let mut s = schedule(IMMEDIATE, "", Frequency::Once, "");
        assert_eq!(s.zone(), Tz::UTC);
        s.timezone = "Mars/Olympus_Mons".to_string();
        assert_eq!(s.zone(), Tz::UTC);
        s.timezone = "Pacific/Chatham".to_string();
        assert_eq!(s.zone(), Tz::Pacific__Chatham);
    }

    /// Quiet time 22:00-07:00 covers the night across midnight and ends at 07:00.
    #[test]
    fn quiet_time_wraps_midnight() {
        let night = quiet("22:00", "07:00");
        let z = Tz::UTC;
        assert!(!is_quiet(&night, utc("2026-05-01T21:59:59Z"), z));
        assert!(is_quiet(&night, utc("2026-05-01T22:00:00Z"), z));
        assert!(is_quiet(&night, utc("2026-05-01T23:30:00Z"), z));
        assert!(is_quiet(&night, utc("2026-05-02T03:00:00Z"), z));
        assert!(is_quiet(&night, utc("2026-05-02T06:59:59Z"), z));
        assert!(!is_quiet(&night, utc("2026-05-02T07:00:00Z"), z));
        assert!(!is_quiet(&night, utc("2026-05-02T12:00:00Z"), z));
        assert_eq!(
            quiet_ends(&night, utc("2026-05-01T23:30:00Z"), z),
            utc("2026-05-02T07:00:00Z")
        );
        assert_eq!(
            quiet_ends(&night, utc("2026-05-02T03:00:00Z"), z),
            utc("2026-05-02T07:00:00Z")
        );
        let noon = utc("2026-05-02T12:00:00Z");
        assert_eq!(quiet_ends(&night, noon, z), noon);
        // Not wrapping: 13:00-14:00.
        let lunch = quiet("13:00", "14:00");
        assert!(is_quiet(&lunch, utc("2026-05-02T13:30:00Z"), z));
        assert!(!is_quiet(&lunch, utc("2026-05-02T23:30:00Z"), z));
    }

    /// Quiet 02:00-01:00 leaves only 01:00-02:00 to send, and London skips exactly that hour
    /// on 1995-03-26: the quiet period runs on to 01:00 BST the next day.
    #[test]
    fn quiet_time_whose_open_hour_is_skipped_lasts_another_day() {
        let q = quiet("02:00", "01:00");
        let z = Tz::Europe__London;
        let at = utc("1995-03-25T22:59:00Z");
        assert_eq!(quiet_ends(&q, at, z), utc("1995-03-27T00:00:00Z"));
    }

    /// Quiet time is read on the endpoint's clock: 22:00 in Kathmandu is 16:15Z.
    #[test]
    fn quiet_time_in_kathmandu() {
        let night = quiet("22:00", "07:00");
        let z = Tz::Asia__Kathmandu;
        assert!(!is_quiet(&night, utc("2026-05-01T16:14:00Z"), z));
        assert!(is_quiet(&night, utc("2026-05-01T16:15:00Z"), z));
        assert_eq!(
            quiet_ends(&night, utc("2026-05-01T16:15:00Z"), z),
            utc("2026-05-02T01:15:00Z")
        );
        // The same instant is not quiet in UTC.
        assert!(!is_quiet(&night, utc("2026-05-01T16:15:00Z"), Tz::UTC));
    }

    /// Empty, half-empty, malformed or equal quiet times are never quiet.
    #[test]
    fn empty_or_equal_quiet_time_is_never_quiet() {
        let at = utc("2026-05-01T23:00:00Z");
        for q in [
            quiet("", ""),
            quiet("22:00", ""),
            quiet("22:00", "22:00"),
            quiet("10pm", "07:00"),
        ] {
            assert!(!is_quiet(&q, at, Tz::UTC), "{q:?}");
            assert_eq!(quiet_ends(&q, at, Tz::UTC), at, "{q:?}");
        }
    }

    /// Quiet until 02:30 on the night New York skips 02:00-03:00: the quiet period ends when
    /// the clocks jump to 03:00 EDT (07:00Z), not at a 02:30 that never shows.
    #[test]
    fn quiet_time_ending_inside_spring_forward_gap_ends_at_the_jump() {
        let q = quiet("00:00", "02:30");
        let z = Tz::America__New_York;
        let at = utc("2026-03-08T06:30:00Z"); // 01:30 EST
        assert!(is_quiet(&q, at, z));
        assert_eq!(quiet_ends(&q, at, z), utc("2026-03-08T07:00:00Z"));
    }

    /// Quiet from 01:30 on the night New York falls back from 02:00 EDT to 01:00 EST: at 01:45
    /// EDT it is quiet, but when the clocks fall back to 01:00 it no longer is.
    #[test]
    fn quiet_time_ends_when_clocks_fall_back_before_its_start() {
        let q = quiet("01:30", "07:00");
        let z = Tz::America__New_York;
        let at = utc("2026-11-01T05:45:00Z"); // 01:45 EDT
        assert!(is_quiet(&q, at, z));
        assert_eq!(quiet_ends(&q, at, z), utc("2026-11-01T06:00:00Z"));
        // Quiet again from 01:30 EST (06:30Z) until 07:00 EST (12:00Z).
        assert_eq!(
            quiet_ends(&q, utc("2026-11-01T06:30:00Z"), z),
            utc("2026-11-01T12:00:00Z")
        );
    }

    /// Well-formed schedules pass validation.
    #[test]
    fn validate_schedule_accepts_good_schedules() {
        let mut daily = schedule(
            "2026-03-01T09:00:00-05:00",
            "2026-04-01T00:00:00Z",
            Frequency::Daily,
            "America/New_York",
        );
        daily.quiet_time = Some(quiet("22:00", "07:00"));
        assert_eq!(validate_schedule("schedule", &daily), vec![]);
        let immediate = schedule(IMMEDIATE, "", Frequency::Once, "");
        assert_eq!(validate_schedule("schedule", &immediate), vec![]);
        let mut event = schedule(IMMEDIATE, "2026-04-01T00:00:00Z", Frequency::Event, "UTC");
        event.quiet_time = Some(quiet("", ""));
        assert_eq!(validate_schedule("schedule", &event), vec![]);
    }

    /// Each broken rule is reported on the field that breaks it.
    #[test]
    fn validate_schedule_names_each_bad_field() {
        let start = "2026-03-01T09:00:00Z";
        let end = "2026-04-01T00:00:00Z";
        let cases = [
            (
                schedule("next monday", end, Frequency::Daily, ""),
                vec!["schedule.start_time"],
            ),
            (
                schedule(start, "2026-13-01", Frequency::Daily, ""),
                vec!["schedule.end_time"],
            ),
            (
                schedule(start, start, Frequency::Daily, ""),
                vec!["schedule.end_time"],
            ),
            (
                schedule(start, "2026-02-01T00:00:00Z", Frequency::Once, ""),
                vec!["schedule.end_time"],
            ),
            (
                schedule(start, "", Frequency::Hourly, ""),
                vec!["schedule.end_time"],
            ),
            (
                schedule(start, "", Frequency::Monthly, ""),
                vec!["schedule.end_time"],
            ),
            (
                schedule(IMMEDIATE, end, Frequency::Weekly, ""),
                vec!["schedule.start_time"],
            ),
            (
                schedule("immediate", "", Frequency::Once, ""),
                vec!["schedule.start_time"],
            ),
            (
                schedule(start, end, Frequency::Daily, "America/Springfield"),
                vec!["schedule.timezone"],
            ),
        ];
        for (s, expected) in cases {
            assert_eq!(
                fields(&validate_schedule("schedule", &s)),
                expected,
                "{s:?}"
            );
        }

        let mut bad_quiet = schedule(start, end, Frequency::Daily, "");
        bad_quiet.quiet_time = Some(quiet("25:00", " 7:00"));
        assert_eq!(
            fields(&validate_schedule("schedule", &bad_quiet)),
            vec!["schedule.quiet_time.start", "schedule.quiet_time.end"]
        );
        bad_quiet.quiet_time = Some(quiet("22:00", ""));
        assert_eq!(
            fields(&validate_schedule("schedule", &bad_quiet)),
            vec!["schedule.quiet_time"]
        );

        // Everything wrong at once: every problem is reported.
        let mut all_bad = schedule(IMMEDIATE, "", Frequency::Daily, "Nowhere");
        all_bad.quiet_time = Some(quiet("", "07:00"));
        let violations = validate_schedule("campaign.schedule", &all_bad);
        assert_eq!(
            fields(&violations),
            vec![
                "campaign.schedule.start_time",
                "campaign.schedule.end_time",
                "campaign.schedule.timezone",
                "campaign.schedule.quiet_time",
            ]
        );
        assert!(violations[2].reason.contains("\"Nowhere\""));
    }

    /// Instants from 1990 to 2100, whole seconds.
    fn instant() -> impl Strategy<Value = DateTime<Utc>> {
        (631_152_000i64..4_102_444_800).prop_map(|s| DateTime::from_timestamp(s, 0).unwrap())
    }

    fn zone() -> impl Strategy<Value = Tz> {
        prop::sample::select(&ZONES[..])
    }

    /// An instant within three hours of the next DST change of `zone` after an arbitrary
    /// instant (or an arbitrary instant in zones without DST), so gaps and repeats are hit.
    fn instant_near_offset_change(zone: Tz) -> impl Strategy<Value = DateTime<Utc>> {
        (instant(), -180i64..=180, 0u32..60).prop_map(move |(from, minutes, seconds)| {
            let change = next_offset_change(zone, from, from + TimeDelta::days(400));
            change + TimeDelta::minutes(minutes) + TimeDelta::seconds(seconds.into())
        })
    }

    /// Wall-clock times, half of them around a DST change of `zone`.
    fn nominal_in(zone: Tz) -> impl Strategy<Value = NaiveDateTime> {
        prop_oneof![
            instant().prop_map(|at| at.naive_utc()),
            instant_near_offset_change(zone)
                .prop_map(move |at| at.with_timezone(&zone).naive_local()),
            // Wall clocks inside a gap: just after the change read with the old offset.
            instant_near_offset_change(zone).prop_map(move |at| {
                let before = offset_seconds(zone, at - TimeDelta::hours(6));
                at.naive_utc() + TimeDelta::seconds(before.into())
            }),
        ]
    }

    fn zone_and_nominal() -> impl Strategy<Value = (Tz, NaiveDateTime)> {
        zone().prop_flat_map(|zone| (Just(zone), nominal_in(zone)))
    }

    /// Clock times HH:MM, often on the hour so they meet DST changes.
    fn clock_time() -> impl Strategy<Value = String> {
        prop_oneof![
            (0u32..24).prop_map(|h| format!("{h:02}:00")),
            (0u32..24, 0u32..60).prop_map(|(h, m)| format!("{h:02}:{m:02}")),
        ]
    }

    fn quiet_time() -> impl Strategy<Value = QuietTime> {
        prop_oneof![
            1 => Just(QuietTime::default()),
            1 => clock_time().prop_map(|t| quiet(&t, &t)),
            8 => (clock_time(), clock_time()).prop_map(|(start, end)| QuietTime { start, end }),
        ]
    }

    fn recurring() -> impl Strategy<Value = Frequency> {
        prop::sample::select(vec![
            Frequency::Hourly,
            Frequency::Daily,
            Frequency::Weekly,
            Frequency::Monthly,
        ])
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// A local-time run shows its clock time on every endpoint's clock; when a DST change
        /// skips that clock time, it arrives the skipped length later, never earlier.
        #[test]
        fn local_time_due_shows_nominal_on_endpoint_clock((zone, nominal) in zone_and_nominal()) {
            let s = local_time(schedule(IMMEDIATE, "", Frequency::Once, ""));
            let due = s.due_at(nominal, Some(zone));
            let shown = due.with_timezone(&zone).naive_local();
            if zone.from_local_datetime(&nominal).earliest().is_some() {
                prop_assert_eq!(shown, nominal);
            } else {
                let gap = offset_seconds(zone, due) - offset_seconds(zone, due - TimeDelta::hours(6));
                let shift = (shown - nominal).num_seconds();
                prop_assert!(shift > 0 && shift <= i64::from(gap), "shift {shift}s, gap {gap}s");
            }
        }

        /// Every endpoint, whatever its zone, is due between earliest_due and latest_due, so
        /// a run that starts sending at earliest_due and finishes after latest_due misses none.
        #[test]
        fn every_zone_is_due_between_earliest_and_latest(
            (_, nominal) in zone_and_nominal(),
            campaign_zone in zone(),
            is_local_time in any::<bool>(),
        ) {
            let mut s = schedule(IMMEDIATE, "", Frequency::Once, campaign_zone.name());
            s.is_local_time = is_local_time;
            let earliest = s.earliest_due(nominal);
            let latest = s.latest_due(nominal);
            for zone in ZONES.into_iter().map(Some).chain([None]) {
                let due = s.due_at(nominal, zone);
                prop_assert!(earliest <= due && due <= latest, "{zone:?}: {earliest} <= {due} <= {latest}");
            }
        }

        /// quiet_ends is the first non-quiet instant: every minute before it is quiet, the
        /// second before it is quiet, it is not, and it comes within 25 hours (49 when a DST
        /// change skipped the whole non-quiet window).
        #[test]
        fn quiet_ends_is_the_first_non_quiet_instant(
            (zone, at) in zone().prop_flat_map(|zone| (Just(zone), prop_oneof![instant(), instant_near_offset_change(zone)])),
            q in quiet_time(),
        ) {
            let end = quiet_ends(&q, at, zone);
            prop_assert!(!is_quiet(&q, end, zone));
            prop_assert!(end >= at);
            // Within a day plus a DST shift, unless a DST change skipped the whole non-quiet
            // window (quiet 02:00-01:00 in London on 1995-03-26), which adds a day.
            let skipped_window = offset_seconds(zone, end) != offset_seconds(zone, at);
            let bound = if skipped_window { 49 } else { 25 };
            prop_assert!(end - at <= TimeDelta::hours(bound), "{at} -> {end}");
            if end > at {
                prop_assert!(is_quiet(&q, end - TimeDelta::seconds(1), zone));
            }
            let mut minute = at;
            while minute < end {
                prop_assert!(is_quiet(&q, minute, zone), "{minute} is not quiet but ends at {end}");
                minute += TimeDelta::minutes(1);
            }
        }

        /// Runs come in order, and DAILY / WEEKLY / MONTHLY runs keep the start's clock time
        /// (on the campaign's clock) whenever that clock time exists; MONTHLY keeps its day
        /// of month, clamped to the month's length.
        #[test]
        fn runs_increase_and_keep_the_start_clock_time(
            (zone, start) in zone().prop_flat_map(|zone| (Just(zone), prop_oneof![instant(), instant_near_offset_change(zone)])),
            frequency in recurring(),
        ) {
            let s = schedule(
                &start.to_rfc3339_opts(SecondsFormat::Secs, true),
                "",
                frequency,
                zone.name(),
            );
            let first = start.with_timezone(&zone).naive_local();
            let runs: Vec<_> = (0..60).map(|n| s.nominal_run(n, created())).collect();
            prop_assert!(runs.iter().all(Option::is_some));
            let runs: Vec<_> = runs.into_iter().flatten().collect();
            prop_assert_eq!(runs[0], first);
            for pair in runs.windows(2) {
                prop_assert!(pair[0] < pair[1]);
            }
            if frequency == Frequency::Hourly {
                return Ok(());
            }
            for (n, nominal) in runs.iter().enumerate() {
                let due = s.due_at(*nominal, None);
                let shown = due.with_timezone(&zone).naive_local();
                if zone.from_local_datetime(nominal).earliest().is_some() {
                    prop_assert_eq!(shown.time(), first.time(), "run {}", n);
                    prop_assert_eq!(shown.date(), nominal.date());
                }
                if frequency == Frequency::Monthly {
                    let next_month = nominal.date().with_day(1).unwrap().checked_add_months(Months::new(1)).unwrap();
                    let month_length = next_month.pred_opt().unwrap().day();
                    prop_assert_eq!(nominal.day(), first.day().min(month_length));
                    prop_assert_eq!(nominal.time(), first.time());
                }
            }
        }
    }
}
