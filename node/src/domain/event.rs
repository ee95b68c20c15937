//! Events (SPEC EVT-1..3): the record and its rules.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::endpoint::{validate_id, validate_metrics, validate_name, validate_timestamp};
use super::limits::Limits;
use super::violation::{FieldViolation, join};

/// The session an event happened in.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct Session {
    pub id: String,
    pub start_timestamp: String,
    pub stop_timestamp: String,
    /// Milliseconds.
    pub duration_ms: i64,
}

/// One event as sent by a client and as stored in the endpoint's shard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct Event {
    pub event_type: String,
    /// RFC 3339.
    pub timestamp: String,
    pub attributes: BTreeMap<String, String>,
    pub metrics: BTreeMap<String, f64>,
    pub session: Option<Session>,
    pub app_package_name: String,
    pub app_title: String,
    pub app_version_code: String,
    pub client_sdk_version: String,
    pub sdk_name: String,
}

/// Event types Herald emits itself or that the SDKs send with a fixed meaning (EVT-2).
pub const RESERVED_PREFIX: char = '_';

/// Checks one event (EVT-1) and returns every problem at once.
pub fn validate_event(field: &str, event: &Event, limits: &Limits) -> Vec<FieldViolation> {
    let mut violations = Vec::new();
    let type_field = join(field, "event_type");
    validate_name(&type_field, &event.event_type, limits, &mut violations);
    validate_timestamp(
        &join(field, "timestamp"),
        &event.timestamp,
        true,
        &mut violations,
    );
    let fields = event.attributes.len() + event.metrics.len();
    if fields > limits.attributes_per_event {
        violations.push(FieldViolation::new(
            field,
            format!(
                "has {fields} attributes and metrics, more than the limit of {}",
                limits.attributes_per_event
            ),
        ));
    }
    for (name, value) in &event.attributes {
        let path = format!("{}[{name:?}]", join(field, "attributes"));
        validate_name(&path, name, limits, &mut violations);
        if value.chars().count() > limits.attribute_value_chars {
            violations.push(FieldViolation::new(
                path,
                format!("is longer than {} characters", limits.attribute_value_chars),
            ));
        }
    }
    validate_metrics(
        &join(field, "metrics"),
        &event.metrics,
        limits.attributes_per_event,
        limits,
        &mut violations,
    );
    if let Some(session) = &event.session {
        validate_id(
            &join(field, "session.id"),
            &session.id,
            limits,
            &mut violations,
        );
        validate_timestamp(
            &join(field, "session.start_timestamp"),
            &session.start_timestamp,
            false,
            &mut violations,
        );
        validate_timestamp(
            &join(field, "session.stop_timestamp"),
            &session.stop_timestamp,
            false,
            &mut violations,
        );
        if session.duration_ms < 0 {
            violations.push(FieldViolation::new(
                join(field, "session.duration"),
                format!("{} is negative", session.duration_ms),
            ));
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::domain::endpoint::tests::{
        attribute_name, attribute_value, finite_metric, rfc3339_timestamp,
    };

    /// Paths the API puts an event under: `batch["<endpoint id>"].events["<event id>"]`.
    fn event_prefix() -> impl Strategy<Value = String> {
        ("[a-z0-9-]{1,12}", "[a-z0-9-]{1,12}").prop_map(|(endpoint_id, event_id)| {
            format!("batch[{endpoint_id:?}].events[{event_id:?}]")
        })
    }

    /// Event types a client sends: custom names and the reserved ones of EVT-2.
    fn event_type() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-zA-Z][a-zA-Z0-9_.-]{0,49}",
            prop::sample::select(vec![
                "_session.start",
                "_session.stop",
                "_session.pause",
                "_session.resume",
                "_monetization.purchase",
            ])
            .prop_map(str::to_string),
        ]
    }

    /// Attributes and metrics whose total count is at most the default 40, sometimes
    /// exactly 40.
    fn attributes_and_metrics()
    -> impl Strategy<Value = (BTreeMap<String, String>, BTreeMap<String, f64>)> {
        prop_oneof![7 => 0..=4usize, 1 => Just(40)]
            .prop_flat_map(|total| {
                (0..=total).prop_map(move |attributes| (attributes, total - attributes))
            })
            .prop_flat_map(|(attributes, metrics)| {
                (
                    prop::collection::btree_map(attribute_name(), attribute_value(), attributes),
                    prop::collection::btree_map(attribute_name(), finite_metric(), metrics),
                )
            })
    }

    fn session() -> impl Strategy<Value = Session> {
        let optional_timestamp = || prop_oneof![Just(String::new()), rfc3339_timestamp()];
        (
            "[a-zA-Z0-9-]{1,128}",
            optional_timestamp(),
            optional_timestamp(),
            0..=i64::MAX,
        )
            .prop_map(
                |(id, start_timestamp, stop_timestamp, duration_ms)| Session {
                    id,
                    start_timestamp,
                    stop_timestamp,
                    duration_ms,
                },
            )
    }

    /// Events that respect every rule and default limit.
    fn valid_event() -> impl Strategy<Value = Event> {
        (
            event_type(),
            rfc3339_timestamp(),
            attributes_and_metrics(),
            prop::option::of(session()),
            ".{0,20}",
        )
            .prop_map(
                |(event_type, timestamp, (attributes, metrics), session, app)| Event {
                    event_type,
                    timestamp,
                    attributes,
                    metrics,
                    session,
                    app_package_name: app.clone(),
                    app_title: app,
                    app_version_code: "42".to_string(),
                    client_sdk_version: "1.0".to_string(),
                    sdk_name: "herald-android".to_string(),
                },
            )
    }

    /// Asserts that some violation names exactly `field`.
    fn assert_names(violations: &[FieldViolation], field: &str) {
        assert!(
            violations.iter().any(|v| v.field == field),
            "expected a violation of {field:?}, got {violations:?}"
        );
    }

    /// One way to break an otherwise valid event.
    #[derive(Debug, Clone)]
    enum Mutation {
        /// More than 40 attributes and metrics together, split as given.
        TooManyFields { attributes: usize, metrics: usize },
        /// An empty or blank event type.
        EmptyType(String),
        /// A timestamp that is missing or not RFC 3339.
        BadTimestamp(String),
        /// A session with a negative duration.
        NegativeSessionDuration(i64),
        /// Attribute "bio" longer than 200 characters.
        OverlongAttributeValue(usize),
        /// Metric "price" NaN or infinite.
        NonFiniteMetric(f64),
    }

    impl Mutation {
        /// Breaks `event` and returns the path, under `prefix`, that must be named.
        fn apply(&self, prefix: &str, event: &mut Event) -> String {
            match self {
                Self::TooManyFields {
                    attributes,
                    metrics,
                } => {
                    // Distinct names, so that the existing fields count on top of these.
                    for i in 0..*attributes {
                        event
                            .attributes
                            .insert(format!("extra_attribute_{i}"), "x".to_string());
                    }
                    for i in 0..*metrics {
                        event.metrics.insert(format!("extra_metric_{i}"), 1.0);
                    }
                    prefix.to_string()
                }
                Self::EmptyType(event_type) => {
                    event.event_type = event_type.clone();
                    join(prefix, "event_type")
                }
                Self::BadTimestamp(timestamp) => {
                    event.timestamp = timestamp.clone();
                    join(prefix, "timestamp")
                }
                Self::NegativeSessionDuration(duration_ms) => {
                    let session = event.session.get_or_insert_with(|| Session {
                        id: "s1".to_string(),
                        ..Session::default()
                    });
                    session.duration_ms = *duration_ms;
                    join(prefix, "session.duration")
                }
                Self::OverlongAttributeValue(chars) => {
                    event
                        .attributes
                        .insert("bio".to_string(), "é".repeat(*chars));
                    format!("{}[\"bio\"]", join(prefix, "attributes"))
                }
                Self::NonFiniteMetric(value) => {
                    event.metrics.insert("price".to_string(), *value);
                    format!("{}[\"price\"]", join(prefix, "metrics"))
                }
            }
        }
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        let bad_timestamp = prop::sample::select(vec![
            "",
            "now",
            "2026-11-25",
            "2026-02-30T12:00:00Z",
            "2026-11-25T12:00:00",
            "1764072000",
        ]);
        prop_oneof![
            (41..=60usize)
                .prop_flat_map(|total| (0..=total)
                    .prop_map(move |attributes| (attributes, total - attributes)))
                .prop_map(|(attributes, metrics)| Mutation::TooManyFields {
                    attributes,
                    metrics
                }),
            "[ \t]{0,3}".prop_map(Mutation::EmptyType),
            bad_timestamp.prop_map(|t| Mutation::BadTimestamp(t.to_string())),
            (i64::MIN..0).prop_map(Mutation::NegativeSessionDuration),
            (201..=300usize).prop_map(Mutation::OverlongAttributeValue),
            prop::sample::select(vec![f64::NAN, f64::INFINITY, f64::NEG_INFINITY])
                .prop_map(Mutation::NonFiniteMetric),
        ]
    }

    proptest! {
        /// Events within every rule and limit, reserved session events included, are accepted.
        #[test]
        fn valid_events_pass(prefix in event_prefix(), event in valid_event()) {
            let violations = validate_event(&prefix, &event, &Limits::default());
            prop_assert!(violations.is_empty(), "{violations:?}");
        }

        /// Each way of breaking an event is reported on exactly the field to fix, e.g.
        /// `batch["e1"].events["ev1"].session.duration`, and the 40 attributes+metrics limit
        /// on the event itself.
        #[test]
        fn each_mutation_names_its_field(
            prefix in event_prefix(),
            mut event in valid_event(),
            mutation in mutation(),
        ) {
            let expected = mutation.apply(&prefix, &mut event);
            let violations = validate_event(&prefix, &event, &Limits::default());
            assert_names(&violations, &expected);
        }

        /// Every problem of one event is reported in one answer.
        #[test]
        fn every_problem_is_reported_at_once(
            prefix in event_prefix(),
            mut event in valid_event(),
            mutations in prop::sample::subsequence(
                vec![
                    Mutation::TooManyFields { attributes: 30, metrics: 11 },
                    Mutation::EmptyType(String::new()),
                    Mutation::BadTimestamp("now".to_string()),
                    Mutation::NegativeSessionDuration(-1),
                    Mutation::OverlongAttributeValue(201),
                    Mutation::NonFiniteMetric(f64::NAN),
                ],
                2..=6,
            ),
        ) {
            let expected: Vec<String> = mutations.iter().map(|m| m.apply(&prefix, &mut event)).collect();
            let violations = validate_event(&prefix, &event, &Limits::default());
            for field in &expected {
                assert_names(&violations, field);
            }
        }
    }

    /// The concrete paths a client of PutEvents sees, and that exactly 40 attributes plus
    /// metrics pass while 41 do not.
    #[test]
    fn violations_name_event_paths() {
        let prefix = "batch[\"e1\"].events[\"ev1\"]";
        let limits = Limits::default();
        let mut event = Event {
            event_type: "purchase".to_string(),
            timestamp: "2026-11-25T12:00:00Z".to_string(),
            attributes: (0..20)
                .map(|i| (format!("a{i}"), "x".repeat(200)))
                .collect(),
            metrics: (0..20).map(|i| (format!("m{i}"), f64::from(i))).collect(),
            session: Some(Session {
                id: "s1".to_string(),
                start_timestamp: "2026-11-25T11:59:00Z".to_string(),
                stop_timestamp: String::new(),
                duration_ms: 0,
            }),
            app_package_name: String::new(),
            app_title: String::new(),
            app_version_code: String::new(),
            client_sdk_version: String::new(),
            sdk_name: String::new(),
        };
        assert_eq!(validate_event(prefix, &event, &limits), vec![]);

        event.metrics.insert("m20".to_string(), 20.0);
        event.event_type = String::new();
        event.timestamp = "2026-11-25 noon".to_string();
        event.attributes.insert("a0".to_string(), "x".repeat(201));
        if let Some(session) = &mut event.session {
            session.duration_ms = -5;
            session.id = String::new();
        }
        let violations = validate_event(prefix, &event, &limits);
        let mut named: Vec<&str> = violations.iter().map(|v| v.field.as_str()).collect();
        named.sort_unstable();
        assert_eq!(
            named,
            vec![
                "batch[\"e1\"].events[\"ev1\"]",
                "batch[\"e1\"].events[\"ev1\"].attributes[\"a0\"]",
                "batch[\"e1\"].events[\"ev1\"].event_type",
                "batch[\"e1\"].events[\"ev1\"].session.duration",
                "batch[\"e1\"].events[\"ev1\"].session.id",
                "batch[\"e1\"].events[\"ev1\"].timestamp",
            ]
        );
    }
}
