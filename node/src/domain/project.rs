//! Projects and their settings (SPEC PRJ-1, PRJ-2).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::violation::FieldViolation;

/// A project: it isolates all data of one application.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct Project {
    pub project_id: String,
    pub name: String,
    pub creation_date: String,
    pub settings: ProjectSettings,
    pub tags: BTreeMap<String, String>,
}

/// Defaults every campaign of the project inherits.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct ProjectSettings {
    pub limits: CampaignLimits,
    pub quiet_time: QuietTime,
    pub campaign_hook: CampaignHook,
    pub last_modified_date: String,
}

/// Default campaign limits; 0 means no limit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct CampaignLimits {
    pub daily: u32,
    pub total: u32,
    pub messages_per_second: u32,
    pub maximum_duration_secs: u32,
    pub session: u32,
}

/// Local clock times "HH:MM"; both empty means none.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct QuietTime {
    pub start: String,
    pub end: String,
}

/// A webhook that may filter a campaign's audience.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct CampaignHook {
    pub web_url: String,
    pub mode: String,
}

/// Longest project name, in characters.
pub const MAX_NAME_CHARS: usize = 200;

/// Checks a project name.
pub fn validate_name(field: &str, name: &str) -> Vec<FieldViolation> {
    let mut violations = Vec::new();
    if name.trim().is_empty() {
        violations.push(FieldViolation::new(field, "must not be empty"));
    } else if name.chars().count() > MAX_NAME_CHARS {
        violations.push(FieldViolation::new(
            field,
            format!("is longer than {MAX_NAME_CHARS} characters"),
        ));
    }
    violations
}

/// Whether `value` is a clock time "HH:MM".
fn is_clock_time(value: &str) -> bool {
    chrono::NaiveTime::parse_from_str(value, "%H:%M").is_ok() && value.len() == 5
}

/// Checks project settings and returns every problem at once.
pub fn validate_settings(field: &str, settings: &ProjectSettings) -> Vec<FieldViolation> {
    let mut violations = Vec::new();
    let quiet = &settings.quiet_time;
    match (quiet.start.is_empty(), quiet.end.is_empty()) {
        (true, true) => {}
        (false, false) => {
            for (name, value) in [("start", &quiet.start), ("end", &quiet.end)] {
                if !is_clock_time(value) {
                    violations.push(FieldViolation::new(
                        format!("{field}.quiet_time.{name}"),
                        format!("{value:?} is not a clock time HH:MM (e.g. 22:00)"),
                    ));
                }
            }
        }
        _ => violations.push(FieldViolation::new(
            format!("{field}.quiet_time"),
            "start and end must be given together",
        )),
    }
    let hook = &settings.campaign_hook;
    if !hook.web_url.is_empty()
        && !(hook.web_url.starts_with("https://") || hook.web_url.starts_with("http://"))
    {
        violations.push(FieldViolation::new(
            format!("{field}.campaign_hook.web_url"),
            format!("{:?} is not an http(s) URL", hook.web_url),
        ));
    }
    if !hook.mode.is_empty() && hook.mode != "FILTER" && hook.mode != "DELIVERY" {
        violations.push(FieldViolation::new(
            format!("{field}.campaign_hook.mode"),
            format!("{:?} is not FILTER or DELIVERY", hook.mode),
        ));
    }
    violations
}
