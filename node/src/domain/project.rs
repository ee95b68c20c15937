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
    // chrono skips spaces before a number (" 7:00", "07: 5"), so the shape is checked first.
    let has_shape = value.len() == 5
        && value.bytes().enumerate().all(|(i, b)| {
            if i == 2 {
                b == b':'
            } else {
                b.is_ascii_digit()
            }
        });
    has_shape && chrono::NaiveTime::parse_from_str(value, "%H:%M").is_ok()
}

/// Whether `value` is an http(s) URL with a host and no whitespace, e.g.
/// `https://hooks.example.com/filter`.
fn is_http_url(value: &str) -> bool {
    let Some(rest) = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"))
    else {
        return false;
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    !host.is_empty() && !value.chars().any(|c| c.is_whitespace() || c.is_control())
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
    if !hook.web_url.is_empty() && !is_http_url(&hook.web_url) {
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// "HH:MM" by its definition: two digits, a colon, two digits, 00:00 to 23:59.
    fn is_clock_time_by_definition(value: &str) -> bool {
        let bytes = value.as_bytes();
        if bytes.len() != 5 || bytes[2] != b':' {
            return false;
        }
        let number = |digits: &[u8]| -> Option<u32> {
            digits.iter().try_fold(0, |n, d| {
                d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
            })
        };
        matches!((number(&bytes[..2]), number(&bytes[3..])), (Some(h), Some(m)) if h < 24 && m < 60)
    }

    fn clock_time() -> impl Strategy<Value = String> {
        "([01][0-9]|2[0-3]):[0-5][0-9]"
    }

    fn not_clock_time() -> impl Strategy<Value = String> {
        prop_oneof![
            "[0-9: +-]{1,7}",
            "[0-9]{1,2}:[0-9]{1,2}( ?[AaPp][Mm])?",
            Just("24:00".to_string()),
            Just("12:60".to_string()),
            Just("22h00".to_string()),
        ]
        .prop_filter("not HH:MM", |v| !is_clock_time_by_definition(v))
    }

    fn hook_url() -> impl Strategy<Value = String> {
        "https?://[a-z0-9-]{1,20}(\\.[a-z]{2,6})?(:[0-9]{2,5})?(/[a-zA-Z0-9/_.-]{0,30})?(\\?[a-z]=[0-9]{1,3})?"
    }

    fn valid_settings() -> impl Strategy<Value = ProjectSettings> {
        let quiet_time = prop_oneof![
            Just(QuietTime::default()),
            (clock_time(), clock_time()).prop_map(|(start, end)| QuietTime { start, end }),
        ];
        let hook = (
            prop_oneof![Just(String::new()), hook_url()],
            prop::sample::select(vec!["", "FILTER", "DELIVERY"]),
        )
            .prop_map(|(web_url, mode)| CampaignHook {
                web_url,
                mode: mode.to_string(),
            });
        let limits = (
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
        )
            .prop_map(
                |(daily, total, messages_per_second, maximum_duration_secs, session)| {
                    CampaignLimits {
                        daily,
                        total,
                        messages_per_second,
                        maximum_duration_secs,
                        session,
                    }
                },
            );
        (limits, quiet_time, hook).prop_map(|(limits, quiet_time, campaign_hook)| ProjectSettings {
            limits,
            quiet_time,
            campaign_hook,
            last_modified_date: String::new(),
        })
    }

    /// Fields named by `violations`, sorted.
    fn fields(violations: &[FieldViolation]) -> Vec<&str> {
        let mut named: Vec<&str> = violations.iter().map(|v| v.field.as_str()).collect();
        named.sort_unstable();
        named
    }

    /// Quiet times users write, and whether they are taken as "HH:MM".
    #[test]
    fn clock_time_examples() {
        let cases = [
            ("22:00", true),
            ("07:00", true),
            ("00:00", true),
            ("23:59", true),
            ("24:00", false),
            ("23:60", false),
            ("7:00", false),
            (" 7:00", false),
            ("07: 5", false),
            ("07:00 ", false),
            ("07:00:00", false),
            ("0700", false),
            ("7pm", false),
            ("", false),
        ];
        for (value, expected) in cases {
            assert_eq!(is_clock_time(value), expected, "{value:?}");
        }
    }

    /// Hook URLs, and whether Herald takes them as a place it can call.
    #[test]
    fn hook_url_examples() {
        let cases = [
            ("https://hooks.example.com/filter", true),
            ("http://10.0.0.5:8080/hook?key=1", true),
            ("https://localhost", true),
            ("https://", false),
            ("https:///filter", false),
            ("https://hooks.example.com/a b", false),
            ("ftp://hooks.example.com", false),
            ("hooks.example.com/filter", false),
            ("//hooks.example.com", false),
            ("HTTPS//hooks.example.com", false),
        ];
        for (value, expected) in cases {
            assert_eq!(is_http_url(value), expected, "{value:?}");
        }
    }

    proptest! {
        /// A quiet time is accepted exactly when it is "HH:MM" between 00:00 and 23:59,
        /// so what a marketer stores is what every campaign reads back.
        #[test]
        fn clock_times_are_exactly_hh_mm(value in prop_oneof![clock_time(), not_clock_time(), "\\PC{0,6}"]) {
            prop_assert_eq!(is_clock_time(&value), is_clock_time_by_definition(&value), "{:?}", value);
        }

        /// Settings within every rule are accepted: no quiet time or a full one, no hook or
        /// an http(s) hook in FILTER or DELIVERY mode, any limits (0 means none).
        #[test]
        fn valid_settings_pass(settings in valid_settings()) {
            let violations = validate_settings("settings", &settings);
            prop_assert!(violations.is_empty(), "{violations:?}");
        }

        /// A quiet time with only a start or only an end is refused on `quiet_time` itself:
        /// a window needs both ends.
        #[test]
        fn quiet_time_needs_both_ends(mut settings in valid_settings(), time in clock_time(), start_only in any::<bool>()) {
            settings.quiet_time = if start_only {
                QuietTime { start: time, end: String::new() }
            } else {
                QuietTime { start: String::new(), end: time }
            };
            let violations = validate_settings("settings", &settings);
            prop_assert_eq!(fields(&violations), vec!["settings.quiet_time"]);
        }

        /// A start or end that is not "HH:MM" is named precisely, and both are named when
        /// both are wrong.
        #[test]
        fn bad_quiet_times_are_named(
            mut settings in valid_settings(),
            good in clock_time(),
            bad in not_clock_time(),
            other_bad in not_clock_time(),
            which in 0..3u8,
        ) {
            let (start, end, expected) = match which {
                0 => (bad, good, vec!["settings.quiet_time.start"]),
                1 => (good, bad, vec!["settings.quiet_time.end"]),
                _ => (bad, other_bad, vec!["settings.quiet_time.end", "settings.quiet_time.start"]),
            };
            settings.quiet_time = QuietTime { start, end };
            let violations = validate_settings("settings", &settings);
            prop_assert_eq!(fields(&violations), expected);
        }

        /// A hook URL that is not http(s) with a host, or a mode other than FILTER and
        /// DELIVERY, is refused and named, together with any quiet time problem.
        #[test]
        fn bad_hooks_are_named(
            mut settings in valid_settings(),
            web_url in prop_oneof![
                "(ftp|file|ws)://[a-z]{1,10}\\.com",
                "[a-z]{1,10}\\.com/[a-z]{0,10}",
                "https?://",
                "https?://[a-z]{1,10} [a-z]{1,10}",
            ],
            mode in prop_oneof!["filter", "delivery", "[A-Z]{1,10}".prop_filter("not a mode", |m| m != "FILTER" && m != "DELIVERY")],
        ) {
            settings.campaign_hook = CampaignHook { web_url, mode };
            settings.quiet_time = QuietTime { start: "22:00".to_string(), end: "7:00".to_string() };
            let violations = validate_settings("settings", &settings);
            prop_assert_eq!(
                fields(&violations),
                vec!["settings.campaign_hook.mode", "settings.campaign_hook.web_url", "settings.quiet_time.end"]
            );
        }

        /// Any non-blank project name of up to 200 characters, in any script, is accepted.
        #[test]
        fn project_names_up_to_200_characters_pass(name in "\\PC{1,200}".prop_filter("not blank", |n| !n.trim().is_empty())) {
            prop_assert_eq!(validate_name("name", &name), vec![]);
        }

        /// Blank names and names longer than 200 characters are refused on `name`.
        #[test]
        fn blank_or_long_project_names_are_refused(
            name in prop_oneof!["\\s{0,10}", "\\PC{201,260}"],
        ) {
            let violations = validate_name("name", &name);
            prop_assert_eq!(fields(&violations), vec!["name"]);
        }
    }

    /// The 200-character limit counts characters, not bytes.
    #[test]
    fn project_name_limit_counts_characters() {
        assert!(validate_name("name", &"é".repeat(200)).is_empty());
        assert_eq!(
            fields(&validate_name("name", &"é".repeat(201))),
            vec!["name"]
        );
    }
}
